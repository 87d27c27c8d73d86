"""Benchmark 4 — callback ingestion: ``POST /vexora/notify`` under gunicorn (gthread) at 200
concurrent connections, N distinct ``paying`` jobs each getting one signed ``0000`` callback;
then every queued callback applied (all N ``succeeded``, the queue and unacked set empty).
"""

from __future__ import annotations

import os
import time

from bench.loadgen import post_bodies, run_wrk, wrk_available
from bench.procs import Bench, callback_body, wait_for
from bench.report import Section, Table

__all__ = ["run"]

CONNECTIONS = 200


def run(bench: Bench, sizes: dict) -> Section:
    n, shapes, time_limit = sizes["callbacks"], sizes["web_shapes"], sizes["time_limit"]
    tool = "wrk" if wrk_available() and not os.environ.get("BENCH_NO_WRK") else "python"
    section = Section(
        "callbacks", "4. Callback ingestion (`POST /vexora/notify`)",
        f"how many gateway callbacks the web app takes per second at {CONNECTIONS} concurrent "
        f"connections, and their latency, each verified, schema-checked and queued before `OK`; "
        f"then how fast one worker applies them, and that none is lost.")
    started = time.perf_counter()
    ingest = Table(["gunicorn workers×threads", "load generator", "callbacks", "req/s (queued/s)",
                    "wrk's own req/s", "p50 ms", "p90 ms", "p99 ms", "non-200", "socket errors",
                    "messages queued"],
                   title="Ingestion (worker consumers cancelled: the web app alone)")
    apply = Table(["gunicorn workers×threads", "messages", "jobs → succeeded", "jobs succeeded/s",
                   "messages processed/s", "lost (still paying)", "queue left", "unacked left"],
                  title="Applying the queued callbacks (one worker, `--pool threads -c 16`)")
    worker = bench.start_worker(concurrency=16)
    data = {}
    try:
        for workers, threads in shapes:
            bench.start_web(workers, threads)
            shape = f"{workers}×{threads}"
            try:
                trade_nos = bench.make_paying(n)
                bench.drop_queue("callbacks")
                bodies = [callback_body(t) for t in trade_nos]
                # warm-up: a few connections and the app's first requests, on other jobs
                warm = [callback_body(t) for t in bench.make_paying(50)]
                post_bodies(bench.web_url, warm, connections=10, time_limit=30)
                bench.drop_queue("callbacks")
                if tool == "wrk":
                    load = run_wrk(bench.web_url, bodies, connections=CONNECTIONS, threads=2,
                                   time_limit=time_limit, log_dir=bench.log_dir,
                                   arrived=lambda: bench.queue_length("callbacks"))
                else:
                    load = post_bodies(bench.web_url, bodies, connections=CONNECTIONS, time_limit=time_limit)
                queued = bench.queue_length("callbacks")
                ingest.add(shape, load["tool"], n, load["rps"], load["wrk_rps"], load["p50_ms"], load["p90_ms"],
                           load["p99_ms"], load["non2xx"], load["errors"], queued)
                paying = bench.runtime.store.keys.index("paying")
                before = bench.redis.zcard(paying)
                t0 = time.perf_counter()
                bench.resume([worker], queues=("callbacks",))
                bench.wait_count(lambda: bench.redis.zcard(paying) <= before - n, timeout=max(60, n / 20))
                drain = time.perf_counter() - t0
                # every message processed and acknowledged, not only the jobs moved
                emptied = wait_for(lambda: bench.queue_length("callbacks") == 0
                                   and bench.redis.hlen("unacked") == 0, timeout=60)
                all_messages = time.perf_counter() - t0
                bench.pause([worker], queues=("callbacks",))
                waited = bench.wait_states(trade_nos, {"succeeded"}, timeout=5,
                                           settle={"failed", "partially_paid"})
                left = bench.queue_length("callbacks")
                unacked = int(bench.redis.hlen("unacked"))
                done = waited.states.get("succeeded", 0)
                apply.add(shape, queued, done, done / drain,
                          queued / all_messages if emptied else float("nan"),
                          waited.pending, left, unacked)
                data[shape] = {"rps": load["rps"], "p50": load["p50_ms"], "p99": load["p99_ms"],
                               "apply": done / drain, "lost": n - done}
            finally:
                bench.stop(bench.web)
                bench.drop_queue("callbacks")
                bench.forget_jobs()
    finally:
        bench.stop(worker)
    section.tables = [ingest, apply]
    section.data = data
    section.notes = [
        f"Load generator: {'wrk (Debian package) with a Lua script that sends each pre-built body once per thread slice and stops at the count' if tool == 'wrk' else 'Python asyncio, raw keep-alive sockets'}; "
        f"{CONNECTIONS} connections, bounded by the count and by {time_limit:.0f} s. "
        "Bodies are built like `tests/support/stack.py`'s `Stack.callback` (signed, `amount` a raw "
        "JSON number `300.00`). Each body is sent exactly once; a wrk connection that comes free "
        "after its thread's bodies are all sent asks `GET /healthz` until wrk stops, so the "
        "queue's length counts distinct callbacks.",
        f"The {n} `paying` jobs are written straight into the store with its own `create`/`move` "
        "scripts (pipelined), not through the gateway: only their state matters here.",
        "gunicorn runs `worker.web:app` with `--worker-class gthread`; its processes share the 2 "
        "cores with wrk, Redis and the idle worker. Applied = the jobs seen `succeeded` by polling "
        "the store after the worker's `callbacks` consumer is resumed; lost = callbacks answered "
        "`OK` whose job never reached `succeeded`.",
    ]
    section.seconds = time.perf_counter() - started
    return section
