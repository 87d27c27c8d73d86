"""Secrets and payer data: an end-to-end run with marker values for the app secret and every payer
field, then a search of every log, every key and message in Redis (the broker included), Flower's
API, error texts and the stored records.

The secret appears nowhere. Payer data appears only in the stored payload of a job not yet sent
to the gateway; once the checkout is created (or refused) it is purged, and the record keeps the
tradeNo, amounts, states and a masked contact.
"""

from __future__ import annotations

import json

import pytest
import redis

from worker import states
from worker.masking import mask_email, mask_mobile
from tests.reliability.conftest import size
from tests.support.flower import Flower
from tests.support.stack import APP_SECRET, MARKERS, Stack, payload

pytestmark = pytest.mark.integration

TOKEN = "secrets-scenario-token"


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
    s = Stack(redis_url, tmp_path, VEXORA_API_TOKEN=TOKEN).start(workers=0, web=True)
    try:
        yield s
    finally:
        s.stop()


def test_the_secret_nowhere_payer_data_only_until_created(stack, figures):
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
    assert holding == {f"0:{stack.runtime.store.payload_key(t)}" for t in trade_nos}, holding
    assert not any(APP_SECRET in text for text in before.values())
    assert any(t in before.get("0:checkout", "") for t in trade_nos)  # the parked messages are there

    flower = Flower(stack)
    flower.wait_up()  # before the worker: Flower must see every task event
    worker = stack.start_worker()
    flower.wait_for_worker(worker.worker_name)
    for trade_no in trade_nos:
        stack.wait_state(trade_no, states.PAYING)
        stack.set_gateway_status(trade_no, "0000")
    for trade_no in trade_nos:
        stack.wait_state(trade_no, states.SUCCEEDED)
    tasks_text, tasks = flower.wait_tasks(lambda t: sum(v["name"] == "vexora.checkout.submit" for v in t.values())
                                          >= len(trade_nos))
    infos = [flower.get(f"/api/task/info/{task_id}").text for task_id in tasks]

    after = redis_dump(stack.settings.redis_url)
    logs = stack.logs()
    records = [stack.record(t) for t in trade_nos]
    places = {"redis": "\n".join(after.values()), "logs": logs, "flower": tasks_text + "\n".join(infos),
              "errors": refused.text, "records": json.dumps(records, ensure_ascii=False)}
    leaks = {where: values(text) for where, text in places.items() if values(text)}
    figures.add("secrets and payer data", jobs=len(trade_nos), redis_keys=len(after),
                log_kb=len(logs) // 1024, flower_tasks=len(tasks), leaks=sum(map(len, leaks.values())))
    assert leaks == {}
    for record in records:
        assert record["contact"]["mobile"] == mask_mobile(MARKERS["mobile"])
        assert record["contact"]["email"] == mask_email(MARKERS["email"])
        assert record["amount"] == "300" and record["paidAmount"] and record["tradeNo"]
    flower.http.close()
