"""Benchmark 1 — pipeline efficiency: end-to-end jobs/s of the workers against the sandbox,
divided by the req/s of a bare ``requests`` client with the same total concurrency hitting the
same sandbox's checkout endpoint, measured side by side (alternating rounds) in one run.

Two worker shapes with the same total concurrency are measured: the shipped default (one worker
process per core, the threads shared out between them: docker-compose.yml runs 2 replicas of 16
threads) and, for reference, a single process holding all the threads.
"""

from __future__ import annotations

import os
import statistics
import threading
import time

from bench.loadgen import bare_checkout, percentile
from bench.procs import Bench, CpuMeter
from bench.report import Section, Table

__all__ = ["run", "bare_rate", "shapes"]

LATENCIES = (0.1, 0.0)


def shapes(concurrency: int) -> list[tuple[int, int]]:
    """(processes, threads each): the default first (one process per core), then one process."""
    cores = max(1, os.cpu_count() or 1)
    default = (cores, max(1, concurrency // cores))
    return [default] if default == (1, concurrency) else [default, (1, concurrency)]


def label(shape: tuple[int, int]) -> str:
    return f"{shape[0]} × threads -c {shape[1]}"


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


def _workers_cpu(cpu: dict) -> float:
    return sum(v for k, v in cpu.items() if k.startswith("worker"))


def run(bench: Bench, sizes: dict) -> Section:
    c, n, rounds = sizes["concurrency"], sizes["jobs"], sizes["rounds"]
    shaped = shapes(c)
    default = shaped[0]
    section = Section(
        "pipeline", "1. Pipeline efficiency (the workers vs a bare client, same concurrency)",
        f"how much of the gateway throughput the whole pipeline keeps: jobs/s from "
        f"`enqueue_checkout` to `paying`, over the req/s a bare `requests` client with {c} threads "
        f"gets from the same sandbox. The workers hold {c} threads in all, as shipped: one process "
        f"per core ({label(default)} on this {default[0]}-core machine; docker-compose.yml runs "
        f"2 replicas of 16), and for reference all {c} threads in one process. Goal: ≥ 0.85 at "
        f"100 ms gateway latency.")
    started = time.perf_counter()
    bench.sandbox_reset()
    groups = {shape: [bench.start_worker(concurrency=shape[1]) for _ in range(shape[0])] for shape in shaped}
    table = Table(["gateway latency", "round", "bare client req/s", "workers", "pipeline jobs/s", "ratio",
                   "bare p50 / p99 ms", "enqueue jobs/s (separate)", "jobs/s incl. enqueue",
                   "not paying / bare not 0000"])
    summary = Table(["gateway latency", "workers (total threads)", "bare client req/s (median)",
                     "pipeline jobs/s (median)", "ratio", f"ideal at this latency ({c} / latency)"],
                    title="Summary (medians of the rounds)")
    cpu = Table(["gateway latency", "run", "workers", "sandbox", "Redis", "bench process",
                 "total CPU ms per job", "in-task ms p50 / p99", f"threads busy (mean of {c})"],
                title="Where the CPU goes (ms of CPU per job or request, last round; in-task = lease "
                      "claimed → `paying`, from the job's history)")
    data: dict = {"shapes": [list(s) for s in shaped], "by_shape": {}}
    try:
        for latency in LATENCIES:
            lat = f"{latency * 1000:.0f} ms"
            bench.gateway_latency(latency)
            for workers in groups.values():  # warm-up: threads, connections, scripts
                bench.batch(workers, 2 * c, timeout=60)
            bare_rates, pipe_rates = [], {shape: [] for shape in shaped}
            last = {}
            for r in range(1, rounds + 1):
                bare = bare_rate(bench, c, n)
                bare_rates.append(bare["rps"])
                for shape, workers in groups.items():
                    pipe = bench.batch(workers, n, timeout=max(60, n / 20))
                    pipe_rates[shape].append(pipe["jobs_per_s"])
                    last[shape] = pipe
                    table.add(lat, r, bare["rps"], label(shape), pipe["jobs_per_s"],
                              pipe["jobs_per_s"] / bare["rps"],
                              f"{percentile(bare['latencies'], 50) * 1000:.0f} / "
                              f"{percentile(bare['latencies'], 99) * 1000:.0f}",
                              pipe["n"] / pipe["enqueue_s"], pipe["e2e_jobs_per_s"],
                              f"{sum(pipe['other'].values())} / {bare['requests'] - bare['ok']}")
            bc = bare["cpu_ms_per_job"]
            cpu.add(lat, "bare client", "–", bc.get("sandbox", 0.0), bc.get("redis", 0.0),
                    bc.get("bench (client/poll)", 0.0), sum(bc.values()),
                    f"{percentile(bare['latencies'], 50) * 1000:.0f} / "
                    f"{percentile(bare['latencies'], 99) * 1000:.0f} (request)", "–")
            b = statistics.median(bare_rates)
            for shape in shaped:
                pipe, pc = last[shape], last[shape]["cpu_ms_per_job"]
                tl = pipe["timeline"]
                cpu.add(lat, f"pipeline, {label(shape)}", _workers_cpu(pc), pc.get("sandbox", 0.0),
                        pc.get("redis", 0.0), pc.get("bench (client/poll)", 0.0), pc["total"],
                        f"{tl['in_task_p50_s'] * 1000:.0f} / {tl['in_task_p99_s'] * 1000:.0f}",
                        pipe["in_flight"])
                p = statistics.median(pipe_rates[shape])
                summary.add(lat, f"{label(shape)} ({shape[0] * shape[1]})", b, p, p / b,
                            f"{c / latency:.0f}" if latency else "–")
                entry = {"bare": b, "pipeline": p, "ratio": p / b, "bare_cpu": bc,
                         "pipe_cpu": {**pc, "worker": _workers_cpu(pc)}, "in_flight": pipe["in_flight"],
                         "timeline": tl, "rounds": list(pipe_rates[shape])}
                data["by_shape"].setdefault(label(shape), {})[latency] = entry
                if shape == default:
                    data[latency] = entry
    finally:
        for workers in groups.values():
            for worker in workers:
                bench.stop(worker)
        bench.gateway_latency(0)
    section.tables = [summary, table, cpu]
    section.data = data
    section.notes = [
        f"Jobs: {n} per round, {rounds} round(s) per latency; in each round the bare client runs "
        f"first, then each worker shape in turn. Each pipeline round enqueues all {n} jobs first with "
        f"the workers' consumers cancelled (`celery control cancel_consumer`; the enqueue is timed "
        f"separately, one `enqueue_checkout` at a time), then `add_consumer` starts the clock, "
        f"which stops when the store's `paying` index has grown by {n} (`ZCARD`, polled every "
        f"10 ms); every job's state is checked afterwards (\"not paying\"). \"jobs/s incl. enqueue\" "
        f"adds the enqueue time. The shapes not being measured stay started with their consumers "
        f"cancelled.",
        "Bare client: one `requests.Session` per thread, each thread sends one untimed request first, "
        "then all start together; bodies are the schema's output for a job with a fresh tradeNo, "
        "timestamped and MD5-signed per request, answer parsed as JSON. Latency is injected by the "
        "sandbox fault rule `{\"kind\":\"latency\",\"delay\":0.1,\"times\":-1}`; 0 ms means no rule.",
        f"Before each latency, a warm-up batch of {2 * c} jobs is run untimed on each shape.",
        "CPU: user+system time (psutil's `cpu_times()`) of each process tree over the timed part, "
        "per job (pipeline; the workers column sums the worker processes) or per request (bare "
        "client); the bench process polls the store during a pipeline round and is the load "
        "generator during a bare round. Threads busy = jobs/s × mean in-task time (Little's law): "
        "how many of the workers' threads were inside a task on average; the rest waited for "
        "Celery to hand them a message.",
    ]
    section.seconds = time.perf_counter() - started
    return section
