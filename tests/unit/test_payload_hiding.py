"""What the worker shows of a ``vexora.checkout.enqueue`` request: the tradeNo, never payer data.

The task takes the payer's payload as keyword arguments (docs/producers.md), so every place where
Celery shows a request's arguments must show ``PayloadHidingRequest``'s view instead: the request's
``repr``/``info()``, the ``task-*`` events, the worker's log lines and the context they carry
(``extra={"data": ...}``, for structured log handlers), the replies to ``inspect active / reserved
/ scheduled / query_task`` (Flower's worker page and ``/api/workers``) and the result backend.

No Redis and no worker process: requests are built from the two kinds of message producers send —
Celery's own (``app.send_task``: its ``argsrepr``/``kwargsrepr`` headers are its repr of the whole
payload) and celery-node's (no such headers: Celery then falls back to ``repr(kwargs)``) — and run
through Celery's own strategy, remote-control commands, pool callbacks and tracer, with stand-ins
for the consumer, the pool and the result backend. The real-process check is
tests/reliability/test_secrets.py.
"""

from __future__ import annotations

import json
import logging
import os
from time import monotonic
from types import SimpleNamespace

import pytest
import redis
from celery.app import trace
from celery.backends.base import KeyValueStoreBackend
from celery.utils import uuid
from celery.worker import control
from celery.worker import state as worker_state
from celery.worker.strategy import default as default_strategy
from kombu import Message
from kombu.asynchronous.timer import Timer
from kombu.serialization import dumps

from worker import tasks
from worker.celery import app
from worker.tasks import PayloadHidingRequest, enqueue
from tests.support.stack import payload

ENQUEUE = "vexora.checkout.enqueue"
PAYER_FIELDS = ("mobile", "firstname", "lastname", "email", "ipAddress")
HOSTNAME = "w-unit@test"


def payer_values_in(text: str, job: dict) -> list[str]:
    """The job's payer values found in a text (also as JSON's \\u escapes of the Japanese names)."""
    values = [job[field] for field in PAYER_FIELDS]
    return [v for v in values if v in text or json.dumps(v)[1:-1] in text]


def assert_no_leaks(found: dict[str, list[str]]) -> None:
    leaks = {where: values for where, values in found.items() if values}
    assert not leaks, "payer data shown in:\n" + "\n".join(f"  {w}: {v}" for w, v in leaks.items())


def shown(trade_no: str) -> str:
    return repr({"tradeNo": trade_no})


# -- the messages on the broker ---------------------------------------------------------------
def _message(headers: dict, body: tuple) -> Message:
    content_type, content_encoding, data = dumps(body, "json")
    return Message(body=data, content_type=content_type, content_encoding=content_encoding,
                   headers=headers, delivery_info={"exchange": "", "routing_key": "checkout"},
                   properties={"delivery_tag": uuid(), "correlation_id": headers["id"]})


def celery_message(job: dict, countdown: float | None = None) -> Message:
    """What ``app.send_task(ENQUEUE, kwargs=job)`` sends: its repr of the payload in the headers."""
    sent = app.amqp.as_task_v2(uuid(), ENQUEUE, (), job, countdown=countdown)
    assert job["mobile"] in sent.headers["kwargsrepr"]  # what the worker must not pass on
    return _message(sent.headers, sent.body)


def node_message(job: dict, countdown: float | None = None) -> Message:
    """What celery-node (tests/node/enqueue.js) sends: protocol v2, headers lang/task/id only.

    (enqueue.js sets no ``eta``; a hand-built message may, so the scheduled case adds one.)"""
    headers = {"lang": "js", "task": ENQUEUE, "id": uuid()}
    if countdown is not None:
        headers["eta"] = app.amqp.as_task_v2(uuid(), ENQUEUE, countdown=countdown).headers["eta"]
    return _message(headers, ([], job, {}))


PRODUCERS = {"celery": celery_message, "celery-node": node_message}


