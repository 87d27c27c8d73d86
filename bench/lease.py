"""Benchmark 8 — what issues 11 and 13 add to a job: the lease heartbeat, the lease-token checks
and the metrics.

What a submit pays for holding its lease: registering it with the process's ``LeaseKeeper`` and
releasing it (a dict under a lock), the token check made by every holder write (inside scripts the
submit already ran, so no extra round trip), and the heartbeat itself: one round trip per process
every ``lease_renew_every`` seconds renewing every lease it holds, shared by all jobs in flight.
The metrics: a gateway request adds a counter and a histogram observation in memory (``Meter``),
flushed to Redis by a background thread every 5 s in one round trip; a state change is counted by
the move script itself (an HINCRBY and the entry-time index, no extra round trip).
Each is timed on its own here; the pipeline benchmark (1) measures the whole submit with them.
"""

from __future__ import annotations

import time

from bench.procs import Bench
from bench.report import Section, Table
from worker.domain import states
from worker.flows.lease import LeaseKeeper
from worker.ops.metrics import Meter
from worker.store.jobs import JobStore

__all__ = ["run"]


def _per_call(fn, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - started) / n * 1e6


def run(bench: Bench, sizes: dict) -> Section:
    n = sizes["calls"]
    section = Section(
        "lease", "8. Lease heartbeat and metrics (cost per job)",
        "what holding a renewable lease adds to a submit: registering and releasing it, the "
        "conditional (token-checked) attempt count against the plain one, and one heartbeat "
        "renewing 32 held leases, amortised over the jobs a worker finishes between two beats; "
        "and what the metrics add: counting a gateway request in memory, the periodic flush, and "
        "a claim by the move script that now also counts the transition.")
    started = time.perf_counter()
    store = bench.runtime.store
    s = bench.settings
    table = Table(["what", "calls", "µs per call", "µs per job"])
    try:
        jobs = [bench.payload() for _ in range(max(n, 32))]
        for job in jobs:
            store.create(job["tradeNo"], job, contact={})
        claims = {j["tradeNo"]: store.move(j["tradeNo"], states.SUBMITTING, claim_lease=3600).lease_token
                  for j in jobs}
        keeper = LeaseKeeper(store, lease_seconds=s.lease, renew_every=3600)  # beats timed by hand
        items = list(claims.items())

        def hold(i):
            trade_no, token = items[i % len(items)]
            with keeper.hold(trade_no, token):
                pass
        hold_us = _per_call(hold, n)
        table.add("LeaseKeeper.hold + release (in process)", n, hold_us, hold_us)

        plain_us = _per_call(lambda i: store.count_attempt(items[i % len(items)][0], ipHash="h"), n)
        guarded_us = _per_call(lambda i: store.count_attempt(items[i % len(items)][0],
                                                             lease_token=items[i % len(items)][1], ipHash="h"), n)
        table.add("count_attempt, plain pipeline (before)", n, plain_us, plain_us)
        table.add("count_attempt, token-checked script (now)", n, guarded_us, guarded_us)

        held = dict(items[:32])
        beats = max(20, n // 50)
        renew_us = _per_call(lambda i: store.renew_leases(held, s.lease), beats)
        # a worker at ~130 jobs/s (half the pipeline's 2 × 16 threads) between two beats
        per_beat_jobs = 130 * s.lease_renew_every
        table.add(f"heartbeat: renew 32 leases, one round trip (every {s.lease_renew_every:g} s)", beats,
                  renew_us, renew_us / per_beat_jobs)
        meter = Meter(JobStore(bench.redis, prefix="bench-meter"), flush_seconds=3600)  # flushed by hand below

        def measured(i):
            meter.inc("gateway_requests_total", op="checkout", outcome="ok")
            meter.observe("gateway_request_duration_seconds", 0.1, op="checkout")
        meter_us = _per_call(measured, n)
        table.add("metrics: one gateway request counted and observed (in process)", n, meter_us, meter_us)
        flush_us = _per_call(lambda i: (measured(i), meter.flush()), 50)
        per_flush_jobs = 130 * 5.0
        table.add("metrics: one flush to Redis (every 5 s)", 50, flush_us, flush_us / per_flush_jobs)
        bench.redis.delete("bench-meter:metrics:counters")

        fresh = [bench.payload() for _ in range(n)]
        for job in fresh:
            store.create(job["tradeNo"], job, contact={})
        move_us = _per_call(lambda i: store.move(fresh[i]["tradeNo"], states.SUBMITTING, claim_lease=60), n)
        table.add("a claim (move script, now counting the transition and the entry time)", n, move_us, move_us)
        section.data = {"meter_us": meter_us, "flush_us": flush_us, "move_us": move_us, "hold_us": hold_us, "count_plain_us": plain_us, "count_guarded_us": guarded_us,
                        "renew_us": renew_us, "renew_per_job_us": renew_us / per_beat_jobs}
    finally:
        bench.forget_jobs()
    section.tables = [table]
    section.notes = [
        f"Lease {s.lease:g} s, heartbeat every {s.lease_renew_every:g} s (the defaults). The per-job "
        "figure of the heartbeat assumes a worker process finishing 130 jobs/s, about half the "
        "pipeline benchmark's rate for two processes; at lower rates the beat costs more per job "
        "but the worker is idle anyway.",
        "The token check replaces the attempt count's two-command pipeline with one script call "
        "(same round trips); the outcome's move checks the token inside the move script it "
        "already runs.",
    ]
    section.seconds = time.perf_counter() - started
    return section
