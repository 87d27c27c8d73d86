"""Issue 23, webhooks' CPU per job, over a real Redis and a real verifying receiver: a deliver
batch's outcomes are recorded in one script call, yet no POST starts whose claim could run out
before it ends (a slow receiver: the rest of the batch is claimed again first), and every
outcome (delivered, retrying, refused, gone) lands in its delivery record, the job's attempts and
the due set as when each was recorded on its own."""

from __future__ import annotations

import json
import time

import pytest

from worker.store.jobs import JobStore
from worker.webhooks.delivery import Deliverer
from worker.webhooks.endpoints import Endpoints
from worker.webhooks.outbox import Dispatcher
from tests.integration.conftest import prefixed_client
from tests.support.stack import payload

pytestmark = pytest.mark.integration

PREFIX = "batch-test"
TIMEOUT = 1.0  # a request's ceiling is this + 3 s


@pytest.fixture
def client(redis_url):
    yield from prefixed_client(redis_url, PREFIX)


class Clock:
    """Wall time plus an offset the test moves (a receiver that takes long, without waiting)."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _wiring(client, receiver, clock):
    endpoints = Endpoints(client, PREFIX, allow_private=True, rotation_grace=60, clock=clock)
    endpoints.add(receiver.base + "/webhooks", secret=receiver.secret, endpoint_id="ep")
    sent: list[list[str]] = []
    dispatcher = Dispatcher(client, PREFIX, endpoints, sent.append, clock=clock)
    deliverer = Deliverer(dispatcher, endpoints, schedule=(30, 300), timeout=TIMEOUT, disable_after=10 ** 9,
                          allow_private=True, clock=clock)
    calls: list[dict] = []
    script = deliverer._settle_script

    def counted(*, keys, args):  # the real script, its calls counted
        calls.append({"keys": list(keys), "args": list(args)})
        return script(keys=keys, args=args)

    deliverer._settle_script = counted
    return endpoints, dispatcher, deliverer, sent, calls


def _events(client, n: int) -> list[str]:
    store = JobStore(client, prefix=PREFIX)
    trade_nos = []
    for i in range(n):
        trade_no = f"BATCH{i:04d}"
        store.create(trade_no, payload(tradeNo=trade_no), contact={})
        assert store.flag(trade_no, "a test")  # one checkout.needs_review event each
        trade_nos.append(trade_no)
    return trade_nos


def _post(receiver, path: str, body: dict) -> None:
    import requests
    requests.post(receiver.base + path, json=body, timeout=5).raise_for_status()


def test_a_fast_batch_is_recorded_in_one_call_with_every_outcome_as_before(client, receiver):
    clock = Clock()
    _endpoints, dispatcher, deliverer, sent, calls = _wiring(client, receiver, clock)
    trade_nos = _events(client, 6)
    dispatcher.run()
    members = [m for batch in sent for m in batch]
    assert len(sent) == 1 and len(members) == 6
    # the first two webhook-ids answered 503 (retried later), then one stale member: gone meanwhile
    _post(receiver, "/_receiver/faults", {"fail_first": 1, "status": 503})
    client.delete(dispatcher.delivery_key(*members[5].split("|", 1)))
    result = deliverer.deliver(members)
    assert result == {"retry": 5, "expired": 1}
    assert len(calls) == 1  # one script call for the whole batch
    due = dict(client.zrange(dispatcher.due_key, 0, -1, withscores=True))
    now_ms = clock() * 1000
    for member, trade_no in zip(members[:5], trade_nos):
        record = {k.decode(): v.decode() for k, v in client.hgetall(dispatcher.delivery_key(*member.split("|", 1))).items()}
        assert record["status"] == "retrying" and record["attempts"] == "1" and record["last"] == "503"
        assert int(record["nextAt"]) == due[member.encode()] and due[member.encode()] >= now_ms + 25_000
        attempts = dispatcher.attempts(trade_no)
        assert [(a["attempt"], a["status"], a["nextAt"]) for a in attempts] == [(1, 503, int(record["nextAt"]))]
    assert members[5].encode() not in due  # nothing to deliver: out of the due set, nothing recorded

    # due again: delivered this time, each recorded, the due set empty, still one call
    _post(receiver, "/_receiver/faults", {"fail_first": 0})
    clock.offset += 31
    sent.clear()
    dispatcher.run()
    again = [m for batch in sent for m in batch]
    assert sorted(again) == sorted(members[:5])
    calls.clear()
    assert deliverer.deliver(again) == {"delivered_after_retry": 5}
    assert len(calls) == 1
    assert client.zcard(dispatcher.due_key) == 0
    for member, trade_no in zip(members[:5], trade_nos):
        record = client.hgetall(dispatcher.delivery_key(*member.split("|", 1)))
        assert record[b"status"] == b"delivered" and record[b"attempts"] == b"2"
        assert [a["status"] for a in dispatcher.attempts(trade_no)] == [503, 204]
    assert {e["tradeNo"] for e in receiver.inbox.events()} == set(trade_nos[:5])


def test_a_slow_receiver_gets_no_post_whose_claim_could_run_out(client, receiver):
    clock = Clock()
    _endpoints, dispatcher, deliverer, sent, calls = _wiring(client, receiver, clock)
    _events(client, 4)
    dispatcher.run()
    members = [m for batch in sent for m in batch]
    post = deliverer._post
    seen: list[tuple[float, int]] = []

    def slow(endpoint, msg_id, body):
        """Each POST takes most of a request's ceiling (the clock moves on; no waiting)."""
        member = members[len(seen)]  # a batch is sent in its order
        seen.append((member, int(client.zscore(dispatcher.due_key, member))))
        claim_needed = (clock() + deliverer.total) * 1000  # the POST could end this late
        assert seen[-1][1] >= claim_needed, "a POST started whose claim could run out before it ends"
        answer = post(endpoint, msg_id, body)
        clock.offset += deliverer.total - 0.5
        return answer

    deliverer._post = slow
    assert deliverer.deliver(members) == {"delivered": 4}
    assert len(seen) == 4
    # each delivery after the first needed the rest claimed again: recorded one by one, as before
    assert len(calls) == 4
    assert client.zcard(dispatcher.due_key) == 0


def test_a_410_skips_the_rest_of_the_batch_for_the_disabled_endpoint(client, receiver):
    clock = Clock()
    endpoints, dispatcher, deliverer, sent, calls = _wiring(client, receiver, clock)
    _events(client, 3)
    dispatcher.run()
    members = [m for batch in sent for m in batch]
    _post(receiver, "/_receiver/faults", {"gone_once": True})
    assert deliverer.deliver(members) == {"gone": 1, "skipped": 2}
    assert not endpoints.get("ep")["enabled"]
    assert json.loads(client.hget(endpoints.key, "ep"))["disabledReason"]
    statuses = [client.hget(dispatcher.delivery_key(*m.split("|", 1)), "status") for m in members]
    assert statuses == [b"failed", b"skipped", b"skipped"]
    assert client.zcard(dispatcher.due_key) == 0
