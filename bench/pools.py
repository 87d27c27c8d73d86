"""Benchmark 6 — pool choice: threads vs prefork vs gevent at 100 ms gateway latency; jobs/s and
worker memory (process tree) for each, one worker process at a time.

gevent is used only when the worker's Python can import it. It is not a project dependency and
is never installed into the project venv; to include it, point ``BENCH_GEVENT_SITE`` at a
site-packages directory that has gevent (e.g. a temporary venv's) — it is put on PYTHONPATH for
the gevent worker only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.procs import Bench
from bench.report import Section, Table

__all__ = ["run", "gevent_env"]

LATENCY = 0.1


def gevent_env() -> dict | None:
    """The extra env under which the worker's Python imports gevent, or None if it cannot."""
    extra = {}
    site = os.environ.get("BENCH_GEVENT_SITE")
    if site:
        extra["PYTHONPATH"] = os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH")) if p)
    probe = subprocess.run([sys.executable, "-c", "import gevent; print(gevent.__version__)"],
                           env={**os.environ, **extra}, capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return None
    extra["_version"] = probe.stdout.strip()
    return extra


def run(bench: Bench, sizes: dict) -> Section:
    n, c, prefork = sizes["jobs"], sizes["concurrency"], sizes["prefork"]
    section = Section(
        "pools", "6. Pool choice (threads, prefork, gevent at 100 ms gateway latency)",
        "which Celery pool turns the same gateway latency into the most jobs/s per MiB: one worker "
        "process per line; the job is I/O-bound (100 ms at the gateway), so concurrency matters "
        "more than cores.")
    started = time.perf_counter()
    bench.sandbox_reset()
    bench.gateway_latency(LATENCY)
    gevent = gevent_env()
    configs = [("threads", c, None), ("threads", prefork, None), ("prefork", prefork, None)]
    if gevent is not None:
        configs.append(("gevent", c, {k: v for k, v in gevent.items() if not k.startswith("_")}))
    table = Table(["pool", "-c", "jobs paying/enqueued", "jobs/s", "ideal (c / 0.1 s)", "jobs/s ÷ ideal",
                   "peak VmRSS MiB (tree)", "peak PSS MiB (tree)", "processes", "jobs/s per 100 MiB PSS",
                   "broker connection lost (worker log)"])
    data = {}
    try:
        for pool, conc, extra in configs:
            worker = bench.start_worker(pool=pool, concurrency=conc, extra_env=extra, timeout=120)
            try:
                bench.batch([worker], 2 * conc, timeout=60)  # warm-up: every thread/process has run
                result = bench.batch([worker], n, timeout=max(45, n / 10), sample=[worker.popen.pid])
            finally:
                bench.stop(worker)
            log = worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""
            lost = log.count("Connection to broker lost")
            mem = result["memory"]
            ideal = conc / LATENCY
            table.add(pool, conc, f"{result['paying']}/{n}", result["jobs_per_s"], ideal, result["jobs_per_s"] / ideal,
                      mem["rss_mib"], mem["pss_mib"], mem["processes"],
                      result["jobs_per_s"] / mem["pss_mib"] * 100 if mem["pss_mib"] else float("nan"),
                      lost)
            data[f"{pool}-{conc}"] = {"jobs_per_s": result["jobs_per_s"], "rss": mem["rss_mib"],
                                      "pss": mem["pss_mib"], "paying": result["paying"], "n": n,
                                      "other": result["other"], "broker_lost": lost,
                                      "max_connections_error": "MaxConnectionsError" in log}
    finally:
        bench.gateway_latency(0)
    if gevent is None:
        table.add("gevent", c, "–", "not installed", "", "", "", "", "", "", "")
    section.tables = [table]
    section.data = data
    section.notes = [
        f"prefork runs -c {prefork} (not {c}): {c} Python processes on 2 cores would mostly measure "
        f"start-up and memory; threads is also shown at -c {prefork} to compare like with like.",
        "VmRSS of a prefork tree counts shared pages once per process; PSS shares them out, so "
        "compare PSS across pools.",
        (f"gevent {gevent['_version']} from BENCH_GEVENT_SITE (not a project dependency, not in "
         f"the project venv)." if gevent and os.environ.get("BENCH_GEVENT_SITE")
         else f"gevent {gevent['_version']} is importable by the project's Python." if gevent
         else "gevent: not installed. To include it without touching the project venv: "
              "`python3 -m venv ../gevent-venv && ../gevent-venv/bin/pip install gevent` and "
              "re-run with `BENCH_GEVENT_SITE=$(echo ../gevent-venv/lib/python3.*/site-packages)` "
              "(same Python minor version as .venv)."),
        f"Each line: an untimed warm-up batch of 2×c jobs, then {n} jobs timed as in 1.",
    ]
    section.seconds = time.perf_counter() - started
    return section
