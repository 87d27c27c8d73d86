"""Benchmark 1 — pipeline efficiency: end-to-end jobs/s of one worker against the sandbox,
divided by the req/s of a bare ``requests`` client with the same concurrency hitting the same
sandbox's checkout endpoint, measured side by side (alternating rounds) in one run.
"""

from __future__ import annotations

import statistics
import threading
import time

from bench.loadgen import bare_checkout, percentile
from bench.procs import Bench, CpuMeter
from bench.report import Section, Table

__all__ = ["run", "bare_rate"]

LATENCIES = (0.1, 0.0)


def bare_rate(bench: Bench, concurrency: int, n: int, *, time_limit: float = 120) -> dict:
    """The yardstick: ``concurrency`` threads POSTing signed checkouts (fields built beforehand,
    exactly what the worker's schema produces for a job, each with a fresh tradeNo)."""
    schema = bench.runtime.schema
    prepared = [schema.load(bench.payload()) for _ in range(n + 2 * concurrency)]
    lock = threading.Lock()
    it = iter(prepared)

    def fields_for() -> dict:
        with lock:
            return next(it)

    with CpuMeter(bench.cpu_pids()) as cpu:
        result = bare_checkout(bench.sandbox_url + "/v1/vexora/checkout", bench.settings.merchant_no,
                               bench.settings.app_secret, fields_for, concurrency=concurrency,
                               requests_total=n, time_limit=time_limit)
    result["cpu_ms_per_job"] = {k: v * 1000 / max(1, result["requests"]) for k, v in cpu.used.items()}
    return result


def run(bench: Bench, sizes: dict) -> Section:
    c, n, rounds = sizes["concurrency"], sizes["jobs"], sizes["rounds"]
    section = Section(
        "pipeline", "1. Pipeline efficiency (one worker vs a bare client)",
        f"how much of the gateway throughput the whole pipeline keeps: jobs/s from "
        f"`enqueue_checkout` to `paying` for one worker (`--pool threads -c {c}`), over the req/s "
        f"a bare `requests` client with {c} threads gets from the same sandbox. Goal: ≥ 0.85 at "
        f"100 ms gateway latency.")
    started = time.perf_counter()
    bench.sandbox_reset()
    worker = bench.start_worker(concurrency=c)
    table = Table(["gateway latency", "round", "bare client req/s", "pipeline jobs/s", "ratio",
                   "bare p50 / p99 ms", "enqueue jobs/s (separate)", "jobs/s incl. enqueue",
                   "not paying / bare not 0000"])
    summary = Table(["gateway latency", "bare client req/s (median)", "pipeline jobs/s (median)",
                     "ratio", f"ideal at this latency ({c} / latency)"], title="Summary (medians of the rounds)")
    cpu = Table(["gateway latency", "run", "worker", "sandbox", "Redis", "bench process",
                 "total CPU ms per job", "in-task ms p50 / p99", "threads busy (mean of "
                 f"{c})"], title="Where the CPU goes (ms of CPU per job or request, last round; "
                                 "in-task = lease claimed → `paying`, from the job's history)")
    data = {}
    try:
        for latency in LATENCIES:
            bench.gateway_latency(latency)
            bench.batch([worker], 2 * c, timeout=60)  # warm-up: threads, sessions, connections
            bare_rates, pipe_rates = [], []
            for r in range(1, rounds + 1):
                bare = bare_rate(bench, c, n)
                pipe = bench.batch([worker], n, timeout=max(60, n / 20))
                bare_rates.append(bare["rps"])
                pipe_rates.append(pipe["jobs_per_s"])
                table.add(f"{latency * 1000:.0f} ms", r, bare["rps"], pipe["jobs_per_s"],
                          pipe["jobs_per_s"] / bare["rps"],
                          f"{percentile(bare['latencies'], 50) * 1000:.0f} / "
                          f"{percentile(bare['latencies'], 99) * 1000:.0f}",
                          pipe["n"] / pipe["enqueue_s"], pipe["e2e_jobs_per_s"],
                          f"{sum(pipe['other'].values())} / {bare['requests'] - bare['ok']}")
            lat = f"{latency * 1000:.0f} ms"
            bc, pc, tl = bare["cpu_ms_per_job"], pipe["cpu_ms_per_job"], pipe["timeline"]
            cpu.add(lat, "bare client", "–", bc.get("sandbox", 0.0), bc.get("redis", 0.0),
                    bc.get("bench (client/poll)", 0.0), sum(bc.values()),
                    f"{percentile(bare['latencies'], 50) * 1000:.0f} / {percentile(bare['latencies'], 99) * 1000:.0f} (request)",
                    "–")
            cpu.add(lat, "pipeline", pc.get("worker", 0.0), pc.get("sandbox", 0.0), pc.get("redis", 0.0),
                    pc.get("bench (client/poll)", 0.0), pc["total"],
                    f"{tl['in_task_p50_s'] * 1000:.0f} / {tl['in_task_p99_s'] * 1000:.0f}",
                    pipe["in_flight"])
            b, p = statistics.median(bare_rates), statistics.median(pipe_rates)
            summary.add(f"{latency * 1000:.0f} ms", b, p, p / b,
                        f"{c / latency:.0f}" if latency else "–")
            data[latency] = {"bare": b, "pipeline": p, "ratio": p / b, "bare_cpu": bc, "pipe_cpu": pc,
                             "in_flight": pipe["in_flight"], "timeline": tl}
    finally:
        bench.stop(worker)
        bench.gateway_latency(0)
    section.tables = [summary, table, cpu]
    section.data = data
    section.notes = [
        f"Jobs: {n} per round, {rounds} round(s) per latency, bare client and pipeline alternating. "
        f"Each pipeline round enqueues all {n} jobs first with the worker's consumers cancelled "
        f"(`celery control cancel_consumer`; the enqueue is timed separately, one `enqueue_checkout` "
        f"at a time), then `add_consumer` starts the clock, which stops when the store's `paying` "
        f"index has grown by {n} (`ZCARD`, polled every 10 ms); every job's state is checked "
        f"afterwards (\"not paying\"). \"jobs/s incl. enqueue\" adds the enqueue time.",
        "Bare client: one `requests.Session` per thread, each thread sends one untimed request first, "
        "then all start together; bodies are the schema's output for a job with a fresh tradeNo, "
        "timestamped and MD5-signed per request, answer parsed as JSON. Latency is injected by the "
        "sandbox fault rule `{\"kind\":\"latency\",\"delay\":0.1,\"times\":-1}`; 0 ms means no rule.",
        f"Before each latency, a warm-up batch of {2 * c} jobs is run untimed.",
        "CPU: user+system time from `/proc/<pid>/stat` of each process tree over the timed part, "
        "per job (pipeline) or per request (bare client); the bench process polls the store during "
        "a pipeline round and is the load generator during a bare round. Threads busy = jobs/s × "
        "mean in-task time (Little's law): how many of the worker's threads were inside a task on "
        "average; the rest waited for Celery to hand them a message.",
    ]
    section.seconds = time.perf_counter() - started
    return section
