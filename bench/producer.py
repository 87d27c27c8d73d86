"""Benchmark 3 — producer: ``enqueue_checkout`` one call at a time and from 8 threads, the batch
producer ``enqueue_checkouts`` (``BATCH`` per call), and ``POST /v1/checkouts`` under gunicorn in
its single and batch forms, side by side in one run: jobs/s, µs per job of wall time, and the CPU
per job of the producer process (this one, or gunicorn's workers) and of Redis.
"""

from __future__ import annotations

import json
import os
import threading
import time

import requests

from bench.loadgen import percentile
from bench.procs import Bench, CpuMeter
from bench.report import Section, Table
from worker.client import enqueue_checkout, enqueue_checkouts
from worker.domain.access import CHECKOUTS_WRITE
from worker.domain.masking import mask_contact
from worker.store.apikeys import ApiKeys

__all__ = ["run"]

BATCH = 500  # payloads per enqueue_checkouts call and per batch request
THREADS = 8
HTTP_CLIENTS = 4  # batch requests in flight at once
WEB_SHAPE = (2, 8)  # gunicorn workers × threads, as deployed (gunicorn.conf.py)


def _row(label: str, n: int, seconds: float, latencies: list[float] | None, cpu: dict[str, float] | None) -> list:
    p50 = percentile(latencies, 50) * 1000 if latencies else float("nan")
    p99 = percentile(latencies, 99) * 1000 if latencies else float("nan")
    cpu = cpu or {}
    return [label, n, n / seconds, p50, p99, seconds / n * 1e6, cpu.get("producer", float("nan")) * 1e6 / n,
            cpu.get("redis", float("nan")) * 1e6 / n]


def _meter(bench: Bench, producer_pid: int) -> CpuMeter:
    return CpuMeter({"producer": producer_pid, "redis": bench.redis_server.process.pid})


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


def _batches(bench: Bench, n: int) -> tuple[float, list[float], int]:
    """``enqueue_checkouts`` over n fresh payloads, BATCH a call; (seconds, per-call seconds, created)."""
    jobs = [bench.payload() for _ in range(n)]
    latencies, created = [], 0
    started = time.perf_counter()
    for i in range(0, n, BATCH):
        s = time.perf_counter()
        answers = enqueue_checkouts(jobs[i:i + BATCH], runtime=bench.runtime)
        latencies.append(time.perf_counter() - s)
        created += sum(a["result"] == "created" for a in answers)
    return time.perf_counter() - started, latencies, created


def _http(bench: Bench, key: str, n: int, per_request: int, clients: int) -> tuple[float, list[float], int]:
    """n fresh checkouts POSTed to the web app, ``per_request`` a request (1: the single form),
    from ``clients`` threads with a keep-alive session each; (seconds, per-request seconds,
    created). The bodies are encoded before the clock starts."""
    jobs = [bench.payload() for _ in range(n)]
    if per_request == 1:
        bodies = [json.dumps(j, ensure_ascii=False).encode() for j in jobs]
    else:
        bodies = [json.dumps(jobs[i:i + per_request], ensure_ascii=False).encode() for i in range(0, n, per_request)]
    shares = [bodies[i::clients] for i in range(clients)]
    latencies: list[float] = []
    created = [0]
    lock = threading.Lock()
    go = threading.Barrier(clients + 1)
    url = bench.web_url + "/v1/checkouts"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def client(share: list[bytes]) -> None:
        mine, made = [], 0
        with requests.Session() as session:
            session.get(bench.web_url + "/healthz", timeout=10)  # the connection, before the clock
            go.wait(timeout=30)
            for body in share:
                s = time.perf_counter()
                answer = session.post(url, data=body, headers=headers, timeout=60)
                mine.append(time.perf_counter() - s)
                if answer.status_code == 202:
                    made += 1
                elif answer.status_code == 200:
                    made += answer.json()["counts"]["created"]
        with lock:
            latencies.extend(mine)
            created[0] += made

    threads = [threading.Thread(target=client, args=(s,), daemon=True) for s in shares]
    for t in threads:
        t.start()
    go.wait(timeout=30)
    started = time.perf_counter()
    for t in threads:
        t.join(timeout=300)
    return time.perf_counter() - started, latencies, created[0]


