"""Task messages written straight into the Redis broker's list (``worker.runtime.messages``) and
the producer paths that use them: ``enqueue_checkout`` in one step with the store's create,
``enqueue_checkouts`` in pipelines, and ``send_task`` still, when the broker is elsewhere.

A real redis-server, the sandbox gateway and a real Celery worker process; the message ``send_task``
writes is read back from the broker's own list, not built by a mock.
"""

from __future__ import annotations

import base64
import json

import pytest

from worker.client import enqueue_checkout, enqueue_checkouts
from worker.config.settings import Settings
from worker.domain import states
from worker.domain.errors import DuplicateTradeNoError, InvalidError
from worker.runtime.wiring import Runtime
from worker.store.keys import broker_queue

from tests.support.stack import Stack, payload

QUEUE = broker_queue("checkout")
# set afresh by every message: its ids, and the process that wrote it
PER_MESSAGE = {("headers", "id"), ("headers", "root_id"), ("headers", "origin"),
               ("properties", "correlation_id"), ("properties", "delivery_tag")}


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    """The sandbox only: no worker takes the messages until a test starts one."""
    s = Stack(redis_url, tmp_path_factory.mktemp("logs")).start(workers=0)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def _empty_queue(stack):
    stack.runtime.redis.delete(QUEUE)
    yield


def _queued(stack) -> list[dict]:
    """The messages on the checkout queue, oldest first (kombu LPUSHes, workers BRPOP)."""
    return [json.loads(m) for m in reversed(stack.runtime.redis.lrange(QUEUE, 0, -1))]


def _body(message: dict) -> list:
    return json.loads(base64.b64decode(message["body"]))


def _submits(stack) -> list[str]:
    """The tradeNo of each queued message (each must be a submit)."""
    out = []
    for message in _queued(stack):
        assert message["headers"]["task"] == "vexora.checkout.submit"
        out.append(_body(message)[0][0])
    return out


def test_the_hand_built_message_is_what_send_task_writes(stack):
    rt = stack.runtime
    assert rt.task_messages is not None  # the broker is the store's Redis
    rt.send("vexora.checkout.submit", "T-compare-1")
    built = rt.task_messages.build("vexora.checkout.submit", ["T-compare-1"], queue="checkout")
    rt.redis.lpush(QUEUE, built)
    sent, ours = _queued(stack)

    assert sent.keys() == ours.keys()
    for part in ("headers", "properties"):
        assert sent[part].keys() == ours[part].keys(), part
        for name in sent[part]:
            if (part, name) in PER_MESSAGE:
                assert type(ours[part][name]) is type(sent[part][name]), (part, name)
                continue
            assert ours[part][name] == sent[part][name], (part, name)
    for name in sent:
        if name not in ("headers", "properties"):
            assert ours[name] == sent[name], name
    assert _body(ours) == _body(sent) == [["T-compare-1"], {}, {"callbacks": None, "errbacks": None,
                                                                "chain": None, "chord": None}]
    # fresh per message, and consistent within one: the root is the task itself
    assert ours["headers"]["id"] != sent["headers"]["id"]
    assert ours["headers"]["root_id"] == ours["headers"]["id"] == ours["properties"]["correlation_id"]
    assert ours["properties"]["delivery_tag"] != sent["properties"]["delivery_tag"]


def test_enqueue_writes_the_job_and_its_message_in_one_step(stack):
    job = payload()
    trade_no = enqueue_checkout(job, runtime=stack.runtime)
    assert _submits(stack) == [trade_no]
    assert stack.record(trade_no)["state"] == states.QUEUED

    # the same payload while still queued: queued again (the lease makes the second harmless)
    assert enqueue_checkout(job, runtime=stack.runtime) == trade_no
    assert _submits(stack) == [trade_no, trade_no]

    # another payload under the tradeNo: refused, and no message
    with pytest.raises(DuplicateTradeNoError):
        enqueue_checkout({**job, "amount": "999"}, runtime=stack.runtime)
    assert _submits(stack) == [trade_no, trade_no]

    # no longer queued: the same payload answers the job and queues nothing
    stack.runtime.store.move(trade_no, states.SUBMITTING)
    assert enqueue_checkout(job, runtime=stack.runtime) == trade_no
    assert _submits(stack) == [trade_no, trade_no]


def test_a_worker_process_runs_a_job_enqueued_directly(stack):
    trade_no = enqueue_checkout(payload(), runtime=stack.runtime)
    [message] = _queued(stack)
    assert message["headers"]["origin"] == stack.runtime.task_messages.origin  # not send_task's
    batch = enqueue_checkouts([payload() for _ in range(3)], runtime=stack.runtime)
    worker = stack.start_worker(concurrency=4)
    try:
        stack.wait_state(trade_no, states.PAYING)
        for item in batch:
            stack.wait_state(item["tradeNo"], states.PAYING)
        assert stack.runtime.redis.llen(QUEUE) == 0  # every message taken
    finally:
        worker.stop()


