"""Benchmark 1 — pipeline efficiency: jobs/s and CPU per job of the workers against the sandbox,
beside two yardsticks measured in the same run, alternating within each round: a bare
``requests`` client with the same total concurrency hitting the same sandbox's checkout endpoint,
and the naive peer (``bench/naive_app.py``: one Celery task that signs and POSTs, nothing else)
with the same worker shapes.

Two worker shapes with the same total concurrency are measured: the shipped default (one worker
process per core, the threads shared out between them: docker-compose.yml runs 2 replicas of 16
threads) and, for reference, a single process holding all the threads. The pipeline and the
peer are timed the same way: from resuming their consumers until the sandbox's own count of
created orders (``GET /_sandbox/totals``) has grown by n.
"""

from __future__ import annotations

import os
import statistics
import threading
import time

from bench.loadgen import bare_checkout, percentile
from bench import naive_app
from bench.procs import _SETTLED, Bench, CpuMeter, _per_job, cpu_seconds
from bench.report import Section, Table

__all__ = ["run", "bare_rate", "shapes", "counted_round"]

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


PIPELINE, NAIVE = "pipeline", "naive"
# the pipeline as it was when issue 23 began, run from a snapshot of that revision in the same
# rounds (the shipped shape only): "before" and "after" from one run. BENCH_PIPELINE_BEFORE names
# another revision, or nothing ("") to leave it out.
BEFORE = "before"
BEFORE_REVISION = os.environ.get("BENCH_PIPELINE_BEFORE", "3e39d62")
QUIET_MS = 2.0  # the workers are done when they used less CPU than this in QUIET_EVERY s
QUIET_EVERY = 0.1


def _workers_cpu(cpu: dict) -> float:
    return sum(v for k, v in cpu.items() if k.startswith("worker"))


def _quiet(pids: list[int], *, timeout: float = 3.0) -> None:
    """Wait (bounded) until the worker processes are idle: what they still do for the last
    answers is counted in their CPU per job."""
    last = sum(cpu_seconds(pid) for pid in pids)
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        time.sleep(QUIET_EVERY)  # a sampling interval, not a synchronisation
        now = sum(cpu_seconds(pid) for pid in pids)
        if (now - last) * 1000 < QUIET_MS:
            return
        last = now


def counted_round(bench: Bench, kind: str, workers: list, n: int, *, timeout: float) -> dict:
    """One timed round of ``kind`` (``pipeline`` or ``naive``): queue n jobs while ``workers``
    are paused (timed apart), resume them and stop the clock when the sandbox's count of created
    orders has grown by n (``GET /_sandbox/totals``, polled every 20 ms); the CPU window also
    takes the tail until the workers are idle. Then pause them again and, untimed, check the
    jobs (pipeline: every one ``paying``, and when the last got there)."""
    if kind in (PIPELINE, BEFORE):
        trade_nos, latencies = bench.enqueue(n)
        enqueue_s, queue = sum(latencies), "checkout"
    else:
        trade_nos, enqueue_s = bench.send_naive(n)
        queue = naive_app.QUEUE
    n = len(trade_nos)
    before = bench.sandbox_counts()
    pids = bench.cpu_pids()
    pids.update({f"worker {i}": w.popen.pid for i, w in enumerate(workers)})
    seen = {"created": before["created"], "at": time.perf_counter()}

    def stalled() -> bool:  # nothing created for 5 s: a job is lost or refused, stop waiting
        return time.perf_counter() - seen["at"] > 5

    def created() -> bool:
        count = bench.sandbox_counts()["created"]
        if count != seen["created"]:
            seen.update(created=count, at=time.perf_counter())
        return count - before["created"] >= n

    with CpuMeter(pids) as cpu:
        started = time.perf_counter()
        seen["at"] = started
        bench.resume(workers, queues=(queue,))
        bench.wait_count(created, timeout=timeout, interval=0.02, fallback=stalled)
        drain = time.perf_counter() - started
        counted_at = time.time()
        _quiet([w.popen.pid for w in workers])
    bench.pause(workers, queues=(queue,))
    after = bench.sandbox_counts()
    result = {"n": n, "enqueue_s": enqueue_s, "drain_s": drain, "jobs_per_s": n / drain,
              "created": after["created"] - before["created"],
              "refused": (after["received"] - before["received"]) - (after["created"] - before["created"]),
              "cpu_ms_per_job": _per_job(cpu.used, n), "lag_ms": None, "other": {}, "timeline": None,
              "in_flight": None}
    if kind in (PIPELINE, BEFORE):
        waited = bench.wait_states(trade_nos, {"paying"}, timeout=10, settle=_SETTLED)
        last = bench.last_paying_ms(trade_nos)
        timeline = bench.timeline(trade_nos)
        result.update(paying=waited.states.get("paying", 0),
                      other={k: v for k, v in waited.states.items() if k != "paying"},
                      lag_ms=(last - counted_at * 1000) if last is not None else None,
                      timeline=timeline, in_flight=timeline["in_task_mean_s"] * n / drain)
        if not waited.complete:
            bench.drop_queue(queue)
    elif result["created"] < n:
        bench.drop_queue(queue)  # what is still queued must not leak into the next round
    return result


