"""Benchmark 3 — producer: ``enqueue_checkout`` one call at a time and from 8 threads, and where
its time goes (the store's ``create`` vs the broker send), with what a batch API would gain,
emulated without touching ``worker/``: the store's own ``create`` queued into one pipeline.
"""

from __future__ import annotations

import threading
import time

from bench.loadgen import percentile
from bench.procs import Bench
from bench.report import Section, Table
from worker.client import enqueue_checkout
from worker.domain.masking import mask_contact
from worker.store.jobs import JobStore

__all__ = ["run"]

BATCH = 100
THREADS = 8


def _row(label: str, n: int, seconds: float, latencies: list[float] | None) -> list:
    p50 = percentile(latencies, 50) * 1000 if latencies else float("nan")
    p99 = percentile(latencies, 99) * 1000 if latencies else float("nan")
    return [label, n, n / seconds, p50, p99, seconds / n * 1e6]


def _concurrent(bench: Bench, n: int, threads: int) -> tuple[float, list[float]]:
    jobs = [bench.payload() for _ in range(n)]
    shares = [jobs[i::threads] for i in range(threads)]
    latencies: list[float] = []
    lock = threading.Lock()
    go = threading.Barrier(threads + 1)

    def produce(share: list[dict]) -> None:
        mine = []
        go.wait(timeout=30)
        for job in share:
            started = time.perf_counter()
            enqueue_checkout(job, runtime=bench.runtime)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=produce, args=(s,), daemon=True) for s in shares]
    for w in workers:
        w.start()
    go.wait(timeout=30)
    started = time.perf_counter()
    for w in workers:
        w.join(timeout=300)
    return time.perf_counter() - started, latencies


def _pipelined_create(bench: Bench, jobs: list[dict]) -> float:
    """``JobStore.create`` for every job, its Lua script queued into one pipeline per BATCH jobs
    (the instance's script is wrapped; the record and arguments are built by ``create`` itself)."""
    store = JobStore(bench.redis, prefix=bench.settings.key_prefix,
                     ttl_seconds=bench.settings.job_ttl_seconds, events_maxlen=bench.settings.events_maxlen)
    script = store._create
    started = time.perf_counter()
    for i in range(0, len(jobs), BATCH):
        pipe = bench.redis.pipeline(transaction=False)

        def queued(keys, args, _pipe=pipe):
            script(keys=keys, args=args, client=_pipe)
            return ("created", "queued")  # the real answers are checked after execute

        store._create = queued
        for job in jobs[i:i + BATCH]:
            store.create(job["tradeNo"], job, contact=mask_contact(job), amount=job.get("amount"))
        answers = pipe.execute()
        bad = [a for a in answers if a[0] not in (b"created", "created")]
        if bad:
            raise RuntimeError(f"pipelined create refused {len(bad)} jobs: {bad[:3]}")
    return time.perf_counter() - started


def run(bench: Bench, sizes: dict) -> Section:
    n = sizes["calls"]
    section = Section(
        "producer", "3. Producer (`enqueue_checkout`)",
        "how fast an application can hand jobs over: calls/s and per-call latency of "
        "`enqueue_checkout` (store the job, then queue its message), alone and from 8 threads; "
        "below, the two halves of a call timed on their own, and what a batch API that pipelines "
        "the store writes would gain.")
    started = time.perf_counter()
    store = bench.runtime.store
    table = Table(["what", "calls", "calls/s", "p50 ms", "p99 ms", "µs per job"])
    try:
        # one at a time (no worker runs: the messages wait in the queue and are dropped after)
        bench.enqueue(50)  # warm-up: connections, script load
        t0 = time.perf_counter()
        _, latencies = bench.enqueue(n)
        seconds = time.perf_counter() - t0
        table.add(*_row("enqueue_checkout, one at a time", n, seconds, latencies))
        one_at_a_time = n / seconds

        seconds, latencies = _concurrent(bench, n, THREADS)
        table.add(*_row(f"enqueue_checkout, {THREADS} producer threads", n, seconds, latencies))
        concurrent = n / seconds

        jobs = [bench.payload() for _ in range(n)]
        latencies = []
        t0 = time.perf_counter()
        for job in jobs:
            s = time.perf_counter()
            store.create(job["tradeNo"], job, contact=mask_contact(job), amount=job.get("amount"))
            latencies.append(time.perf_counter() - s)
        seconds = time.perf_counter() - t0
        table.add(*_row("  part: store.create only (Lua, 1 round trip)", n, seconds, latencies))

        latencies = []
        t0 = time.perf_counter()
        for job in jobs:
            s = time.perf_counter()
            bench.runtime.send("vexora.checkout.submit", job["tradeNo"])
            latencies.append(time.perf_counter() - s)
        seconds = time.perf_counter() - t0
        table.add(*_row("  part: Celery send_task only", n, seconds, latencies))
        send_us = seconds / n * 1e6

        jobs = [bench.payload() for _ in range(n)]
        seconds = _pipelined_create(bench, jobs)
        table.add(*_row(f"  batch emulation: store.create pipelined, {BATCH} per pipeline", n, seconds, None))
        batch_us = seconds / n * 1e6
        table.add("  batch emulation + one send_task per job (estimate)", n, 1e6 / (batch_us + send_us),
                  float("nan"), float("nan"), batch_us + send_us)
        section.data = {"one": one_at_a_time, "concurrent": concurrent,
                        "batch_estimate": 1e6 / (batch_us + send_us)}
    finally:
        bench.drop_queue("checkout")
        bench.forget_jobs()
    section.tables = [table]
    section.notes = [
        f"{n} calls per line, after 50 untimed ones; no worker runs, so the broker and Redis serve "
        "only the producer (the queued messages are dropped afterwards). The producer is this "
        "Python process, on the same 2 cores as Redis.",
        f"The batch emulation calls the store's own `create` with its Lua script redirected into a "
        f"redis-py pipeline ({BATCH} jobs, one round trip plus a `SCRIPT EXISTS`), without editing "
        "`worker/`; the project has no batch API. Sending the messages in a batch as well would "
        "need kombu-level work (one `LPUSH` per message today) and is not emulated.",
    ]
    section.seconds = time.perf_counter() - started
    return section
