"""The reconciler under beat: lost callbacks, unknown outcomes and dead workers are settled by
asking the gateway — and nothing is created twice."""

from __future__ import annotations

import pytest

from worker.domain import states
from worker.flows.reconcile import Reconciler
from worker.flows.settle import Settler
from worker.store.jobs import JobStore
from worker.waiting import wait_until
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration

FAST_RECONCILE = {
    "VEXORA_RECONCILE_INTERVAL": "1",
    "VEXORA_PAYING_QUERY_AFTER": "2",
    "VEXORA_QUEUED_REDRIVE_AFTER": "3",
    "VEXORA_RECONCILE_BACKOFF_BASE": "0.5",
    "VEXORA_RECONCILE_BACKOFF_MAX": "2",
    # a short lease, and a broker that would not redeliver within the test: the reconciler must
    "VEXORA_LEASE_SECONDS": "3",
    "VEXORA_VISIBILITY_TIMEOUT": "3600",
    "VEXORA_READ_TIMEOUT": "30",
}


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    s = Stack(redis_url, tmp_path_factory.mktemp("reconcile"), **FAST_RECONCILE).start(web=True, beat=True)
    try:
        yield s
    finally:
        s.stop()


def reasons(record):
    return [h["detail"].get("reason") for h in record["history"]]


def test_a_lost_callback_is_settled_by_query(stack):
    job = payload()
    stack.drop_callbacks(job["tradeNo"])
    trade_no = stack.enqueue(job)
    stack.wait_state(trade_no, states.PAYING)
    stack.set_gateway_status(trade_no, "0000")
    record = stack.wait_state(trade_no, states.SUCCEEDED, timeout=30)
    assert "gateway query: paid" in reasons(record)
    assert stack.sent(trade_no)["received"] == 1


def test_unknown_after_5000_with_the_order_created_takes_the_gateway_status(stack):
    job = payload()
    stack.faults({"kind": "code_5000", "create": True, "tradeNo": job["tradeNo"]})
    trade_no = stack.enqueue(job)
    stack.wait_state(trade_no, states.UNKNOWN)
    record = stack.wait_state(trade_no, states.PAYING, timeout=30)
    assert "gateway query: paying" in reasons(record)
    assert stack.sent(trade_no) == {"received": 1, "created": 1, "duplicates": 0, "faults": 1}


def test_unknown_after_5000_without_an_order_is_sent_once_more(stack):
    job = payload()
    stack.faults({"kind": "code_5000", "create": False, "tradeNo": job["tradeNo"]})
    trade_no = stack.enqueue(job)
    stack.wait_state(trade_no, states.UNKNOWN)
    record = stack.wait_state(trade_no, states.PAYING, timeout=30)
    assert record["paymentLink"]
    assert "re-driven: the gateway does not know it" in reasons(record)
    assert stack.sent(trade_no) == {"received": 2, "created": 1, "duplicates": 0, "faults": 1}


def test_a_worker_killed_mid_submit_is_redriven_with_one_create(stack):
    job = payload()
    stack.faults({"kind": "slow_after_create", "delay": 20, "tradeNo": job["tradeNo"]})
    trade_no = stack.enqueue(job)
    wait_until(lambda: stack.sent(trade_no)["created"] == 1, timeout=20, what="the order to be created")
    victim = next(p for p in stack.processes if p.name.startswith("w") and p.alive)
    victim.kill()
    wait_until(lambda: not victim.alive, timeout=10, what="the worker to die")
    stack.start_worker()
    record = stack.wait_state(trade_no, states.PAYING, timeout=40)
    assert "lease taken over after expiry" in reasons(record)
    assert stack.sent(trade_no) == {"received": 1, "created": 1, "duplicates": 0, "faults": 1}


def test_a_queued_job_whose_message_was_lost_is_redriven(stack):
    job = payload()
    # stored, but its message never reached the broker (the producer died in between)
    stack.runtime.store.create(job["tradeNo"], job, contact={})
    record = stack.wait_state(job["tradeNo"], states.PAYING, timeout=30)
    assert record["paymentLink"]
    assert stack.sent(job["tradeNo"])["created"] == 1


def test_past_the_horizon_a_job_is_flagged_for_review_and_left_alone(stack):
    # its own key prefix: the beat-driven reconciler of the stack must not touch this job
    store = JobStore(stack.runtime.redis, prefix="horizon-test")
    job = payload()
    store.create(job["tradeNo"], job, contact={})
    store.move(job["tradeNo"], states.SUBMITTING, claim_lease=600)
    store.move(job["tradeNo"], states.UNKNOWN)
    sent = []
    reconciler = Reconciler(stack.settings.replace(reconcile_horizon=0), store, stack.runtime.gateway,
                            sent.append, Settler(store, None))
    assert reconciler.run() == {"needs_review": 1}
    record = store.get(job["tradeNo"])
    assert record["state"] == states.UNKNOWN and record["needsReview"] is True
    assert record["history"][-1]["detail"]["kind"] == "needs_review"
    assert sent == [] and stack.sent(job["tradeNo"])["received"] == 0
    assert job["tradeNo"] not in store.open_jobs(states.UNKNOWN)
    assert reconciler.run() == {}  # left alone from now on
