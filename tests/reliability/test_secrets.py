"""Secrets and payer data: an end-to-end run with marker values for the app secret and every payer
field, then a search of every log, every key and message in Redis (the broker included), Flower's
API and worker pages, the worker's ``celery inspect`` replies, error texts and the stored records.

Jobs come from every producer: the Python client and the HTTP API (their messages carry only the
tradeNo), and two that send ``vexora.checkout.enqueue`` with the payer data as its kwargs —
celery-node (tests/node/enqueue.js; that part is skipped without node and npm) and
``app.send_task`` with a countdown. The countdown's jobs are looked at while they wait in the worker,
first *scheduled*, then *reserved* behind submits that a slow gateway holds on every thread: what
Flower's worker page, ``/api/workers`` and ``celery inspect active/reserved/scheduled/query_task``
show of them.

The secret appears nowhere. Payer data appears only in the stored payload of a job not yet sent
to the gateway, and in an enqueue message on the broker until a worker has run it; once the
checkout is created (or refused) the payload is purged, and the record keeps the tradeNo, amounts,
states and a masked contact.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import redis

from worker.domain import states
from worker.domain.masking import mask_email, mask_mobile
from worker.waiting import wait_until
from tests.reliability.conftest import size
from tests.support.flower import Flower
from tests.support.node import HAVE_NODE, install_node_producer
from tests.support.processes import ROOT, python_cmd
from tests.support.stack import APP_SECRET, MARKERS, Stack, payload

pytestmark = pytest.mark.integration

TOKEN = "secrets-scenario-token"
ENQUEUE = "vexora.checkout.enqueue"
SUBMIT = "vexora.checkout.submit"
THREADS = 4  # the worker's; as many blocking submits fill it
# The countdown's jobs must be listed as scheduled, and every thread held, before their ETA; then
# they are reserved until the gateway answers the held submits, which must outlast the checks.
COUNTDOWN = 5.0
GATEWAY_DELAY = 10.0


def values(text: str) -> list[str]:
    """The markers found in a text (also as JSON's \\u escapes of the Japanese names)."""
    found = []
    for marker in (APP_SECRET, *MARKERS.values()):
        if marker in text or json.dumps(marker)[1:-1] in text:
            found.append(marker)
    return found


def redis_dump(url: str) -> dict[str, str]:
    """Every key of every database in Redis, with all of its values as text."""
    client = redis.Redis.from_url(url)
    dump = {}
    for db in range(16):
        conn = client if db == 0 else redis.Redis.from_url(url.rsplit("/", 1)[0] + f"/{db}")
        for key in conn.scan_iter(count=1000):
            kind = conn.type(key).decode()
            if kind == "none":  # gone since the scan: a lock or lease that expired meanwhile
                continue
            value = {"string": lambda: conn.get(key), "list": lambda: conn.lrange(key, 0, -1),
                     "hash": lambda: conn.hgetall(key), "set": lambda: conn.smembers(key),
                     "zset": lambda: conn.zrange(key, 0, -1), "stream": lambda: conn.xrange(key)}[kind]()
            dump[f"{db}:{key.decode(errors='replace')}"] = _text(value)
    return dump


def _text(value) -> str:
    def norm(v):
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        if isinstance(v, dict):
            return {norm(k): norm(x) for k, x in v.items()}
        if isinstance(v, (list, tuple, set)):
            return [norm(x) for x in v]
        return v
    return json.dumps(norm(value), ensure_ascii=False, default=str)


@pytest.fixture
def stack(redis_url, tmp_path):
    # the held submits wait GATEWAY_DELAY for their answer: no read timeout before that
    # the held answers must outlive neither the read timeout nor the request's total deadline
    # (by default half the lease: 10 s)
    s = Stack(redis_url, tmp_path, VEXORA_API_TOKEN=TOKEN, VEXORA_READ_TIMEOUT=str(GATEWAY_DELAY + 10),
              VEXORA_REQUEST_DEADLINE=str(GATEWAY_DELAY + 10)).start(workers=0, web=True)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def node_producer(tmp_path_factory) -> Path | None:
    """tests/node/ in a temp dir with its locked dependencies (``npm ci``); None without node/npm."""
    if not HAVE_NODE:
        return None
    return install_node_producer(tmp_path_factory.mktemp("node-producer"))


def node_enqueue(workdir: Path, stack: Stack, job: dict) -> str:
    """``node enqueue.js '<payload>'``: a celery-node message, answered by the worker; its output."""
    env = {**os.environ, "REDIS_URL": stack.settings.redis_url, "VEXORA_ENQUEUE_TIMEOUT": "30"}
    done = subprocess.run(["node", "enqueue.js", json.dumps(job, ensure_ascii=False)], cwd=workdir,
                          env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, job["tradeNo"]), (done.stdout, done.stderr)
    return done.stdout + done.stderr


def celery_inspect(stack: Stack, worker_name: str, *commands: str) -> dict[str, str]:
    """``celery -A worker inspect <command> -d <worker>``, all at once, as an operator runs it."""
    running = {command: subprocess.Popen(
        python_cmd("-m", "celery", "-A", "worker", "inspect", *command.split(), "-d", worker_name,
                   "-t", "10"), env=stack.env, cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True) for command in commands}
    output = {}
    for command, proc in running.items():
        try:
            text, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            text, _ = proc.communicate()
            pytest.fail(f"celery inspect {command} did not finish:\n{text}")
        assert proc.returncode == 0, f"celery inspect {command} exited {proc.returncode}:\n{text}"
        output[f"celery inspect {command.split()[0]}"] = text
    return output


def ids(reply: dict | None, worker_name: str, key: str | None = None) -> set[str]:
    """The task ids in one worker's reply to inspect active/reserved (or scheduled: key "request")."""
    entries = (reply or {}).get(worker_name) or []
    return {(entry[key] if key else entry)["id"] for entry in entries}


def scheduled_then_reserved(stack: Stack, flower: Flower,
                            worker_name: str) -> tuple[list[str], list[str], dict[str, str]]:
    """Enqueue jobs with a countdown (``app.send_task``: the payload as kwargs), look at them in the
    worker while scheduled, then while reserved behind submits held on every thread by a slow
    gateway. Returns the tradeNos of those jobs and of the blocking ones, and what was shown where.
    """
    celery = stack.runtime.celery
    inspect = celery.control.inspect(destination=[worker_name], timeout=5)
    jobs = [payload() for _ in range(THREADS)]
    sent = {celery.send_task(ENQUEUE, kwargs=job, countdown=COUNTDOWN).id: job for job in jobs}
    eta = time.monotonic() + COUNTDOWN
    shown: dict[str, str] = {}

    def scheduled():
        reply = inspect.scheduled()
        shown["inspect scheduled (API)"] = repr(reply)
        return ids(reply, worker_name, "request") >= set(sent)
    wait_until(scheduled, timeout=COUNTDOWN / 2, interval=0.1, what="the countdown's jobs to be scheduled")

    # Hold every thread: submits of stored jobs (their messages carry the tradeNo) whose checkout
    # the sandbox answers only after GATEWAY_DELAY.
    blockers = [payload() for _ in range(THREADS)]
    stack.faults(*({"kind": "latency", "delay": GATEWAY_DELAY, "tradeNo": job["tradeNo"]}
                   for job in blockers))
    blocking = {stack.enqueue(job) for job in blockers}

    def held():
        reply = inspect.active()
        shown["inspect active (API)"] = repr(reply)
        active = (reply or {}).get(worker_name) or []
        return {t for entry in active if entry["name"] == SUBMIT for t in blocking
                if t in repr(entry["args"])} == blocking
    wait_until(held, timeout=COUNTDOWN / 2, interval=0.1, what="the submits to hold every thread")

    # While scheduled: Flower's worker page and API, and the operator's command.
    shown.update(celery_inspect(stack, worker_name, "scheduled"))
    text, _ = flower.inspect_worker(
        worker_name, lambda e: ids({worker_name: e.get("scheduled")}, worker_name, "request") >= set(sent))
    shown["Flower /api/workers (scheduled)"] = text
    shown["Flower worker page (scheduled)"] = flower.worker_page(worker_name)
    shown["Flower /api/workers, all workers"] = flower.get("/api/workers").text
    assert time.monotonic() < eta, "the checks of the scheduled jobs outlasted their countdown"
    for task_id in sent:
        assert task_id in shown["celery inspect scheduled"] and task_id in shown[
            "Flower worker page (scheduled)"], task_id

    # After the ETA the jobs wait for a thread: reserved, not active.
    def reserved():
        reply = inspect.reserved()
        shown["inspect reserved (API)"] = repr(reply)
        return ids(reply, worker_name) >= set(sent)
    wait_until(reserved, timeout=COUNTDOWN + 5, interval=0.1, what="the countdown's jobs to be reserved")
    shown.update(celery_inspect(stack, worker_name, "reserved", "active", "query_task " + " ".join(sent)))
    text, _ = flower.inspect_worker(worker_name, lambda e: ids({worker_name: e.get("reserved")},
                                                                worker_name) >= set(sent))
    shown["Flower /api/workers (reserved)"] = text
    shown["Flower worker page (reserved)"] = flower.worker_page(worker_name)
    assert held(), "the held submits ended before the checks of the reserved jobs"
    for task_id in sent:
        for where in ("celery inspect reserved", "celery inspect query_task",
                      "Flower worker page (reserved)"):
            assert task_id in shown[where], (task_id, where)
    for trade_no in blocking:  # active: the held submits (enqueue requests run for milliseconds)
        assert trade_no in shown["celery inspect active"], trade_no
    return [job["tradeNo"] for job in sent.values()], sorted(blocking), shown


def test_the_secret_nowhere_payer_data_only_until_created(stack, node_producer, figures):
    started = time.monotonic()
    jobs = [payload() for _ in range(size(10, 50))]
    from_python = [stack.enqueue(job) for job in jobs[: len(jobs) // 2]]
    from_http = []
    for job in jobs[len(jobs) // 2:]:
        answer = stack.http.post(stack.web_url + "/v1/checkouts", json=job,
                                 headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15)
        assert answer.status_code == 202
        from_http.append(answer.json()["tradeNo"])
    refused = stack.http.post(stack.web_url + "/v1/checkouts", json=payload(amount="1.5", wayCode="X"),
                              headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15)
    assert refused.status_code == 422
    trade_nos = from_python + from_http

    # Before any worker runs: the messages wait on the broker. Payer data is in the stored
    # payloads (each job's own payload key) and nowhere else — not in the job records, the queue,
    # the events or any other key.
    before = redis_dump(stack.settings.redis_url)
    holding = {key for key, text in before.items() if values(text)}
    assert holding == {f"0:{stack.runtime.store.keys.payload(t)}" for t in trade_nos}, holding
    assert not any(APP_SECRET in text for text in before.values())
    assert any(t in before.get("0:checkout", "") for t in trade_nos)  # the parked messages are there

    flower = Flower(stack)
    flower.wait_up()  # before the worker: Flower must see every task event
    worker = stack.start_worker(concurrency=THREADS)
    flower.wait_for_worker(worker.worker_name)
    for trade_no in trade_nos:
        stack.wait_state(trade_no, states.PAYING)

    # Producers that send the payer data in a vexora.checkout.enqueue message (after the snapshot
    # above: those messages are on the broker until the worker has run them).
    producers_said = []
    if node_producer is not None:
        for job in [payload() for _ in range(size(3, 10))]:
            producers_said.append(node_enqueue(node_producer, stack, job))
            trade_nos.append(job["tradeNo"])
    held, blocking, shown = scheduled_then_reserved(stack, flower, worker.worker_name)
    trade_nos += held + blocking

    for trade_no in trade_nos:
        stack.wait_state(trade_no, states.PAYING)
        stack.set_gateway_status(trade_no, "0000")
    for trade_no in trade_nos:
        stack.wait_state(trade_no, states.SUCCEEDED)
    tasks_text, tasks = flower.wait_tasks(lambda t: sum(v["name"] == SUBMIT for v in t.values())
                                          >= len(trade_nos))
    infos = [flower.get(f"/api/task/info/{task_id}").text for task_id in tasks]
    shown["Flower worker page (after)"] = flower.worker_page(worker.worker_name)
    shown["Flower /workers page"] = flower.get("/workers").text

    after = redis_dump(stack.settings.redis_url)
    logs = stack.logs()
    records = [stack.record(t) for t in trade_nos]
    places = {"redis": "\n".join(after.values()), "logs": logs, "flower": tasks_text + "\n".join(infos),
              "errors": refused.text, "records": json.dumps(records, ensure_ascii=False),
              "producers": "\n".join(producers_said), **shown}
    leaks = {where: values(text) for where, text in places.items() if values(text)}
    figures.add("secrets and payer data", jobs=len(trade_nos), node_jobs=len(producers_said),
                held_in_worker=len(held), redis_keys=len(after), log_kb=len(logs) // 1024,
                flower_tasks=len(tasks), places=len(places), leaks=sum(map(len, leaks.values())),
                seconds=time.monotonic() - started)
    assert leaks == {}, "shown in:\n" + "\n".join(f"  {where}: {found}" for where, found in leaks.items())
    for record in records:
        assert record["contact"]["mobile"] == mask_mobile(MARKERS["mobile"])
        assert record["contact"]["email"] == mask_email(MARKERS["email"])
        assert record["amount"] == "300" and record["paidAmount"] and record["tradeNo"]
    flower.http.close()
    if node_producer is None:
        pytest.skip("node and npm are needed for the celery-node producer: that part was not run")
