"""Benchmark 9 — webhooks: delivery throughput, and the pipeline with webhooks on and off.

A real receiver process (``python -m worker.sandbox.receiver``) verifies every message with the
``standardwebhooks`` package. Throughput: N events already recorded (N jobs moved to ``paying``
with an endpoint configured), then the shipped worker shape consumes the ``webhooks`` queue while
this process runs a dispatcher pass every 0.2 s (what beat does every second): deliveries/s until
the receiver has verified all N, by the webhook worker and by the checkout pool. Pipeline: the same
jobs/s-to-``paying`` measurement as table 1 at 100 ms, side by side in one run: webhooks off (no
endpoint), on (an endpoint, the dispatcher running, every job's ``checkout.paying`` delivered by
the webhook worker meanwhile), and on with the checkout workers delivering them instead.
"""

from __future__ import annotations

import statistics
import threading
import time

from bench.pipeline import bare_rate, label, shapes
from bench.procs import Bench
from bench.report import Section, Table
from worker.local.redis_server import free_port
from worker.local.services import Service, http_ok
from worker.webhooks.endpoints import Endpoints
from worker.webhooks.outbox import Dispatcher
from worker.webhooks.signing import new_secret

__all__ = ["run"]

HOOK_THREADS = 8  # the shipped webhook worker (Procfile, docker-compose.yml)


class _Dispatching:
    """Dispatcher passes in a thread of this process while the block runs (beat's job)."""

    def __init__(self, dispatcher: Dispatcher, every: float = 0.2):
        self.dispatcher, self.every = dispatcher, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self):
        while not self._stop.wait(self.every):
            self.dispatcher.run()


