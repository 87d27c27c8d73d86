"""Worker crashes: three workers, one SIGKILLed at a random moment, twice, while checkouts are in
flight. The broker redelivers its messages, the lease lets another worker take them over after
asking the gateway, the reconciler re-drives what is left: nothing lost, nothing created twice."""

from __future__ import annotations

import random
import time

import pytest

from worker.domain import states
from worker.waiting import wait_until
from tests.reliability.conftest import size
from tests.reliability.support import FAST, created_twice, enqueue_all, records, wait_settled
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(redis_url, tmp_path):
    s = Stack(redis_url, tmp_path, VEXORA_LEASE_SECONDS="3", VEXORA_VISIBILITY_TIMEOUT="6",
              VEXORA_READ_TIMEOUT="5", **FAST).start(workers=3, concurrency=8, web=True, beat=True)
    try:
        yield s
    finally:
        s.stop()


def test_sigkill_a_worker_twice_mid_run(stack, figures):
    rng = random.Random()
    jobs = [payload() for _ in range(size(240, 800))]
    trade_nos = [job["tradeNo"] for job in jobs]
    # every checkout takes 0.4 s at the gateway, so dozens are in flight at any moment; no payer
    # pays, so no callback can settle a killed worker's job before the takeover does
    stack.faults({"kind": "latency", "delay": 0.4, "times": -1})
    started = time.monotonic()
    enqueue_all(stack, jobs)

    recoveries, killed = [], 0
    # the original three workers are the busy ones; a replacement may have nothing yet
    originals = [p for p in stack.processes if getattr(p, "worker_name", None)]
    for fraction in sorted(rng.uniform(0.15, 0.7) for _ in range(2)):
        wait_until(lambda: _done(stack, trade_nos) >= fraction * len(jobs), timeout=180,
                   what=f"{fraction:.0%} of the jobs to get a payment link")
        victim = rng.choice([p for p in originals if p.alive])
        in_flight = [t for t, s in records(stack, trade_nos).items() if s == states.SUBMITTING]
        killed_at = time.monotonic()
        victim.kill()  # SIGKILL, the whole process group
        killed += 1
        stack.start_worker(concurrency=8)
        wait_until(lambda: all(s != states.SUBMITTING for t, s in records(stack, in_flight).items()),
                   timeout=120, what="the killed worker's jobs to move on")
        recoveries.append(time.monotonic() - killed_at)

    _, final = wait_settled(stack, trade_nos, timeout=size(240, 600), settled={states.PAYING})
    lost = [t for t, s in final.items() if s != states.PAYING]
    taken_over = sum("lease taken over after expiry" in _reasons(stack, t) for t in trade_nos)
    twice = created_twice(stack, trade_nos)
    figures.add("worker crashes", jobs=len(jobs), faults=f"{killed} SIGKILLs", taken_over=taken_over, lost=len(lost),
                created_twice=len(twice), recover_s="/".join(f"{r:.1f}" for r in recoveries),
                settle_s=time.monotonic() - started)
    assert lost == [] and twice == []
    assert taken_over > 0  # the kills hit jobs in flight, and other workers took them over
    assert all(stack.stats()["checkout"][t]["created"] == 1 for t in trade_nos)


def _done(stack, trade_nos) -> int:
    return sum(s == states.PAYING for s in records(stack, trade_nos).values())


def _reasons(stack, trade_no) -> list[str]:
    return [h["detail"].get("reason") for h in stack.runtime.store.history(trade_no)]


def test_with_default_settings_a_killed_workers_jobs_reach_paying_within_a_minute(redis_url, tmp_path, figures):
    """Issue 11 as a new user meets it: shipped lease, timeouts, visibility and reconciler interval;
    a gateway that answers in 1 s; two workers, one SIGKILLed with jobs in flight."""
    stack = Stack(redis_url, tmp_path, defaults=True).start(workers=2, concurrency=16, beat=True)
    try:
        jobs = [payload() for _ in range(size(40, 200))]
        trade_nos = [job["tradeNo"] for job in jobs]
        stack.faults({"kind": "latency", "delay": 1.0, "times": -1})
        enqueue_all(stack, jobs)
        # Killed once both workers hold their full prefetch (16 each, all in the broker's unacked
        # hash): not while one is still taking messages off the queue. A message taken by kombu's
        # Redis transport (BRPOP) and not yet recorded as unacknowledged is lost with a process
        # killed in that gap; its job waits for the reconciler's re-drive (5 min by default;
        # RELIABILITY.md "What it does not guarantee", tests/integration/test_reconcile.py).
        wait_until(lambda: sum(s == states.SUBMITTING for s in records(stack, trade_nos).values()) >= 16
                   and stack.runtime.redis.hlen("unacked") >= 32,
                   timeout=60, what="16 jobs in flight and each worker's prefetch taken")
        victim = next(p for p in stack.processes if getattr(p, "worker_name", None))
        killed_at = time.monotonic()
        victim.kill()
        in_flight = [t for t, s in records(stack, trade_nos).items() if s == states.SUBMITTING]
        _, final = wait_settled(stack, trade_nos, timeout=90, settled={states.PAYING})
        recovered = time.monotonic() - killed_at
        lost = [t for t, s in final.items() if s != states.PAYING]
        twice = created_twice(stack, trade_nos)
        taken_over = sum("lease taken over after expiry" in _reasons(stack, t) for t in trade_nos)
        figures.add("worker crash, default settings", jobs=len(jobs), in_flight_at_kill=len(in_flight),
                    taken_over=taken_over, lost=len(lost), created_twice=len(twice), kill_to_all_paying_s=recovered)
        r = stack.runtime.redis
        broker = {"checkout queue": r.llen("checkout"), "unacked": r.hlen("unacked"),
                  "unacked_mutex ttl": r.ttl("unacked_mutex")}
        assert lost == [] and twice == [], ({t: stack.runtime.store.get(t) for t in lost + twice}, broker)
        assert recovered <= 60, f"the last job reached paying {recovered:.1f}s after the kill"
    finally:
        stack.stop()
