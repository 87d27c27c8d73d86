"""Issue 20 (findings 2, 4, 9) on a real redis-server: the record's version grows with every write
and a resolve is conditional on it, in one step with the unflag; open and flagged jobs never
expire; the settler's move and its flag are one EVALSHA; money for a tradeNo with no job is kept
for a person."""

from __future__ import annotations

import uuid

import pytest
import redis

from worker.domain import settlement, states
from worker.domain.settlement import Report
from worker.flows.review import ReviewQueue, VersionChanged, VersionRequired
from worker.flows.settle import ORPHAN, Settler
from worker.store.jobs import JobStore

pytestmark = pytest.mark.integration

TTL = 3600


@pytest.fixture
def store(redis_url):
    client = redis.Redis.from_url(redis_url)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield JobStore(client, prefix=prefix, ttl_seconds=TTL)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def new(store) -> str:
    trade_no = uuid.uuid4().hex[:16]
    store.create(trade_no, {"tradeNo": trade_no, "amount": "300"}, contact={}, amount="300")
    return trade_no


def paying(store) -> str:
    trade_no = new(store)
    assert store.move(trade_no, states.SUBMITTING, claim_lease=60).applied
    assert store.move(trade_no, states.PAYING, fields={"paymentLink": "L"}).applied
    return trade_no


def ttls(store, trade_no: str) -> tuple[int, int]:
    return store.redis.ttl(store.keys.job(trade_no)), store.redis.ttl(store.keys.history(trade_no))


def review(store) -> ReviewQueue:
    return ReviewQueue(store, Settler(store, None), lambda: None)


def test_the_version_grows_with_every_move_flag_annotation_and_note(store):
    trade_no = new(store)
    seen = [store.load(trade_no).version]
    for write in (lambda: store.move(trade_no, states.SUBMITTING, claim_lease=60),
                  lambda: store.count_attempt(trade_no),
                  lambda: store.move(trade_no, states.PAYING, fields={"paymentLink": "L"}),
                  lambda: store.annotate(trade_no, message="m"),
                  lambda: store.flag(trade_no, "look"),
                  lambda: store.note(trade_no, "lease_lost", {"reason": "r"}),
                  lambda: store.schedule_check(trade_no, states.PAYING, base=1, maximum=2)):
        write()
        seen.append(store.load(trade_no).version)
    assert seen == sorted(set(seen)) and seen[0] == 1, seen
    assert store.get(trade_no)["version"] == seen[-1]


def test_open_and_flagged_jobs_have_no_ttl_and_get_one_once_closed_and_unflagged(store):
    trade_no = new(store)
    assert ttls(store, trade_no) == (-1, -1)
    assert store.redis.ttl(store.keys.payload(trade_no)) == -1
    trade_no = paying(store)
    assert ttls(store, trade_no) == (-1, -1)
    store.flag(trade_no, "an amount that differs")
    assert store.move(trade_no, states.SUCCEEDED).applied  # closed, but still flagged
    assert ttls(store, trade_no) == (-1, -1)
    record = review(store).resolve(trade_no, "succeeded", "checked", "alice",
                                   version=store.load(trade_no).version, amount="300")
    assert record["needsReview"] is False and record["resolvedAmount"] == "300"
    assert all(0 < t <= TTL for t in ttls(store, trade_no))

    closed = paying(store)
    assert store.move(closed, states.SUCCEEDED).applied
    assert all(0 < t <= TTL for t in ttls(store, closed))
    store.flag(closed, "money after the close")  # flagged after it closed: kept until resolved
    assert ttls(store, closed) == (-1, -1)
    assert closed in store.flagged()


def test_a_resolve_is_refused_when_the_job_moved_since_the_version_seen(store):
    queue = review(store)
    trade_no = paying(store)
    store.flag(trade_no, "undocumented status 00032")
    seen = store.load(trade_no).version
    # a late 0000 between the operator's read and the resolve
    assert Settler(store, None).apply(trade_no, Report(settlement.CALLBACK, "0000", "300", {})) == states.SUCCEEDED
    with pytest.raises(VersionChanged):
        queue.resolve(trade_no, "failed", "never paid", "alice", version=seen)
    with pytest.raises(VersionRequired):
        queue.resolve(trade_no, "failed", "never paid", "alice", version=None)
    job = store.load(trade_no)
    assert job.state == states.SUCCEEDED and job.fields["needsReview"] is True and trade_no in store.flagged()


def test_a_flag_raised_after_the_read_survives_the_resolve(store):
    queue = review(store)
    trade_no = paying(store)
    assert store.move(trade_no, states.SUCCEEDED).applied
    store.flag(trade_no, "first reason")
    seen = store.load(trade_no).version
    store.flag(trade_no, "a failure reported after the payment")  # between the read and the resolve
    with pytest.raises(VersionChanged):
        queue.resolve(trade_no, "succeeded", "fine", "alice", version=seen, amount="300")  # the no-move path
    job = store.load(trade_no)
    assert job.fields["needsReview"] is True and job.fields["reviewReason"] == "a failure reported after the payment"
    assert trade_no in store.flagged()


def test_the_settlers_move_and_its_flag_are_one_script_call(store, monkeypatch):
    trade_no = paying(store)
    sent = []
    real = store.redis.execute_command

    def recording(*args, **kwargs):
        sent.append(str(args[0]).upper())
        return real(*args, **kwargs)

    monkeypatch.setattr(store.redis, "execute_command", recording)

    def crash(*_args, **_kwargs):  # a process dying after its move, before a second call
        raise SystemExit("killed")

    monkeypatch.setattr(store, "flag", crash)
    # paid 250 of 300: partially paid and flagged for review
    result = Settler(store, None).apply(trade_no, Report(settlement.CALLBACK, "0000", "250", {}))
    assert result == states.PARTIALLY_PAID
    writes = [c for c in sent if c not in ("HGETALL", "GET")]
    assert writes == ["EVALSHA"], sent
    job = store.load(trade_no)
    assert job.fields["needsReview"] is True and trade_no in store.flagged()
    kinds = [h["detail"].get("kind") for h in store.history(trade_no)]
    assert kinds[-1] == "needs_review"


def test_a_refused_move_writes_no_flag_either(store):
    trade_no = paying(store)
    moved = store.move(trade_no, states.SUCCEEDED, allowed_from={states.UNKNOWN},
                       flag=("should not be", {"source": "callback"}))
    assert not moved.applied
    assert not store.load(trade_no).fields.get("needsReview") and trade_no not in store.flagged()


def test_money_for_a_trade_no_with_no_job_is_kept_for_a_person(store):
    queue = review(store)
    settler = Settler(store, None)
    assert settler.apply("NOJOB1", Report(settlement.QUERY, "0000", "300", {"platFormTradeNo": "P1"})) == ORPHAN
    assert settler.apply("NOJOB2", Report(settlement.CALLBACK, "00029", None, {})) == ORPHAN  # no money
    orphans = queue.orphans()
    assert [o["tradeNo"] for o in orphans] == ["NOJOB1"]
    assert orphans[0]["paidAmount"] == "300" and orphans[0]["platFormTradeNo"] == "P1"
    assert store.redis.ttl(store.keys.orphan("NOJOB1")) == -1
    queue.dismiss("NOJOB1", "refunded at the gateway", "alice")
    assert queue.orphans() == [] and "NOJOB1" not in store.flagged()
    assert 0 < store.redis.ttl(store.keys.orphan("NOJOB1")) <= TTL
