"""Benchmark 4 — callback ingestion: ``POST /vexora/notify`` under gunicorn at 200 concurrent
connections, N distinct ``paying`` jobs each getting one signed ``0000`` callback; then every
queued callback applied (all N ``succeeded``, the queue and unacked set empty: 0 lost).

Side by side in one run: the web app as it was before issue 23 (``BEFORE``, a git revision of this
repository, run from a snapshot of its files: the HMGET of the job's account, then Celery's
``send_task``, Flask's dispatch and an access line per callback, gthread 2×8) and as it is now,
in each gunicorn shape asked for. The CPU each callback costs is split by process (psutil
``cpu_times`` of the gunicorn tree and of redis-server; wrk's own from the kernel's account of
a waited-for child, or this process's when the Python generator runs here).
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from bench.loadgen import post_bodies, run_wrk, wrk_available
from bench.procs import Bench, CpuMeter, callback_body, snapshot, wait_for
from bench.report import Section, Table
from worker.local.services import Service, http_ok

__all__ = ["run", "BEFORE"]

CONNECTIONS = 200
ROOT = Path(__file__).resolve().parents[1]
# The code before issue 23 (main when it began); BENCH_CALLBACKS_BEFORE names another revision,
# or nothing ("") to leave the before row out.
BEFORE = os.environ.get("BENCH_CALLBACKS_BEFORE", "5e4b10d")
BEFORE_SHAPE = (2, 8)


def _start_web_at(bench: Bench, tree: Path, workers: int, threads: int) -> Service:
    """gunicorn running the app of ``tree`` (its own gunicorn.conf.py), on the bench's web port."""
    argv = [sys.executable, "-m", "gunicorn", "worker.web:app", "-c", str(tree / "gunicorn.conf.py"),
            "--bind", f"127.0.0.1:{bench.web_port}", "--workers", str(workers), "--threads", str(threads),
            "--backlog", "2048"]
    env = {**bench.env, "PYTHONPATH": str(tree)}
    service = Service("web-before", argv, env, bench.log_dir, cwd=tree).start()
    bench.services.started.append(service)
    service.wait_ready(http_ok(bench.web_url + "/healthz"), timeout=60)
    bench.web, bench.web_shape = service, (workers, threads)
    return service


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def run(bench: Bench, sizes: dict) -> Section:
    n, shapes, time_limit = sizes["callbacks"], sizes["web_shapes"], sizes["time_limit"]
    tool = "wrk" if wrk_available() and not os.environ.get("BENCH_NO_WRK") else "python"
    section = Section(
        "callbacks", "4. Callback ingestion (`POST /vexora/notify`)",
        f"how many gateway callbacks the web app takes per second at {CONNECTIONS} concurrent "
        f"connections, what each costs in CPU (gunicorn, Redis, the load generator apart), each "
        f"verified, schema-checked and queued before `OK`; then that a worker applies every one "
        f"(none lost). Before issue 23 and now, side by side.")
    started = time.perf_counter()
    ingest = Table(["code", "gunicorn workers×threads", "load generator", "callbacks", "req/s (queued/s)",
                    "p50 ms", "p99 ms", "non-200", "socket errors", "messages queued",
                    "CPU ms/callback: gunicorn", "Redis", "load generator", "sum"],
                   title="Ingestion (worker consumers cancelled: the web app alone)")
    apply = Table(["code", "gunicorn workers×threads", "messages", "jobs → succeeded", "jobs succeeded/s",
                   "lost (answered OK, not applied)", "queue left", "unacked left"],
                  title="Applying the queued callbacks (one worker, `--pool threads -c 16`)")
    cases: list[tuple[str, int, int, Path | None]] = []
    work = Path(tempfile.mkdtemp(prefix="bench-callbacks-", dir=bench.log_dir))
    tree = snapshot(BEFORE, work) if BEFORE else None
    if tree is not None:
        cases.append((f"before ({BEFORE})", *BEFORE_SHAPE, tree))
    cases += [("now", workers, threads, None) for workers, threads in shapes]
    worker = bench.start_worker(concurrency=16)
    data, data_before = {}, {}
    try:
        for code, workers, threads, at in cases:
            if at is None:
                bench.start_web(workers, threads)
            else:
                _start_web_at(bench, at, workers, threads)
            shape = f"{workers}×{threads}"
            try:
                trade_nos = bench.make_paying(n)
                bench.drop_queue("callbacks")
                bodies = [callback_body(t) for t in trade_nos]
                # warm-up: a few connections and the app's first requests, on other jobs
                warm = [callback_body(t) for t in bench.make_paying(50)]
                post_bodies(bench.web_url, warm, connections=10, time_limit=30)
                bench.drop_queue("callbacks")
                pids = {"gunicorn": bench.web.popen.pid, "redis": bench.redis_server.process.pid}
                if tool == "python":
                    pids["load generator"] = os.getpid()
                children = _children_cpu()
                with CpuMeter(pids) as cpu:
                    if tool == "wrk":
                        load = run_wrk(bench.web_url, bodies, connections=CONNECTIONS, threads=2,
                                       time_limit=time_limit, log_dir=bench.log_dir,
                                       arrived=lambda: bench.queue_length("callbacks"))
                    else:
                        load = post_bodies(bench.web_url, bodies, connections=CONNECTIONS,
                                           time_limit=time_limit)
                if tool == "wrk":  # wrk has exited and been waited for: its CPU is the children's
                    cpu.used["load generator"] = _children_cpu() - children
                ms = {name: seconds * 1000 / n for name, seconds in cpu.used.items()}
                ms["sum"] = sum(ms.values())
                queued = bench.queue_length("callbacks")
                ingest.add(code, shape, load["tool"], n, load["rps"], load["p50_ms"], load["p99_ms"],
                           load["non2xx"], load["errors"], queued, ms["gunicorn"], ms["redis"],
                           ms["load generator"], ms["sum"])
                paying = bench.runtime.store.keys.index("paying")
                before = bench.redis.zcard(paying)
                t0 = time.perf_counter()
                bench.resume([worker], queues=("callbacks",))
                bench.wait_count(lambda: bench.redis.zcard(paying) <= before - n, timeout=max(60, n / 20))
                drain = time.perf_counter() - t0
                # every message processed and acknowledged, not only the jobs moved
                wait_for(lambda: bench.queue_length("callbacks") == 0 and bench.redis.hlen("unacked") == 0,
                         timeout=60)
                bench.pause([worker], queues=("callbacks",))
                waited = bench.wait_states(trade_nos, {"succeeded"}, timeout=5,
                                           settle={"failed", "partially_paid"})
                left = bench.queue_length("callbacks")
                unacked = int(bench.redis.hlen("unacked"))
                done = waited.states.get("succeeded", 0)
                apply.add(code, shape, queued, done, done / drain, waited.pending, left, unacked)
                figures = {"rps": load["rps"], "p50": load["p50_ms"], "p99": load["p99_ms"],
                           "apply": done / drain, "lost": n - done, "cpu_ms": ms}
                if at is None:  # the summary's figures (bench/findings.py): the code as it is, by shape
                    data[shape] = figures
                else:
                    data_before[shape] = figures
            finally:
                bench.stop(bench.web)
                bench.drop_queue("callbacks")
                bench.forget_jobs()
    finally:
        bench.stop(worker)
    section.tables = [ingest, apply]
    section.data = data
    section.before = data_before  # the before rows' figures, apart (the summary reads ``data``)
    section.notes = [
        f"Load generator: {'wrk (Debian package) with a Lua script that sends each pre-built body once per thread slice and stops at the count' if tool == 'wrk' else 'Python asyncio, raw keep-alive sockets, in the bench process'}; "
        f"{CONNECTIONS} connections, bounded by the count and by {time_limit:.0f} s. "
        "Bodies are built like `tests/support/stack.py`'s `Stack.callback` (signed, `amount` a raw "
        "JSON number `300.00`). Each body is sent exactly once; a wrk connection that comes free "
        "after its thread's bodies are all sent asks `GET /healthz` until wrk stops, so the "
        "queue's length counts distinct callbacks. req/s = callbacks over the seconds from the "
        "start to the last one queued.",
        f"CPU ms per callback: the gunicorn process tree's and redis-server's user + system CPU "
        f"(psutil `cpu_times`) over the load, and the load generator's "
        f"({'wrk: the kernel account of the exited child, `getrusage(RUSAGE_CHILDREN)`' if tool == 'wrk' else 'the bench process, which also polls the queue'}), "
        "divided by the callbacks. The CPU a callback costs is what decides the rate on a shared "
        "machine: req/s moves with whatever else runs.",
        f"`before ({BEFORE})`: the web app of that revision (the code before issue 23), its "
        "gunicorn.conf.py, run from a `git archive` snapshot against the same Redis and the same "
        "(current) worker: an HMGET of the job's account, Celery's `send_task` (a second round "
        "trip), Flask's dispatch and an access line per callback. `now`: the job's account read "
        "and the task message pushed in one Lua step (`callback_queue.lua`), "
        "the callback past Flask's dispatch, the schema's rules checked without marshmallow's machinery, no access line for an `OK`."
        if tree is not None else "No before row: BENCH_CALLBACKS_BEFORE empty, or git/the revision not found.",
        f"The {n} `paying` jobs are written straight into the store with its own `create`/`move` "
        "scripts (pipelined), not through the gateway: only their state matters here.",
        "gunicorn runs `worker.web:app` with `--worker-class gthread`; its processes share the 2 "
        "cores with wrk, Redis and the idle worker. Applied = the jobs seen `succeeded` by polling "
        "the store after the worker's `callbacks` consumer is resumed; lost = callbacks answered "
        "`OK` whose job never reached `succeeded`.",
    ]
    section.seconds = time.perf_counter() - started
    return section
