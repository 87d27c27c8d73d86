"""The job store on a real redis-server: atomic, forward-only moves, leases, history, events, TTL."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from worker.domain import states
from worker.domain.errors import DuplicateTradeNoError
from worker.store.jobs import JobStore

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_url):
    client = redis.Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield JobStore(client, prefix=prefix, ttl_seconds=3600)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def new(store, **payload) -> str:
    trade_no = uuid.uuid4().hex[:16]
    assert store.create(trade_no, {"tradeNo": trade_no, "amount": "300", **payload},
                        contact={"mobile": "090****1234"}, amount="300") == ("created", "queued")
    return trade_no


def test_create_is_idempotent_and_refuses_another_payload(store):
    trade_no = new(store)
    assert store.create(trade_no, {"tradeNo": trade_no, "amount": "300"}, contact={}) == ("existing", "queued")
    with pytest.raises(DuplicateTradeNoError):
        store.create(trade_no, {"tradeNo": trade_no, "amount": "301"}, contact={})
    assert store.load(trade_no).payload == {"tradeNo": trade_no, "amount": "300"}


def test_moves_only_forward_and_records_history_events_and_index(store):
    trade_no = new(store)
    assert store.open_jobs(states.QUEUED) == [trade_no]
    assert store.move(trade_no, states.SUBMITTING, claim_lease=60).applied
    assert store.move(trade_no, states.PAYING, fields={"paymentLink": "L"}, drop=["payload"]).applied
    assert not store.move(trade_no, states.QUEUED).applied
    assert store.move(trade_no, states.SUCCEEDED).applied
    refused = store.move(trade_no, states.FAILED)
    assert not refused.applied and refused.previous == states.SUCCEEDED
    record = store.get(trade_no)
    assert record["state"] == states.SUCCEEDED and record["paymentLink"] == "L"
    assert "payload" not in record and "fingerprint" not in record and "leaseToken" not in record
    assert [h["to"] for h in record["history"]] == ["queued", "submitting", "paying", "succeeded"]
    assert [e["to"] for _, e in store.events()] == ["queued", "submitting", "paying", "succeeded"]
    for state in states.OPEN:
        assert trade_no not in store.open_jobs(state)
    assert 0 < store.redis.ttl(store.keys.job(trade_no)) <= 3600
    assert 0 < store.redis.ttl(store.keys.history(trade_no)) <= 3600


def test_a_live_lease_cannot_be_taken_and_an_expired_one_can(store):
    trade_no = new(store)
    assert store.move(trade_no, states.SUBMITTING, claim_lease=60).applied
    assert not store.move(trade_no, states.SUBMITTING, claim_lease=60).applied
    other = new(store)
    assert store.move(other, states.SUBMITTING, claim_lease=-1).applied  # already expired
    taken = store.move(other, states.SUBMITTING, claim_lease=60)
    assert taken.applied and taken.previous == states.SUBMITTING


def test_a_claim_returns_the_payload_and_picks_its_detail_by_the_state_it_left(store):
    trade_no = new(store, mobile="09011112222")
    claim = store.move(trade_no, states.SUBMITTING, claim_lease=-1, detail={"reason": "claimed"},
                       detail_from={states.SUBMITTING: {"reason": "taken over"}})
    assert claim.applied and claim.previous == states.QUEUED and claim.attempts == 0
    assert claim.payload == {"tradeNo": trade_no, "amount": "300", "mobile": "09011112222"}
    assert not store.redis.hexists(store.keys.job(trade_no), "payload")  # kept beside the record
    assert store.count_attempt(trade_no, ipHash="h1") == 1
    again = store.move(trade_no, states.SUBMITTING, claim_lease=60, detail={"reason": "claimed"},
                       detail_from={states.SUBMITTING: {"reason": "taken over"}})
    assert again.applied and again.previous == states.SUBMITTING and again.attempts == 1
    assert [h["detail"] for h in store.history(trade_no)[1:]] == [{"reason": "claimed"}, {"reason": "taken over"}]
    assert store.load(trade_no).fields["ipHash"] == "h1"
    plain = store.move(trade_no, states.PAYING, fields={"paymentLink": "L"})
    assert plain.applied and plain.payload is None  # only a claim reads the payload


def test_a_claim_of_a_job_never_sent_counts_its_first_request_and_a_takeover_does_not(store):
    trade_no = new(store)
    first = store.move(trade_no, states.SUBMITTING, claim_lease=-1, count_first=True)
    assert first.applied and first.counted and first.attempts == 1
    assert store.load(trade_no).attempts == 1  # counted before anything is sent, with the claim
    # a takeover finds a request counted: it may have been sent, so it is counted by the resend
    taken = store.move(trade_no, states.SUBMITTING, claim_lease=60, count_first=True)
    assert taken.applied and not taken.counted and taken.attempts == 1
    refused = store.move(trade_no, states.SUBMITTING, claim_lease=60, count_first=True)
    assert not refused.applied and not refused.counted and store.load(trade_no).attempts == 1
    plain = new(store)
    assert not store.move(plain, states.SUBMITTING, claim_lease=60).counted  # only when asked
    assert store.load(plain).attempts == 0


def test_a_record_from_before_the_payload_key_is_still_claimed_and_purged(store):
    trade_no = new(store, mobile="09011112222")
    key = store.keys.payload(trade_no)
    store.redis.hset(store.keys.job(trade_no), "payload", store.redis.get(key))
    store.redis.delete(key)
    claim = store.move(trade_no, states.SUBMITTING, claim_lease=60)
    assert claim.applied and claim.payload["mobile"] == "09011112222"
    assert store.load(trade_no).payload["mobile"] == "09011112222"
    store.move(trade_no, states.PAYING, drop=["payload"])
    assert store.load(trade_no).payload is None
    assert not store.redis.hexists(store.keys.job(trade_no), "payload")
    assert store.redis.exists(key, store.keys.retained(trade_no)) == 0


def test_a_job_without_its_payload_is_not_claimed(store):
    trade_no = new(store)
    store.redis.delete(store.keys.payload(trade_no))
    refused = store.move(trade_no, states.SUBMITTING, claim_lease=60)
    assert not refused.applied and refused.previous == states.QUEUED
    assert store.load(trade_no).state == states.QUEUED


def test_concurrent_claims_have_exactly_one_winner(store):
    trade_no = new(store)
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: store.move(trade_no, states.SUBMITTING, claim_lease=60).applied,
                                range(10)))
    assert results.count(True) == 1


def test_unknown_job_is_not_moved(store):
    moved = store.move("nope", states.SUBMITTING)
    assert not moved.applied and moved.previous is None
    assert store.get("nope") is None


@pytest.mark.parametrize("retention", [0, 60])
def test_payer_data_is_purged_or_kept_apart_for_the_retention_only(redis_url, retention):
    client = redis.Redis.from_url(redis_url)
    store = JobStore(client, prefix=f"r{uuid.uuid4().hex[:8]}", payload_retention=retention)
    trade_no = new(store, mobile="09011112222")
    store.move(trade_no, states.SUBMITTING, claim_lease=60)
    store.move(trade_no, states.PAYING, drop=["payload"])
    assert store.load(trade_no).payload is None
    assert "09011112222" not in json.dumps(store.get(trade_no))
    assert client.exists(store.keys.payload(trade_no)) == 0
    assert client.object("encoding", store.keys.job(trade_no)) in (b"listpack", b"ziplist")
    kept = client.get(store.keys.retained(trade_no))
    if retention:
        assert json.loads(kept)["mobile"] == "09011112222"
        assert 0 < client.ttl(store.keys.retained(trade_no)) <= retention
    else:
        assert kept is None
    for key in client.scan_iter(f"{store.prefix}:*"):
        client.delete(key)