def test_a_batch_answers_each_item_in_order(stack):
    rt = stack.runtime
    taken = payload()
    enqueue_checkout(taken, runtime=rt)
    rt.redis.delete(QUEUE)
    fresh = [payload() for _ in range(3)]
    no_trade_no = payload(tradeNo=None)
    items = [fresh[0], taken, {**taken, "amount": "999"}, "not an object", payload(tradeNo="bad:name"),
             fresh[1], no_trade_no, fresh[1], fresh[2]]
    answers = enqueue_checkouts(items, runtime=rt)

    assert [a["result"] for a in answers] == ["created", "duplicate", "conflict", "invalid", "invalid",
                                             "created", "created", "duplicate", "created"]
    assert [a["tradeNo"] for a in answers[:3]] == [fresh[0]["tradeNo"], taken["tradeNo"], taken["tradeNo"]]
    assert answers[1]["state"] == states.QUEUED and answers[0]["state"] == states.QUEUED
    assert answers[2]["errors"] == {"tradeNo": ["already used by another job with a different payload"]}
    assert answers[3] == {"tradeNo": None, "result": "invalid", "errors": {"_schema": ["must be an object"]}}
    assert answers[4]["tradeNo"] == "bad:name" and list(answers[4]["errors"]) == ["tradeNo"]
    generated = answers[6]["tradeNo"]
    assert generated and stack.record(generated)["state"] == states.QUEUED
    # nothing stored for the refused ones; the conflict left the first payload's job alone
    assert stack.record("bad:name") is None
    assert stack.runtime.store.load(taken["tradeNo"]).payload["amount"] == taken["amount"]
    # one message per created job, and one per duplicate of a job still queued, in order
    assert _submits(stack) == [fresh[0]["tradeNo"], taken["tradeNo"], fresh[1]["tradeNo"], generated,
                               fresh[1]["tradeNo"], fresh[2]["tradeNo"]]


def test_a_batch_larger_than_a_pipeline_and_its_accounts(stack, monkeypatch):
    import worker.client
    monkeypatch.setattr(worker.client, "CHUNK", 7)
    jobs = [payload() for _ in range(30)]
    answers = enqueue_checkouts(jobs, runtime=stack.runtime)
    assert [a["tradeNo"] for a in answers] == [j["tradeNo"] for j in jobs]
    assert {a["result"] for a in answers} == {"created"}
    assert sorted(_submits(stack)) == sorted(j["tradeNo"] for j in jobs)
    assert enqueue_checkouts([], runtime=stack.runtime) == []
    with pytest.raises(InvalidError) as refused:
        enqueue_checkouts([payload()], account="nobody", runtime=stack.runtime)
    assert refused.value.errors == {"account": ["not an account of this deployment"]}


def test_another_broker_gets_its_messages_from_send_task(stack):
    """A broker that is not the store's Redis (here another database of the same server): no
    direct message, ``send_task`` after the store's create, one at a time and in a batch."""
    other = stack.settings.redis_url.rsplit("/", 1)[0] + "/3"
    settings = Settings.from_env({**stack.env, "VEXORA_BROKER_URL": other})
    rt = Runtime(settings)
    assert rt.task_messages is None
    broker = rt.celery.connection_for_write().default_channel.client
    broker.delete(QUEUE)
    try:
        one = enqueue_checkout(payload(), runtime=rt)
        many = enqueue_checkouts([payload(), payload()], runtime=rt)
        assert _queued(stack) == []  # nothing written into the store's database
        sent = [json.loads(m) for m in reversed(broker.lrange(QUEUE, 0, -1))]
        assert [_body(m)[0][0] for m in sent] == [one] + [a["tradeNo"] for a in many]
        assert all(stack.record(t)["state"] == states.QUEUED for t in [one] + [a["tradeNo"] for a in many])
    finally:
        broker.delete(QUEUE)


def test_a_batch_after_the_scripts_were_flushed(stack, monkeypatch):
    """A restarted or newly promoted server has no scripts: every step of the batch is refused
    with NOSCRIPT, run again once the script is loaded, and answered as if nothing happened; the
    connection is left in step (the next call reads its own replies)."""
    import worker.client
    monkeypatch.setattr(worker.client, "CHUNK", 4)
    rt = stack.runtime
    jobs = [payload() for _ in range(10)]
    rt.redis.script_flush()
    answers = enqueue_checkouts(jobs + jobs[:1], runtime=rt)
    assert [a["result"] for a in answers] == ["created"] * 10 + ["duplicate"]
    assert sorted(_submits(stack)) == sorted([j["tradeNo"] for j in jobs] + [jobs[0]["tradeNo"]])
    assert rt.redis.ping() and enqueue_checkout(payload(), runtime=rt)
