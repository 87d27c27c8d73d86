"""Webhook endpoints over a real Redis and a real receiver, driven in this process: rotation
grace, disabling after a long failure, the retry schedule and Retry-After."""

from __future__ import annotations

import json
import time

import pytest
import redis

from worker.webhooks.delivery import Deliverer
from worker.webhooks.endpoints import Endpoints
from worker.webhooks.outbox import Dispatcher

pytestmark = pytest.mark.integration


class Clock:
    """Time that moves only when a test says (starting now: receivers check signature times)."""

    def __init__(self):
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    for key in c.scan_iter(match="hooks-test:*"):
        c.delete(key)
    yield c
    c.close()


def test_an_old_secret_signs_only_for_the_grace_period(client):
    clock = Clock()
    endpoints = Endpoints(client, "hooks-test", allow_private=True, rotation_grace=60, clock=clock)
    record = endpoints.add("http://127.0.0.1:9/x")
    old = record["secrets"][0]["secret"]
    rotated = endpoints.rotate(record["id"])
    new = rotated["secrets"][0]["secret"]
    assert endpoints.signing_secrets(endpoints.get(record["id"])) == [new, old]
    clock.now += 61
    assert endpoints.signing_secrets(endpoints.get(record["id"])) == [new]
    assert [s["secretEnd"] for s in Endpoints.public(endpoints.get(record["id"]))["secrets"]] == [new[-4:], old[-4:]]


def _one_event(client, dispatcher, kind="checkout.paying"):
    client.xadd(dispatcher.outbox, {"type": kind, "tradeNo": "T1", "sequence": 1, "at": 1_800_000_000_000,
                                    "record": json.dumps(["tradeNo", "T1", "state", "paying"])})
    sent = []
    dispatcher.send_deliver = sent.append
    dispatcher.run()
    return [m for batch in sent for m in batch]


def test_failing_past_the_limit_disables_the_endpoint_and_tells_the_others(client, receiver):
    clock = Clock()
    endpoints = Endpoints(client, "hooks-test", allow_private=True, rotation_grace=60, clock=clock)
    failing = endpoints.add(receiver.base + "/webhooks", secret=receiver.secret)
    other = endpoints.add(receiver.base + "/webhooks", secret=receiver.secret, types=["webhook.endpoint_disabled"])
    dispatcher = Dispatcher(client, "hooks-test", endpoints, lambda m: None, clock=clock)
    deliverer = Deliverer(dispatcher, endpoints, schedule=(5, 300), timeout=5, disable_after=3600,
                          allow_private=True, clock=clock)
    client_http = __import__("requests").Session()
    client_http.post(receiver.base + "/_receiver/faults", json={"fail_first": 100, "status": 503}, timeout=5)
    members = _one_event(client, dispatcher)
    assert [m.split("|")[1] for m in members] == [failing["id"]]  # the other wants only disabled events
    assert deliverer.deliver(members) == {"retry": 1}
    record = endpoints.get(failing["id"])
    assert record["failingSince"] == clock.now * 1000 and record["enabled"]
    due = client.zscore(dispatcher.due_key, members[0])
    assert due == (clock.now + 5) * 1000  # the schedule's first step
    # it has been failing for more than an hour (the limit here): its record says since when
    # (the clock itself stays: a receiver refuses a signature time far from its own)
    record["failingSince"] -= 3601 * 1000
    client.hset(endpoints.key, failing["id"], json.dumps(record))
    assert deliverer.deliver(members) == {"retry": 1}
    record = endpoints.get(failing["id"])
    assert not record["enabled"] and "failing for more than" in record["disabledReason"]
    sent = []
    dispatcher.send_deliver = sent.append
    dispatcher.run()
    members = [m for batch in sent for m in batch]
    assert [m.split("|")[1] for m in members] == [other["id"]]
    client_http.delete(receiver.base + "/_receiver/faults", timeout=5)
    assert deliverer.deliver(members) == {"delivered": 1}
    events = client_http.get(receiver.base + "/_receiver/events", timeout=5).json()
    assert events[-1]["type"] == "webhook.endpoint_disabled"


def test_retry_after_wins_over_the_schedule_and_the_schedule_runs_out(client, receiver):
    clock = Clock()
    endpoints = Endpoints(client, "hooks-test", allow_private=True, rotation_grace=60, clock=clock)
    endpoints.add(receiver.base + "/webhooks", secret=receiver.secret)
    dispatcher = Dispatcher(client, "hooks-test", endpoints, lambda m: None, clock=clock)
    deliverer = Deliverer(dispatcher, endpoints, schedule=(5,), timeout=5, disable_after=10 ** 9,
                          allow_private=True, clock=clock)
    http = __import__("requests").Session()
    http.post(receiver.base + "/_receiver/faults", json={"fail_first": 100, "status": 429, "retry_after": 42},
              timeout=5)
    members = _one_event(client, dispatcher)
    assert deliverer.deliver(members) == {"retry": 1}
    assert client.zscore(dispatcher.due_key, members[0]) == (clock.now + 42) * 1000
    assert deliverer.deliver(members) == {"failed": 1}  # one step in the schedule: the second failure is final
    assert client.zscore(dispatcher.due_key, members[0]) is None
    attempts = dispatcher.attempts("T1")
    assert [a["status"] for a in attempts] == [429, 429] and [a["attempt"] for a in attempts] == [1, 2]