def run(bench: Bench, sizes: dict) -> Section:
    n = sizes["calls"]
    batch_n = sizes.get("batch_jobs", 10 * n)
    section = Section(
        "producer", "3. Producer (`enqueue_checkout`, `enqueue_checkouts`, `POST /v1/checkouts`)",
        "how fast an application can hand jobs over: jobs/s, wall µs per job, and the CPU each job "
        "costs the producer and Redis — `enqueue_checkout` one call at a time and from 8 threads (one "
        f"round trip: the job and its message in one Lua step), the batch producer `enqueue_checkouts` "
        f"({BATCH} payloads a call, pipelined), and `POST /v1/checkouts` through gunicorn, one checkout "
        f"a request and {BATCH} a request.")
    started = time.perf_counter()
    store = bench.runtime.store
    me = os.getpid()
    table = Table(["what", "jobs", "jobs/s", "p50 ms (per call)", "p99 ms (per call)", "µs per job",
                   "producer CPU µs/job", "Redis CPU µs/job"])
    data: dict = {}
    try:
        bench.enqueue(50)  # warm-up: connections, script load
        enqueue_checkouts([bench.payload() for _ in range(50)], runtime=bench.runtime)

        with _meter(bench, me) as cpu:
            _, latencies = bench.enqueue(n)
        table.add(*_row("enqueue_checkout, one at a time", n, cpu.wall, latencies, cpu.used))
        data["one"] = n / cpu.wall

        with _meter(bench, me) as cpu:
            seconds, latencies = _concurrent(bench, n, THREADS)
        table.add(*_row(f"enqueue_checkout, {THREADS} producer threads", n, seconds, latencies, cpu.used))
        data["concurrent"] = n / seconds

        with _meter(bench, me) as cpu:
            seconds, latencies, created = _batches(bench, batch_n)
        if created != batch_n:
            raise RuntimeError(f"enqueue_checkouts created {created} of {batch_n}")
        table.add(*_row(f"enqueue_checkouts, {BATCH} a call", batch_n, seconds, latencies, cpu.used))
        data["batch"] = batch_n / seconds
        data["batch_cpu_us"] = cpu.used["producer"] * 1e6 / batch_n

        # before issue 23, side by side: the store's create, then send_task (two round trips)
        latencies = []
        with _meter(bench, me) as cpu:
            for job in (bench.payload() for _ in range(n)):
                s = time.perf_counter()
                store.create(job["tradeNo"], job, contact=mask_contact(job), amount=job.get("amount"))
                bench.runtime.send("vexora.checkout.submit", job["tradeNo"])
                latencies.append(time.perf_counter() - s)
        table.add(*_row("  before: store.create, then send_task (2 round trips), one at a time", n, cpu.wall,
                        latencies, cpu.used))
        data["before_one"] = n / cpu.wall

        jobs = [bench.payload() for _ in range(n)]
        latencies = []
        with _meter(bench, me) as cpu:
            for job in jobs:
                s = time.perf_counter()
                store.create(job["tradeNo"], job, contact=mask_contact(job), amount=job.get("amount"))
                latencies.append(time.perf_counter() - s)
        table.add(*_row("  part: store.create without a message (Lua, 1 round trip)", n, cpu.wall, latencies,
                        cpu.used))
        with _meter(bench, me) as cpu:
            for job in jobs:
                bench.runtime.send("vexora.checkout.submit", job["tradeNo"])
        table.add(*_row("  part: Celery send_task (the path with RabbitMQ or another broker)", n, cpu.wall, None,
                        cpu.used))
        messages = bench.runtime.task_messages
        with _meter(bench, me) as cpu:
            for job in jobs:
                messages.build("vexora.checkout.submit", [job["tradeNo"]], queue="checkout")
        table.add(*_row("  part: the message built by hand (no I/O)", n, cpu.wall, None, cpu.used))

        bench.drop_queue("checkout")
        bench.forget_jobs()
        _record, key = ApiKeys(bench.redis, store.keys).create("bench producer", "default", (CHECKOUTS_WRITE,))
        web = bench.start_web(*WEB_SHAPE)
        try:
            _http(bench, key, 2 * BATCH, BATCH, 2)  # warm-up: each web worker's first requests
            _http(bench, key, 100, 1, 4)
            with _meter(bench, web.popen.pid) as cpu:
                seconds, latencies, created = _http(bench, key, n, 1, THREADS)
            table.add(*_row(f"POST /v1/checkouts, one a request, {THREADS} clients (gunicorn "
                            f"{WEB_SHAPE[0]}×{WEB_SHAPE[1]})", created, seconds, latencies, cpu.used))
            data["http_one"] = created / seconds
            with _meter(bench, web.popen.pid) as cpu:
                seconds, latencies, created = _http(bench, key, batch_n, BATCH, HTTP_CLIENTS)
            if created != batch_n:
                raise RuntimeError(f"the batch form created {created} of {batch_n}")
            table.add(*_row(f"POST /v1/checkouts, {BATCH} a request, {HTTP_CLIENTS} clients", batch_n, seconds,
                            latencies, cpu.used))
            data["http_batch"] = batch_n / seconds
            data["http_batch_cpu_us"] = cpu.used["producer"] * 1e6 / batch_n
        finally:
            bench.stop(web)
    finally:
        bench.drop_queue("checkout")
        bench.forget_jobs()
    section.data = data
    section.tables = [table]
    section.notes = [
        f"{n} jobs a line ({batch_n} for the batch lines), after an untimed warm-up; no worker runs, so "
        "Redis serves only the producer (the queued messages are dropped afterwards). Everything is on "
        "the same 2 cores: the producer, Redis and, for the HTTP lines, gunicorn and the load client.",
        "Producer CPU is `psutil` user + system time of the producing process: this Python process for "
        "the Python lines, gunicorn's master and workers for the HTTP lines (the load client's CPU is "
        "not counted). p50/p99 are per call: one job, or one batch.",
        "`enqueue_checkout` and `enqueue_checkouts` write the job and its first task message in one "
        "Lua step (`create.lua`, `worker.runtime.messages`) when the broker is the store's Redis; "
        "`enqueue_checkouts` writes its create steps 100 a round trip (`JobStore.create_many`, the next "
        "hundred built while Redis runs the last) and confirms replication once a batch. The batch HTTP form validates every item with the "
        "account's marshmallow schema first, as the single form does.",
        "The `before` line is the path before issue 23, timed in the same run: the store's create, then "
        "Celery's `send_task` (two round trips, the message after the job). The `part` lines time the "
        "pieces on their own: the create without a message, `send_task` (still the path with RabbitMQ "
        "or a broker that is not the store's Redis) and building the message by hand.",
    ]
    section.seconds = time.perf_counter() - started
    return section