def run(bench: Bench, sizes: dict) -> Section:
    n, rounds, c = sizes["events"], sizes["rounds"], 32
    section = Section(
        "webhooks", "9. Webhooks (delivery throughput; the pipeline with them on)",
        "how fast recorded events reach a verifying receiver, and what delivering them costs the "
        "checkout pipeline: jobs/s to `paying` at 100 ms gateway latency with webhooks off and on, "
        "side by side, against the same bare client.")
    started = time.perf_counter()
    secret, port = new_secret(), free_port()
    receiver = Service("receiver", [bench.python, "-m", "worker.sandbox.receiver", "--port", str(port),
                                    "--secret", secret], bench.env, bench.log_dir).start()
    bench.services.started.append(receiver)
    url = f"http://127.0.0.1:{port}"
    receiver.wait_ready(http_ok(url + "/_receiver/stats"), timeout=30)
    bench.extra_cpu_pids["receiver"] = receiver.popen.pid
    prefix = bench.settings.key_prefix
    endpoints = Endpoints(bench.redis, prefix, allow_private=True, rotation_grace=60)
    dispatcher = Dispatcher(bench.redis, prefix, endpoints,
                            lambda members: bench.runtime.send("vexora.webhooks.deliver", members))
    shape = shapes(c)[0]
    env = {"VEXORA_WEBHOOK_ALLOW_PRIVATE": "true"}
    workers = [bench.start_worker(concurrency=shape[1], extra_env=env) for _ in range(shape[0])]
    # the shipped shape: the webhooks queue has its own worker process (Procfile `webhooks:`)
    hooks = bench.start_worker(concurrency=HOOK_THREADS, extra_env=env, queues=("webhooks",))
    bench.extra_cpu_pids["webhook worker"] = hooks.popen.pid
    throughput = Table(["who delivers", "events", "seconds", "deliveries/s", "verified", "rejected"])
    pipeline = Table(["round", "bare client req/s", "webhooks", "pipeline jobs/s", "ratio", "webhooks verified",
                      "last webhook after the last paying (s)", "CPU ms per job: checkout workers",
                      "webhook worker", "receiver", "bench (dispatcher, poll)", "Redis"])
    data: dict = {}
    modes = {"off": None, "on, own worker": [hooks], "on, shared pool": workers}
    try:
        # -- throughput -------------------------------------------------------------------------
        for who, deliverers in (("own worker", [hooks]), ("shared pool", workers)):
            bench.resume(deliverers, queues=("webhooks",))
            bench.http.post(url + "/_receiver/reset", timeout=5)
            endpoints.add(url + "/webhooks", secret=secret, endpoint_id="bench")
            bench.make_paying(n)  # each move to paying records one event
            t0 = time.perf_counter()
            with _Dispatching(dispatcher):
                bench.wait_count(lambda: _stats(bench, url)["verified"] >= n, timeout=max(120, n / 5))
            seconds = time.perf_counter() - t0
            stats = _stats(bench, url)
            name = (f"own worker (1 × threads -c {HOOK_THREADS})" if who == "own worker"
                    else f"shared pool ({label(shape)})")
            throughput.add(name, n, seconds, n / seconds, stats["verified"], stats["rejected"])
            data[f"deliveries_per_s_{who.split()[0]}"] = n / seconds
            bench.pause(deliverers, queues=("webhooks",))
            bench.redis.delete(endpoints.key)
            bench.forget_jobs()
        data["deliveries_per_s"] = data["deliveries_per_s_own"]
        # -- the pipeline with webhooks off and on -----------------------------------------------
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
                    with _Dispatching(dispatcher):
                        pipe = bench.batch(workers, sizes["jobs"], timeout=max(60, sizes["jobs"] / 20))
                        t0 = time.perf_counter()
                        bench.wait_count(lambda: _stats(bench, url)["verified"] >= pipe["n"], timeout=120)
                        lag = time.perf_counter() - t0
                    bench.pause(deliverers, queues=("webhooks",))
                else:
                    pipe = bench.batch(workers, sizes["jobs"], timeout=max(60, sizes["jobs"] / 20))
                ratio = pipe["jobs_per_s"] / bare["rps"]
                ratios[mode].append(ratio)
                pc = pipe["cpu_ms_per_job"]
                workers_ms = sum(v for k, v in pc.items() if k.startswith("worker"))
                pipeline.add(r, bare["rps"], mode, pipe["jobs_per_s"], ratio, _stats(bench, url)["verified"],
                             lag, workers_ms, pc.get("webhook worker", 0.0), pc.get("receiver", 0.0),
                             pc.get("bench (client/poll)", 0.0), pc.get("redis", 0.0))
                data.setdefault(f"cpu_{mode}", []).append({"workers": workers_ms, "receiver": pc.get("receiver", 0.0),
                                                           "webhook_worker": pc.get("webhook worker", 0.0)})
        data["ratio_off"] = statistics.median(ratios["off"])
        data["ratio_on"] = statistics.median(ratios["on, own worker"])
        data["ratio_shared"] = statistics.median(ratios["on, shared pool"])
        data["cpu_on"] = data["cpu_on, own worker"]
    finally:
        bench.extra_cpu_pids.pop("receiver", None)
        bench.extra_cpu_pids.pop("webhook worker", None)
        bench.redis.delete(endpoints.key)
        bench.gateway_latency(0)
        for worker in [*workers, hooks]:
            bench.stop(worker)
        bench.stop(receiver)
        bench.forget_jobs()
    section.tables = [throughput, pipeline]
    section.data = data
    section.notes = [
        f"Workers: the shipped shape: {label(shape)} on `checkout`, and the webhook worker (1 × threads "
        f"-c {HOOK_THREADS}, the Procfile's `webhooks:` process) on `webhooks`. \"Shared pool\" is the "
        "alternative measured beside it: the checkout workers consume `webhooks` too (the webhook "
        "worker paused). The receiver is one Python process verifying each message with "
        "`standardwebhooks` and answering 204. Everything shares this machine's 2 cores, so the "
        "throughput is a floor, not a capacity.",
        f"Pipeline rounds: {sizes['jobs']} jobs each: webhooks off, on with their own worker, on in the "
        "shared pool, each right after its own bare-client run (its ratio's denominator); \"on\" counts until every job is `paying` (as "
        "table 1), then waits for the webhooks: the lag column is how long the last one took after "
        "the last `paying`.",
    ]
    section.seconds = time.perf_counter() - started
    return section


def _stats(bench: Bench, url: str) -> dict:
    return bench.http.get(url + "/_receiver/stats", timeout=10).json()