# -- the request on its own -----------------------------------------------------------------
@pytest.mark.parametrize("producer", PRODUCERS)
@pytest.mark.parametrize("countdown", [None, 600])
def test_the_request_shows_the_trade_no_and_no_payer_data(producer, countdown):
    job = payload()
    request = PayloadHidingRequest(PRODUCERS[producer](job, countdown), app=app, task=enqueue,
                                   hostname=HOSTNAME)
    everything = {"argsrepr": request.argsrepr, "kwargsrepr": request.kwargsrepr,
                  "info()": repr(request.info()), "info(safe=True)": repr(request.info(safe=True)),
                  "repr": repr(request), "str": str(request),
                  "request_dict[argsrepr]": repr(request.request_dict.get("argsrepr")),
                  "request_dict[kwargsrepr]": repr(request.request_dict.get("kwargsrepr"))}
    assert_no_leaks({where: payer_values_in(text, job) for where, text in everything.items()})
    assert request.argsrepr == "()"
    assert request.kwargsrepr == shown(job["tradeNo"])
    for safe in (False, True):  # inspect active/reserved/scheduled/query_task call info()
        info = request.info(safe=safe)
        assert (info["args"], info["kwargs"]) == ("()", shown(job["tradeNo"])), (safe, info)
        assert info["id"] == request.id and info["name"] == ENQUEUE
    # the request dict goes to the pool: Celery's tracer logs its argsrepr/kwargsrepr
    assert request.request_dict["argsrepr"] == "()"
    assert request.request_dict["kwargsrepr"] == shown(job["tradeNo"])
    assert job["tradeNo"] in repr(request)
    # the task itself still gets the whole payload
    assert request.kwargs == job and list(request.args) == []


def test_a_payload_without_a_usable_trade_no_shows_none():
    for kwargs in ({"mobile": "09087654321"}, {"tradeNo": 12345, "mobile": "09087654321"}):
        request = PayloadHidingRequest(node_message(kwargs), app=app, task=enqueue, hostname=HOSTNAME)
        assert request.kwargsrepr == repr({"tradeNo": None})
        assert "09087654321" not in repr(request) + repr(request.info())


# -- the request in Celery's worker machinery ------------------------------------------------
class MemoryBackend(KeyValueStoreBackend):
    """The result backend in a dict (the worker's is Redis): what a producer could read back."""

    def __init__(self):
        super().__init__(app)
        self.stored: dict = {}

    def get(self, key):
        return self.stored.get(key)

    def mget(self, keys):
        return [self.stored.get(key) for key in keys]

    def set(self, key, value):
        self.stored[key] = value

    def delete(self, key):
        self.stored.pop(key, None)


class Pool:
    """Celery's pool interface: keeps each call so that the test runs it as the threads pool would."""

    def __init__(self):
        self.calls: dict[str, dict] = {}

    def apply_async(self, target, args=None, **options):
        self.calls[options["correlation_id"]] = {"target": target, "args": args, **options}

    def start(self, task_id: str) -> None:
        self.calls[task_id]["accept_callback"](os.getpid(), monotonic())

    def finish(self, task_id: str) -> None:
        call = self.calls[task_id]
        call["callback"](call["target"](*call["args"], app=app))


class Events:
    enabled = True

    def __init__(self):
        self.sent: list[dict] = []

    def send(self, type, **fields):
        self.sent.append({"type": type, **fields})


def make_consumer(pool: Pool, events: Events) -> SimpleNamespace:
    """What ``celery.worker.strategy.default`` and the inspect commands use of the consumer."""
    timer = SimpleNamespace(schedule=Timer())
    timer.call_at = timer.schedule.call_at
    return SimpleNamespace(
        hostname=HOSTNAME, connection_errors=(), event_dispatcher=events, timer=timer,
        apply_eta_task=None, disable_rate_limits=True, task_buckets={}, handled=[],
        _limit_task=None, _limit_post_eta=None, pool=pool,
        controller=SimpleNamespace(state=SimpleNamespace(revoked=worker_state.revoked)),
        qos=SimpleNamespace(increment_eventually=lambda: None))


@pytest.fixture
def worker_side(monkeypatch, caplog):
    """Celery's strategy for the task, with the store, result backend and broker replaced."""
    caplog.set_level(logging.INFO, logger="celery")  # before the strategy and tracer are built
    outcome: dict[str, BaseException | None] = {}

    def enqueue_checkout(job, runtime, account=None):
        error = outcome[job["tradeNo"]]
        if error is not None:
            raise error
        return job["tradeNo"]

    resent: list[dict] = []
    backend = MemoryBackend()
    monkeypatch.setattr(tasks.client, "enqueue_checkout", enqueue_checkout)
    monkeypatch.setattr(tasks, "get_runtime", lambda: None)
    monkeypatch.setattr(enqueue, "_backend", backend)
    monkeypatch.setattr(enqueue, "__trace__", None)  # rebuilt with INFO logging on, then restored
    monkeypatch.setattr(enqueue, "apply_async",  # a retry re-sends the message
                        lambda args=None, kwargs=None, **options: resent.append(
                            {"args": args, "kwargs": kwargs, **options}))
    pool, events = Pool(), Events()
    consumer = make_consumer(pool, events)
    consumer.on_task_request = consumer.handled.append
    handle = default_strategy(enqueue, app, consumer)
    requests: list = []

    def receive(message: Message):
        handle(message, None, lambda *a: None, lambda *a: None, [])
        request = worker_state.requests[message.headers["id"]]
        requests.append(request)
        return request

    yield SimpleNamespace(receive=receive, outcome=outcome, resent=resent, backend=backend, pool=pool,
                          events=events, consumer=consumer, logs=caplog)
    for request in requests:  # the worker's global request registry outlives the test
        worker_state.task_ready(request)


