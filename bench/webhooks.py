"""Benchmark 9 — webhooks: what a job's webhooks cost on our side, their throughput, and the
pipeline with them on and off.

A real receiver process (``python -m worker.sandbox.receiver``) verifies every message with the
``standardwebhooks`` package; it stands for the merchant's machine, so its CPU is reported apart.
"Our side" is what this project runs: the dispatcher's passes, the webhook worker (or the checkout
pool, when it delivers), and Redis. The dispatcher runs in a process of its own here
(``python -m bench.webhooks dispatcher``: a pass every ``DISPATCH_EVERY`` s while the bench says
so), so its CPU is its own column; in production the same pass is the ``vexora.webhooks.dispatch``
task beat sends to the webhook worker every second.

Cost and throughput: N jobs recorded as a paid job records them (``paying``, then ``succeeded``:
two events a job), an endpoint configured, then the dispatcher and the shipped worker shape
deliver them until the receiver has verified all: CPU ms per event and per job of each process
(Redis here does nothing but the webhooks' work and their Celery messages), and deliveries/s.
Pipeline: the same jobs/s-to-``paying`` measurement as table 1 at 100 ms, side by side in one
run: webhooks off (no endpoint), on (an endpoint, the dispatcher running, every job's
``checkout.paying`` delivered by the webhook worker meanwhile), and on with the checkout workers
delivering them instead.
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import threading
import time

from bench.pipeline import bare_rate, label, shapes
from bench.procs import Bench, CpuMeter
from bench.report import Section, Table
from worker.local.redis_server import free_port
from worker.local.services import Service, http_ok
from worker.webhooks.endpoints import Endpoints
from worker.webhooks.signing import new_secret

__all__ = ["run"]

HOOK_THREADS = 8  # the shipped webhook worker (Procfile, docker-compose.yml)
DISPATCH_EVERY = 0.2  # s between dispatcher passes in the bench (beat: 1 s; more passes cost more)
EVENTS_PER_JOB = 2  # a paid job's webhooks: checkout.paying, checkout.succeeded


class _Dispatcher:
    """The dispatcher process (``python -m bench.webhooks dispatcher``): passes only between
    ``start`` and ``stop`` (SIGUSR1 / SIGUSR2), so that its CPU is counted apart."""

    def __init__(self, bench: Bench, env: dict):
        self.service = Service("dispatcher", [bench.python, "-m", "bench.webhooks", "dispatcher"],
                               {**bench.env, **env}, bench.log_dir).start()
        bench.services.started.append(self.service)
        self.service.wait_ready(lambda: "dispatcher ready" in self.service.log(), timeout=60)
        self.pid = self.service.popen.pid

    def __enter__(self):
        os.kill(self.pid, signal.SIGUSR1)
        return self

    def __exit__(self, *exc):
        os.kill(self.pid, signal.SIGUSR2)


def _dispatcher_main() -> int:
    """The child: the project's own dispatcher (the runtime's, as the dispatch task uses it)."""
    from worker.config.settings import Settings
    from worker.runtime.wiring import Runtime
    runtime = Runtime(Settings.from_env(os.environ))
    dispatcher = runtime.webhook_dispatcher
    active, stop = threading.Event(), threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: active.set())
    signal.signal(signal.SIGUSR2, lambda *_: active.clear())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("dispatcher ready", flush=True)
    while not stop.wait(DISPATCH_EVERY):
        if active.is_set():
            dispatcher.run()
    return 0


def _make_paid(bench: Bench, n: int, batch: int = 200) -> list[str]:
    """n jobs moved to ``paying`` and then ``succeeded`` through the store's own scripts (as
    ``make_paying``): each move records one webhook event, as a paid job's do."""
    from worker.store.jobs import JobStore
    trade_nos = bench.make_paying(n)
    s = bench.settings
    store = JobStore(bench.redis, prefix=s.key_prefix, ttl_seconds=s.job_ttl_seconds,
                     events_maxlen=s.events_maxlen)
    move = store._move
    for i in range(0, n, batch):
        pipe = bench.redis.pipeline(transaction=False)
        store._move = lambda keys, args: (move(keys=keys, args=args, client=pipe), (1, "x", 1, None))[1]
        for t in trade_nos[i:i + batch]:
            store.move(t, "succeeded", detail={"reason": "bench"},
                       fields={"gatewayStatus": "0000", "paidAmount": "300"})
        if any(not a or a[0] in (0, b"conflict") for a in pipe.execute()):
            raise RuntimeError("_make_paid: a move was refused")
    return trade_nos