def _ms(value) -> str:
    return "–" if value is None else f"{value:.0f}"


def run(bench: Bench, sizes: dict) -> Section:
    c, n, rounds = sizes["concurrency"], sizes["jobs"], sizes["rounds"]
    shaped = shapes(c)
    default = shaped[0]
    section = Section(
        "pipeline", "1. Pipeline efficiency (the workers vs a bare client and a naive Celery worker)",
        f"how much of the gateway throughput the whole pipeline keeps, and what a job costs in "
        f"CPU, beside two yardsticks measured in the same run: a bare `requests` client with {c} "
        f"threads POSTing to the same sandbox, and a naive Celery worker (`bench/naive_app.py`: "
        f"one task that signs and POSTs with tenacity retries — no store, lease, validation, "
        f"history or result) in the same shapes. The workers hold {c} threads in all, as shipped: "
        f"one process per core ({label(default)} on this {default[0]}-core machine; "
        f"docker-compose.yml runs 2 replicas of 16), and for reference all {c} threads in one "
        f"process. Goals: pipeline ≥ 1.0× the naive peer at 100 ms in both shapes, and ≥ 0.75 of "
        f"the bare client at 0 ms ({label(default)}).")
    started = time.perf_counter()
    bench.sandbox_reset()
    # explicit, whatever the defaults become: what Flower, /metrics and the lease need stays on
    on = {"VEXORA_TASK_EVENTS": "true", "VEXORA_METRICS": "true"}
    groups = {shape: [bench.start_worker(concurrency=shape[1], extra_env=on) for _ in range(shape[0])]
              for shape in shaped}
    naives = {shape: [bench.start_naive(concurrency=shape[1]) for _ in range(shape[0])] for shape in shaped}
    import tempfile
    from pathlib import Path

    from bench.procs import snapshot
    tree = (snapshot(BEFORE_REVISION, Path(tempfile.mkdtemp(prefix="bench-before-", dir=bench.log_dir)))
            if BEFORE_REVISION else None)
    befores = ([bench.start_worker(concurrency=default[1], extra_env=on, tree=tree) for _ in range(default[0])]
               if tree is not None else [])
    summary = Table(["gateway latency", "workers (total threads)", "bare client req/s", "naive jobs/s",
                     "pipeline jobs/s", "pipeline / naive", "pipeline / bare",
                     f"ideal ({c} / latency)"], title="Summary (medians of the rounds; a ratio is the median of the rounds' own ratios)")
    table = Table(["gateway latency", "round", "workers", "bare client req/s", "naive jobs/s",
                   "pipeline jobs/s", "pipeline / naive", "pipeline / bare", "enqueue jobs/s naive / ours",
                   "last `paying` after the count, ms", "not paying / refused n·p / bare not 0000"])
    cpu = Table(["gateway latency", "run", "workers", "sandbox", "Redis", "bench process",
                 "total CPU ms per job", "in-task ms p50 / p99", f"threads busy (mean of {c})"],
                title="Where the CPU goes (ms of CPU per job or request, medians of the rounds; in-task = "
                      "lease claimed → `paying`, from the job's history, last round)")
    data: dict = {"shapes": [list(s) for s in shaped], "by_shape": {}}
    try:
        for latency in LATENCIES:
            lat = f"{latency * 1000:.0f} ms"
            bench.gateway_latency(latency)
            for shape in shaped:  # warm-up: threads, connections, scripts
                counted_round(bench, PIPELINE, groups[shape], 2 * c, timeout=60)
                counted_round(bench, NAIVE, naives[shape], 2 * c, timeout=60)
            if befores:
                counted_round(bench, BEFORE, befores, 2 * c, timeout=60)
            bare_runs, before_runs = [], []
            runs = {(shape, kind): [] for shape in shaped for kind in (PIPELINE, NAIVE)}
            for r in range(1, rounds + 1):
                bare = bare_rate(bench, c, n)
                bare_runs.append(bare)
                for shape in shaped:
                    order = (PIPELINE, NAIVE) if r % 2 else (NAIVE, PIPELINE)  # alternate who goes first
                    got = {}
                    for kind in order:
                        workers = groups[shape] if kind == PIPELINE else naives[shape]
                        got[kind] = counted_round(bench, kind, workers, n, timeout=max(60, n / 20))
                        runs[shape, kind].append(got[kind])
                    pipe, nv = got[PIPELINE], got[NAIVE]
                    table.add(lat, r, label(shape), bare["rps"], nv["jobs_per_s"], pipe["jobs_per_s"],
                              pipe["jobs_per_s"] / nv["jobs_per_s"], pipe["jobs_per_s"] / bare["rps"],
                              f"{nv['n'] / nv['enqueue_s']:,.0f} / {pipe['n'] / pipe['enqueue_s']:,.0f}",
                              _ms(pipe["lag_ms"]),
                              f"{sum(pipe['other'].values())} / {nv['refused']}·{pipe['refused']} / "
                              f"{bare['requests'] - bare['ok']}")
                if befores:
                    before_runs.append(counted_round(bench, BEFORE, befores, n, timeout=max(60, n / 20)))
            b = statistics.median(x["rps"] for x in bare_runs)
            bc = {k: statistics.median(x["cpu_ms_per_job"].get(k, 0.0) for x in bare_runs)
                  for k in bare_runs[-1]["cpu_ms_per_job"]}
            last_bare = bare_runs[-1]
            cpu.add(lat, "bare client", "–", bc.get("sandbox", 0.0), bc.get("redis", 0.0),
                    bc.get("bench (client/poll)", 0.0), sum(bc.values()),
                    f"{percentile(last_bare['latencies'], 50) * 1000:.0f} / "
                    f"{percentile(last_bare['latencies'], 99) * 1000:.0f} (request)", "–")
            if before_runs:
                bcpu = {k: statistics.median(x["cpu_ms_per_job"].get(k, 0.0) for x in before_runs)
                        for k in before_runs[-1]["cpu_ms_per_job"]}
                tl = before_runs[-1]["timeline"]
                cpu.add(lat, f"pipeline before issue 23 ({BEFORE_REVISION}), {label(default)}",
                        bcpu.get("worker", 0.0), bcpu.get("sandbox", 0.0), bcpu.get("redis", 0.0),
                        bcpu.get("bench (client/poll)", 0.0), bcpu.get("total", 0.0),
                        f"{tl['in_task_p50_s'] * 1000:.0f} / {tl['in_task_p99_s'] * 1000:.0f}" if tl else "–",
                        before_runs[-1]["in_flight"] if before_runs[-1]["in_flight"] is not None else "–")
                rate = statistics.median(x["jobs_per_s"] for x in before_runs)
                ratio = statistics.median(x["jobs_per_s"] / z["rps"] for x, z in zip(before_runs, bare_runs))
                summary.add(lat, f"before issue 23 ({BEFORE_REVISION}): {label(default)}", b, "–", rate, "–",
                            ratio, f"{c / latency:.0f}" if latency else "–")
                data.setdefault("before", {})[latency] = {"rate": rate, "vs_bare": ratio, "cpu": bcpu,
                                                          "revision": BEFORE_REVISION}
            for shape in shaped:
                med = {}
                for kind in (PIPELINE, NAIVE):
                    rs = runs[shape, kind]
                    keys = rs[-1]["cpu_ms_per_job"]
                    med[kind] = {"rate": statistics.median(x["jobs_per_s"] for x in rs),
                                 "cpu": {k: statistics.median(x["cpu_ms_per_job"].get(k, 0.0) for x in rs)
                                         for k in keys}}
                for kind in (NAIVE, PIPELINE):
                    mc, lastr = med[kind]["cpu"], runs[shape, kind][-1]
                    tl = lastr["timeline"]
                    cpu.add(lat, f"{kind}, {label(shape)}", mc.get("worker", 0.0), mc.get("sandbox", 0.0),
                            mc.get("redis", 0.0), mc.get("bench (client/poll)", 0.0), mc.get("total", 0.0),
                            f"{tl['in_task_p50_s'] * 1000:.0f} / {tl['in_task_p99_s'] * 1000:.0f}" if tl else "–",
                            lastr["in_flight"] if lastr["in_flight"] is not None else "–")
                p, nv = med[PIPELINE]["rate"], med[NAIVE]["rate"]
                # each round's own ratios (its runs went side by side), then their median
                pairs = list(zip(runs[shape, PIPELINE], runs[shape, NAIVE], bare_runs))
                vs_naive = statistics.median(x["jobs_per_s"] / y["jobs_per_s"] for x, y, _ in pairs)
                vs_bare = statistics.median(x["jobs_per_s"] / z["rps"] for x, _, z in pairs)
                summary.add(lat, f"{label(shape)} ({shape[0] * shape[1]})", b, nv, p, vs_naive, vs_bare,
                            f"{c / latency:.0f}" if latency else "–")
                pc, nc = med[PIPELINE]["cpu"], med[NAIVE]["cpu"]
                lastp = runs[shape, PIPELINE][-1]
                entry = {"bare": b, "pipeline": p, "ratio": vs_bare, "naive": nv, "vs_naive": vs_naive,
                         "bare_cpu": bc, "pipe_cpu": {**pc, "worker": pc.get("worker", 0.0)},
                         "naive_cpu": {**nc, "worker": nc.get("worker", 0.0)},
                         "in_flight": lastp["in_flight"], "timeline": lastp["timeline"],
                         "lag_ms": [x["lag_ms"] for x in runs[shape, PIPELINE]],
                         "rounds": [x["jobs_per_s"] for x in runs[shape, PIPELINE]],
                         "naive_rounds": [x["jobs_per_s"] for x in runs[shape, NAIVE]]}
                data["by_shape"].setdefault(label(shape), {})[latency] = entry
                if shape == default:
                    data[latency] = entry
    finally:
        for workers in [*groups.values(), *naives.values(), befores]:
            for worker in workers:
                bench.stop(worker)
        bench.gateway_latency(0)
    section.tables = [summary, table, cpu]
    section.data = data
    section.notes = [
        f"Jobs: {n} per round, {rounds} round(s) per latency; in each round the bare client runs "
        f"first, then for each worker shape the pipeline and the naive peer, in turn (the peer "
        f"first in even rounds). Every worker process of both is started once, before the first "
        f"round; those not being measured have their consumers cancelled.",
        f"Timing, the same for the pipeline and the peer: all {n} jobs are queued first with the "
        f"workers' consumers cancelled (`celery control cancel_consumer`) — ours by "
        f"`enqueue_checkout` one at a time, the peer's by one `send_task` each with the job's fields "
        f"as keyword arguments; both timed apart (\"enqueue jobs/s\") — then `add_consumer` starts "
        f"the clock, which stops when the sandbox's own count of created orders has grown by {n} "
        f"(`GET /_sandbox/totals`, one small answer, polled every 20 ms: neither side pays for "
        f"per-job polling, nor our store for an index read). Afterwards, untimed, every pipeline "
        f"job's state is checked (\"not paying\") and \"last `paying` after the count\" says how "
        f"long after the sandbox's count the last job was stored as `paying` (from the jobs' "
        f"histories; negative when it was stored before the 20 ms poll saw the count); \"refused\" counts requests the sandbox received but did not create "
        f"(n: naive, p: pipeline).",
        "The pipeline's workers: `celery -A worker worker -Q checkout,callbacks,reconcile,webhooks "
        "--pool threads -c N --without-gossip --without-mingle --loglevel INFO`, with "
        "`VEXORA_TASK_EVENTS=true` (task events for Flower, batched by our consumer), "
        "`VEXORA_METRICS=true` (the in-memory counters and their 5 s flusher) and the heartbeats "
        "on: the lease heartbeat thread, and Celery's worker heartbeat event every 2 s (not "
        "disabled by `--without-heartbeat`).",
        "The naive peer (`bench/naive_app.py`): `celery -A bench.naive_app worker -Q naive --pool "
        "threads -c N --without-gossip --without-mingle`, Celery's default log level (WARNING: no "
        "line per task; ours log at INFO); Redis (the same one) as broker, JSON, "
        "`task_ignore_result`, `worker_send_task_events=True` (Celery's own dispatcher: the same "
        "task events Flower reads), worker heartbeats at Celery's default (one event every 2 s); "
        "otherwise Celery's defaults: early acks, prefetch multiplier 4. Its task adds `notifyUrl`, "
        "a timestamp and the MD5 `sign` (`worker.gateway.signing`, byte for byte what our client "
        "signs: tests/unit/test_naive_peer.py) and POSTs with a per-thread `requests.Session`, "
        "tenacity retrying connection errors, 5xx and 429 (5 tries, jittered exponential backoff).",
        "Bare client: one `requests.Session` per thread, each thread sends one untimed request first, "
        "then all start together; bodies are the schema's output for a job with a fresh tradeNo, "
        "timestamped and MD5-signed per request, answer parsed as JSON; it counts its own answers. "
        "Latency is injected by the sandbox fault rule `{\"kind\":\"latency\",\"delay\":0.1,"
        "\"times\":-1}` (before the order is created); 0 ms means no rule.",
        f"Before each latency, a warm-up round of {2 * c} jobs is run untimed on each shape of both.",
        f"\"Before issue 23\": the same pipeline, as shipped at {BEFORE_REVISION} (main when issue 23 "
        f"began; a `git archive` of it, its workers started from there with the same command and "
        f"settings), in the shipped shape, run in every round after the others and timed the same "
        f"way; its jobs are enqueued by today's `enqueue_checkout` (one round trip; the records and "
        f"messages are those the old code reads).",
        "CPU: user+system time (psutil's `cpu_times()`) of each process tree from resuming the "
        "consumers until the count is reached and then the workers are idle (under "
        f"{QUIET_MS:.0f} ms of CPU in {QUIET_EVERY * 1000:.0f} ms, at most 3 s more: the last "
        "answers' work is counted), per job; the workers column sums the worker processes; the "
        "bench process polls the sandbox's count during a worker round and is the load generator "
        "during a bare round. Threads busy = jobs/s × mean in-task time (Little's law): how many of "
        "the pipeline workers' threads were inside a task on average.",
    ]
    section.seconds = time.perf_counter() - started
    return section