def test_no_payer_data_in_events_logs_inspect_replies_or_results(worker_side):
    w = worker_side
    jobs, roles = {}, {}
    for producer, message_of in PRODUCERS.items():
        for role, error in (("succeeds", None), ("fails", RuntimeError("the store broke")),
                            ("retries", redis.exceptions.ConnectionError("Redis is down")),
                            ("waits", None), ("scheduled", None)):
            job = payload()
            w.outcome[job["tradeNo"]] = error
            request = w.receive(message_of(job, countdown=600 if role == "scheduled" else None))
            jobs[request.id], roles[request.id] = job, role

    running = [tid for tid, role in roles.items() if role in ("succeeds", "fails", "retries")]
    for task_id in running:
        worker_state.requests[task_id].execute_using_pool(w.pool)
        w.pool.start(task_id)

    state = SimpleNamespace(consumer=w.consumer, tset=set, app=app, hostname=HOSTNAME)
    replies = {
        "active": control.active(state), "active --safe": control.active(state, safe=True),
        "reserved": control.reserved(state), "scheduled": control.scheduled(state),
        "query_task": control.query_task(state, list(jobs)),
    }
    for task_id in running:
        w.pool.finish(task_id)

    formatter = logging.Formatter()  # the message and its traceback, as a log file shows them
    places = {
        **{f"inspect {command}": repr(reply) for command, reply in replies.items()},
        **{f"event {kind}": repr([e for e in w.events.sent if e["type"] == kind])
           for kind in sorted({e["type"] for e in w.events.sent})},
        "log lines": "\n".join(formatter.format(record) for record in w.logs.records),
        "log context (extra data)": repr([getattr(r, "data", None) for r in w.logs.records]),
        "result backend": repr(w.backend.stored),
    }
    assert_no_leaks({where: sorted({v for job in jobs.values() for v in payer_values_in(text, job)})
                     for where, text in places.items()})

    # not vacuous: each reply lists the requests it should, with the tradeNo as their kwargs
    assert {r["id"] for r in replies["active"]} == set(running)
    assert {r["id"] for r in replies["reserved"]} == {t for t, r in roles.items() if r == "waits"}
    assert {s["request"]["id"] for s in replies["scheduled"]} == {
        t for t, r in roles.items() if r == "scheduled"}
    assert set(replies["query_task"]) == set(jobs)
    listed = [*replies["active"], *replies["reserved"], *(s["request"] for s in replies["scheduled"]),
              *(info for _, info in replies["query_task"].values())]
    for info in listed:
        assert (info["args"], info["kwargs"]) == ("()", shown(jobs[info["id"]]["tradeNo"])), info

    # not vacuous: the events and log lines are there, with the tradeNo where Celery shows arguments
    kinds = [event["type"] for event in w.events.sent]
    assert kinds.count("task-received") == 10 and kinds.count("task-started") == 6
    assert kinds.count("task-succeeded") == 2 and kinds.count("task-failed") == 2
    assert kinds.count("task-retried") == 2
    for event in w.events.sent:
        if event["type"] == "task-received":
            assert (event["args"], event["kwargs"]) == ("()", shown(jobs[event["uuid"]]["tradeNo"]))
    contexts = [(record.msg.strip(), record.data) for record in w.logs.records
                if isinstance(getattr(record, "data", None), dict)]
    assert {trace.LOG_RECEIVED, trace.LOG_SUCCESS, trace.LOG_FAILURE, trace.LOG_RETRY} <= {
        fmt for fmt, _ in contexts}
    for fmt, context in contexts:
        if "args" in context:  # Received, succeeded and failure lines carry the arguments' repr
            assert (context["args"], context["kwargs"]) == ("()", shown(jobs[context["id"]]["tradeNo"]))
    # the retry re-sends the payload: on the broker, as for the producer's own message
    assert sorted(r["kwargs"]["tradeNo"] for r in w.resent) == sorted(
        jobs[t]["tradeNo"] for t, role in roles.items() if role == "retries")
    assert all(r["kwargs"] == jobs[r["task_id"]] for r in w.resent)
