"""Takeover (issue 11): short leases renewed by a heartbeat, on Redis's clock; a holder that lost
its lease records nothing; the reconciler keeps running under a backlog of checkouts."""

from __future__ import annotations

import signal
import time

import pytest

from worker.domain import states
from worker.domain.errors import LeaseLostError
from worker.flows.lease import LeaseKeeper
from worker.flows.reconcile import Reconciler
from worker.store.jobs import JobStore
from worker.waiting import wait_until
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_url):
    import redis
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield JobStore(client, prefix="takeover-test")
    client.close()


def created(store, **overrides) -> str:
    job = payload(**overrides)
    store.create(job["tradeNo"], job, contact={})
    return job["tradeNo"]


def test_a_holder_that_lost_its_lease_neither_counts_nor_records(store):
    trade_no = created(store)
    first = store.move(trade_no, states.SUBMITTING, claim_lease=-1)  # ran out at once
    second = store.move(trade_no, states.SUBMITTING, claim_lease=60)
    assert first.applied and second.applied and first.lease_token != second.lease_token
    with pytest.raises(LeaseLostError):
        store.count_attempt(trade_no, lease_token=first.lease_token, ipHash="h")
    late = store.move(trade_no, states.PAYING, fields={"paymentLink": "late"}, lease_token=first.lease_token)
    assert not late.applied and late.lease_lost
    job = store.load(trade_no)
    assert job.state == states.SUBMITTING and job.attempts == 0 and "paymentLink" not in job.fields
    assert store.count_attempt(trade_no, lease_token=second.lease_token, ipHash="h") == 1
    assert store.move(trade_no, states.PAYING, lease_token=second.lease_token).applied


def test_a_holder_whose_lease_ran_out_sends_nothing_even_before_anyone_took_over(store):
    trade_no = created(store)
    claim = store.move(trade_no, states.SUBMITTING, claim_lease=-1)
    with pytest.raises(LeaseLostError):
        store.count_attempt(trade_no, lease_token=claim.lease_token)


def test_leases_are_on_redis_clock_not_the_workers(store):
    trade_no = created(store)
    behind = JobStore(store.redis, prefix=store.prefix, clock=lambda: time.time() - 3600)
    assert behind.move(trade_no, states.SUBMITTING, claim_lease=60).applied
    # a worker whose clock is an hour slow did not hand out an already expired lease
    assert not store.move(trade_no, states.SUBMITTING, claim_lease=60).applied
    assert store.load(trade_no).lease_until > store.server_now_ms() + 50_000


def test_the_heartbeat_renews_held_leases_and_reports_lost_ones(store):
    keep, lose = created(store), created(store)
    kept = store.move(keep, states.SUBMITTING, claim_lease=1)
    lost = store.move(lose, states.SUBMITTING, claim_lease=-1)
    store.move(lose, states.SUBMITTING, claim_lease=60)  # taken over by another worker
    keeper = LeaseKeeper(store, lease_seconds=30, renew_every=0.05)
    with keeper.hold(keep, kept.lease_token), keeper.hold(lose, lost.lease_token):
        wait_until(lambda: store.load(keep).lease_until > store.server_now_ms() + 20_000, timeout=5,
                   what="the heartbeat to renew the lease")
        assert keeper.renew_now() == {lose}
    assert keeper.held() == {}
    keeper.stop()


def test_reconcile_bookkeeping_is_one_atomic_step(store):
    trade_no = created(store)
    store.move(trade_no, states.SUBMITTING, claim_lease=60)
    store.move(trade_no, states.UNKNOWN)
    assert [store.schedule_check(trade_no, states.UNKNOWN, base=1, maximum=4) for _ in range(4)] == [1, 2, 3, 4]
    job = store.load(trade_no)
    assert job.fields["reconcileChecks"] == 4
    due = store.redis.zscore(store.keys.index(states.UNKNOWN), trade_no)
    assert due == job.fields["nextCheckAt"] and due - store.now_ms() <= 4_000


# -- real worker processes -------------------------------------------------------------------------
def test_a_frozen_worker_is_taken_over_and_records_nothing_when_it_wakes(redis_url, tmp_path):
    # a request deadline beyond the lease, so the woken worker reads its late answer and tries to
    # record it (with the shipped defaults the deadline is half the lease)
    s = Stack(redis_url, tmp_path, VEXORA_LEASE_SECONDS="2", VEXORA_READ_TIMEOUT="30",
              VEXORA_REQUEST_DEADLINE="30", VEXORA_VISIBILITY_TIMEOUT="3600")
    try:
        s.start(workers=0)
        frozen = s.start_worker(concurrency=2)
        job = payload()
        trade_no = job["tradeNo"]
        # the order is created at once, its answer (with the payment link) comes 6 s later
        s.faults({"tradeNo": trade_no, "kind": "slow_after_create", "delay": 6.0})
        s.enqueue(job)
        wait_until(lambda: s.sent(trade_no)["created"] == 1, timeout=20, what="the checkout to be sent")
        frozen.kill(signal.SIGSTOP)  # a frozen container: no heartbeat, the request still open
        store = s.runtime.store
        wait_until(lambda: store.load(trade_no).lease_until < store.server_now_ms(), timeout=10,
                   what="the frozen worker's lease to run out")
        s.start_worker(concurrency=2)
        rt = s.runtime
        Reconciler(s.settings, rt.store, rt.gateway, lambda t: rt.send("vexora.checkout.submit", t),
                   rt.settler).run()
        record = s.wait_state(trade_no, states.PAYING, timeout=30)  # the taker asked the gateway
        assert "lease taken over after expiry" in [h["detail"].get("reason") for h in record["history"]]
        frozen.kill(signal.SIGCONT)

        def lease_lost():
            return [h for h in s.runtime.store.history(trade_no) if h["detail"].get("kind") == "lease_lost"]
        wait_until(lease_lost, timeout=30, what="the woken worker to give up its late answer")
        record = s.record(trade_no)
        assert record["state"] == states.PAYING and record["attempts"] == 1
        assert "paymentLink" not in record  # the late holder's answer was not recorded
        assert s.sent(trade_no) == {"received": 1, "created": 1, "duplicates": 0, "faults": 1}
        assert "lease lost" in frozen.log()
    finally:
        s.stop()


def test_the_reconciler_keeps_running_under_a_backlog_of_2000_checkouts(redis_url, tmp_path):
    s = Stack(redis_url, tmp_path, VEXORA_RECONCILE_INTERVAL="1")
    try:
        s.start(workers=1, concurrency=4, beat=True)
        s.faults({"kind": "latency", "delay": 1.0, "times": -1})  # 4 checkouts a second at most
        client = s.runtime.redis
        pipe = client.pipeline(transaction=False)
        for _ in range(2000):
            job = payload()
            s.runtime.store.create(job["tradeNo"], job, contact={})
            s.runtime.send("vexora.checkout.submit", job["tradeNo"])
        pipe.execute()
        assert client.llen("checkout") > 1500
        key = "vexora:reconcile:last_pass"

        def passes(seen=set()):
            value = client.get(key)
            if value:
                seen.add(value)
            return len(seen) >= 3 and seen
        wait_until(passes, timeout=30, interval=0.2, what="three reconciler passes behind the backlog")
        assert client.llen("checkout") > 1000  # the backlog was still there all along
    finally:
        s.stop()