def run(bench: Bench, sizes: dict) -> Section:
    # at least 1,000 events: a pass's fixed cost (lock, reads, trim) is not what a few hundred say
    n_jobs, rounds, c = max(1000, sizes["events"]) // EVENTS_PER_JOB, sizes["rounds"], 32
    section = Section(
        "webhooks", "9. Webhooks (CPU per job on our side; throughput; the pipeline with them on)",
        "what delivering a job's webhooks costs our side (the dispatcher, the webhook worker, Redis) "
        "in CPU per job and per event, the receiver (the merchant's machine) apart; how fast recorded "
        "events reach a verifying receiver; and jobs/s to `paying` at 100 ms gateway latency with "
        "webhooks off and on, side by side, against the same bare client.")
    started = time.perf_counter()
    secret, port = new_secret(), free_port()
    receiver = Service("receiver", [bench.python, "-m", "worker.sandbox.receiver", "--port", str(port),
                                    "--secret", secret], bench.env, bench.log_dir).start()
    bench.services.started.append(receiver)
    url = f"http://127.0.0.1:{port}"
    receiver.wait_ready(http_ok(url + "/_receiver/stats"), timeout=30)
    prefix = bench.settings.key_prefix
    endpoints = Endpoints(bench.redis, prefix, allow_private=True, rotation_grace=60)
    env = {"VEXORA_WEBHOOK_ALLOW_PRIVATE": "true"}
    dispatching = _Dispatcher(bench, env)
    shape = shapes(c)[0]
    workers = [bench.start_worker(concurrency=shape[1], extra_env=env) for _ in range(shape[0])]
    # the shipped shape: the webhooks queue has its own worker process (Procfile `webhooks:`)
    hooks = bench.start_worker(concurrency=HOOK_THREADS, extra_env=env, queues=("webhooks",))
    redis_pid = (bench.redis_pids or {"redis": bench.redis_server.process.pid})
    cost = Table(["who delivers", "jobs", "events", "seconds", "deliveries/s", "verified", "rejected",
                  "CPU ms per event: dispatcher", "delivering worker", "Redis", "our side", "receiver",
                  "CPU ms per job: our side", "receiver"])
    pipeline = Table(["round", "bare client req/s", "webhooks", "pipeline jobs/s", "ratio", "webhooks verified",
                      "last webhook after the last paying (s)", "CPU ms per job: checkout workers",
                      "webhook worker", "dispatcher", "Redis", "receiver", "bench (poll)"])
    data: dict = {"events_per_job": EVENTS_PER_JOB, "dispatch_every_s": DISPATCH_EVERY}
    modes = {"off": None, "on, own worker": [hooks], "on, shared pool": workers}
    try:
        # -- cost and throughput: nothing but webhook work runs ------------------------------------
        for who, deliverers in (("own worker", [hooks]), ("shared pool", workers)):
            bench.resume(deliverers, queues=("webhooks",))
            bench.http.post(url + "/_receiver/reset", timeout=5)
            endpoints.add(url + "/webhooks", secret=secret, endpoint_id="bench")
            # warm-up, not measured: scripts loaded, connections open, lazy imports done
            _make_paid(bench, 10)
            with dispatching:
                bench.wait_count(lambda: _stats(bench, url)["verified"] >= 10 * EVENTS_PER_JOB, timeout=60,
                                 interval=0.05)
            bench.http.post(url + "/_receiver/reset", timeout=5)
            _make_paid(bench, n_jobs)  # each move records one event
            n = n_jobs * EVENTS_PER_JOB
            pids = {"dispatcher": dispatching.pid, **redis_pid, "receiver": receiver.popen.pid,
                    **{f"deliverer {i}": d.popen.pid for i, d in enumerate(deliverers)}}
            with CpuMeter(pids) as cpu, dispatching:
                t0 = time.perf_counter()
                bench.wait_count(lambda: _stats(bench, url)["verified"] >= n, timeout=max(120, n / 5),
                                 interval=0.1)
                seconds = time.perf_counter() - t0
            stats = _stats(bench, url)
            ms = {k: v * 1000 / n for k, v in cpu.used.items()}
            delivering = sum(v for k, v in ms.items() if k.startswith("deliverer"))
            redis_ms = sum(ms[k] for k in redis_pid)
            ours = ms["dispatcher"] + delivering + redis_ms
            name = (f"own worker (1 × threads -c {HOOK_THREADS})" if who == "own worker"
                    else f"shared pool ({label(shape)})")
            cost.add(name, n_jobs, n, seconds, n / seconds, stats["verified"], stats["rejected"],
                     ms["dispatcher"], delivering, redis_ms, ours, ms["receiver"],
                     ours * EVENTS_PER_JOB, ms["receiver"] * EVENTS_PER_JOB)
            key = who.split()[0]
            data[f"deliveries_per_s_{key}"] = n / seconds
            data[f"cpu_ms_per_event_{key}"] = {"dispatcher": ms["dispatcher"], "delivering": delivering,
                                               "redis": redis_ms, "our_side": ours, "receiver": ms["receiver"]}
            data[f"our_side_ms_per_job_{key}"] = ours * EVENTS_PER_JOB
            bench.pause(deliverers, queues=("webhooks",))
            bench.redis.delete(endpoints.key)
            bench.forget_jobs()
        data["deliveries_per_s"] = data["deliveries_per_s_own"]
        data["our_side_ms_per_job"] = data["our_side_ms_per_job_own"]
        # -- the pipeline with webhooks off and on -----------------------------------------------
        bench.extra_cpu_pids.update({"receiver": receiver.popen.pid, "webhook worker": hooks.popen.pid,
                                     "dispatcher": dispatching.pid})
        bench.gateway_latency(0.1)
        bench.batch(workers, 2 * c, timeout=60)  # warm-up
        ratios: dict[str, list[float]] = {mode: [] for mode in modes}
        for r in range(1, rounds + 1):
            for mode, deliverers in modes.items():
                # the yardstick again right before each mode: the machine's noise comes in bursts
                bare = bare_rate(bench, c, sizes["jobs"])
                bench.redis.delete(endpoints.key)
                bench.http.post(url + "/_receiver/reset", timeout=5)
                lag = None
                if deliverers:
                    bench.resume(deliverers, queues=("webhooks",))
                    endpoints.add(url + "/webhooks", secret=secret, endpoint_id="bench")
                    with dispatching:
                        pipe = bench.batch(workers, sizes["jobs"], timeout=max(60, sizes["jobs"] / 20))
                        t0 = time.perf_counter()
                        bench.wait_count(lambda: _stats(bench, url)["verified"] >= pipe["n"], timeout=120,
                                         interval=0.05)
                        lag = time.perf_counter() - t0
                    bench.pause(deliverers, queues=("webhooks",))
                else:
                    pipe = bench.batch(workers, sizes["jobs"], timeout=max(60, sizes["jobs"] / 20))
                ratio = pipe["jobs_per_s"] / bare["rps"]
                ratios[mode].append(ratio)
                pc = pipe["cpu_ms_per_job"]
                workers_ms = sum(v for k, v in pc.items() if k.startswith("worker"))
                redis_ms = sum(pc.get(k, 0.0) for k in redis_pid)
                pipeline.add(r, bare["rps"], mode, pipe["jobs_per_s"], ratio, _stats(bench, url)["verified"],
                             lag, workers_ms, pc.get("webhook worker", 0.0), pc.get("dispatcher", 0.0),
                             redis_ms, pc.get("receiver", 0.0), pc.get("bench (client/poll)", 0.0))
                data.setdefault(f"cpu_{mode}", []).append({"workers": workers_ms, "receiver": pc.get("receiver", 0.0),
                                                           "webhook_worker": pc.get("webhook worker", 0.0),
                                                           "dispatcher": pc.get("dispatcher", 0.0),
                                                           "redis": redis_ms})
        data["ratio_off"] = statistics.median(ratios["off"])
        data["ratio_on"] = statistics.median(ratios["on, own worker"])
        data["ratio_shared"] = statistics.median(ratios["on, shared pool"])
        data["cpu_on"] = data["cpu_on, own worker"]
    finally:
        for name in ("receiver", "webhook worker", "dispatcher"):
            bench.extra_cpu_pids.pop(name, None)
        bench.redis.delete(endpoints.key)
        bench.gateway_latency(0)
        for worker in [*workers, hooks]:
            bench.stop(worker)
        bench.stop(dispatching.service)
        bench.stop(receiver)
        bench.forget_jobs()
    section.tables = [cost, pipeline]
    section.data = data
    section.notes = [
        f"Cost table: {n_jobs} jobs recorded as a paid job records them ({EVENTS_PER_JOB} events each: "
        "`checkout.paying`, `checkout.succeeded`; the move scripts' own cost is the checkout side's, "
        "not counted here), one endpoint, then the dispatcher (its own process, a pass every "
        f"{DISPATCH_EVERY:g} s; in production beat's `vexora.webhooks.dispatch` on the webhook "
        "worker, every second) and the delivering processes run until the receiver has verified "
        "every event. CPU is psutil's user + system time of each process tree over that window, "
        "divided by the events (per event) and multiplied by the events a job records (per job). "
        "Redis does nothing else meanwhile, so all of its CPU is the webhooks' (their Celery "
        "messages included). \"Our side\" = dispatcher + delivering worker + Redis; the receiver "
        "stands for the merchant's machine and is apart.",
        f"Workers: the shipped shape: {label(shape)} on `checkout`, and the webhook worker (1 × threads "
        f"-c {HOOK_THREADS}, the Procfile's `webhooks:` process) on `webhooks`. \"Shared pool\" is the "
        "alternative measured beside it: the checkout workers consume `webhooks` too (the webhook "
        "worker paused). The receiver is one Python process verifying each message with "
        "`standardwebhooks` and answering 204. Everything shares this machine's 2 cores, so the "
        "throughput is a floor, not a capacity.",
        f"Pipeline rounds: {sizes['jobs']} jobs each (one event each: they stop at `paying`): webhooks "
        "off, on with their own worker, on in the shared pool, each right after its own bare-client "
        "run (its ratio's denominator); \"on\" counts until every job is `paying` (as table 1), then "
        "waits for the webhooks: the lag column is how long the last one took after the last `paying`; "
        "the CPU columns cover the first part only.",
    ]
    section.seconds = time.perf_counter() - started
    return section


def _stats(bench: Bench, url: str) -> dict:
    return bench.http.get(url + "/_receiver/stats", timeout=10).json()


if __name__ == "__main__":
    if sys.argv[1:] != ["dispatcher"]:
        sys.exit("usage: python -m bench.webhooks dispatcher  (started by the webhooks benchmark)")
    sys.exit(_dispatcher_main())
