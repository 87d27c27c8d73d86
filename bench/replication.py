"""Benchmark 10 — what "acknowledged means replicated" costs (issue 14): Redis ``WAIT`` per job.

With ``VEXORA_REDIS_MIN_REPLICAS`` above 0, ``enqueue_checkout`` confirms its write with a ``WAIT``
(producer side), and every gateway request a worker counts (``JobStore.count_attempt``) runs its
Lua script and a ``WAIT`` in one round trip (the worker's hot path). Three setups side by side in
one run, each pipeline round right after its own bare-client run (the noise comes in bursts):
(a) one Redis, no replica — the shape of table 1; (b) a master and one replica behind three
Sentinels (``SentinelGroup``), the workers given its ``env()`` as shipped, so one replica is
required: a WAIT on every counted request; (c) the same group with ``VEXORA_REDIS_MIN_REPLICAS=0``:
the Sentinel client and a replica streaming, but no WAIT, to tell the two costs apart.
"""

from __future__ import annotations

import statistics
import time

from bench.lease import _per_call
from bench.loadgen import percentile
from bench.pipeline import bare_rate, label, shapes
from bench.procs import Bench
from bench.producer import _concurrent
from bench.report import Section, Table
from worker.domain import states
from worker.local.sentinel_group import SentinelGroup

__all__ = ["run"]

THREADS = 8  # producer threads, as table 3
PLAIN, WAIT, NO_WAIT = "one Redis, no replica", "master + 1 replica, WAIT 1", "master + 1 replica, no WAIT"


class _Mode:
    """One setup: the env its processes get, the bench's runtime for it, its Redis processes."""

    def __init__(self, name: str, env: dict, runtime, redis_pids: dict[str, int]):
        self.name, self.env, self.runtime, self.redis_pids = name, env, runtime, redis_pids
        self.workers: list = []

    def using(self, bench: Bench):
        return bench.elsewhere(self.env, self.runtime, self.redis_pids)


def _count_attempt_us(bench: Bench, n: int) -> float:
    """µs per token-checked ``count_attempt`` (the worker's call), one at a time, on claimed jobs."""
    store = bench.runtime.store
    jobs = [bench.payload() for _ in range(min(n, 200))]
    for job in jobs:
        store.create(job["tradeNo"], job, contact={})
    items = [(j["tradeNo"], store.move(j["tradeNo"], states.SUBMITTING, claim_lease=3600).lease_token)
             for j in jobs]
    _per_call(lambda i: store.count_attempt(items[i % len(items)][0], lease_token=items[i % len(items)][1],
                                            ipHash="h"), 50)  # warm-up: connection, script load
    return _per_call(lambda i: store.count_attempt(items[i % len(items)][0], lease_token=items[i % len(items)][1],
                                                   ipHash="h"), n)


def _redis_ms(pc: dict) -> float:
    return sum((v for k, v in pc.items() if k.startswith(("redis", "sentinel"))), 0.0)


def _sentinels_ms(pc: dict) -> float:
    return sum((v for k, v in pc.items() if k.startswith("sentinel")), 0.0)


def run(bench: Bench, sizes: dict) -> Section:
    c, n, rounds, calls = sizes["concurrency"], sizes["jobs"], sizes["rounds"], sizes["calls"]
    shape = shapes(c)[0]
    section = Section(
        "replication", "10. Replicated acknowledgements (the cost of `WAIT` per job)",
        f"what waiting for a replica costs: jobs/s to `paying` at 100 ms gateway latency, over the "
        f"bare client's req/s measured right before, with one Redis and no replica (as table 1), with a "
        f"master and one replica behind three Sentinels where every counted gateway request WAITs for "
        f"the replica (`VEXORA_REDIS_MIN_REPLICAS=1`, the default with Sentinel), and the same group "
        f"without the WAIT; the CPU each costs per job, and `enqueue_checkout` calls/s with and "
        f"without its WAIT. Workers: the shipped shape, {label(shape)}. Goal: ≥ 0.85 with one replica.")
    started = time.perf_counter()
    group = SentinelGroup(replicas=1).start()
    master, replica = group.nodes[0], group.nodes[1]
    group_pids = {"redis": master.process.pid, "redis replica": replica.process.pid,
                  **{f"sentinel {i}": s.process.pid for i, s in enumerate(group.sentinels)}}
    modes = [
        _Mode(PLAIN, {}, bench.runtime, {"redis": bench.redis_server.process.pid}),
        _Mode(WAIT, group.env(), bench.runtime_for(group.env()), group_pids),
        _Mode(NO_WAIT, {**group.env(), "VEXORA_REDIS_MIN_REPLICAS": "0"},
              bench.runtime_for({**group.env(), "VEXORA_REDIS_MIN_REPLICAS": "0"}), group_pids),
    ]
    wanted = {PLAIN: 0, WAIT: 1, NO_WAIT: 0}
    for mode in modes:  # the settings the workers will read from the same env
        if mode.runtime.settings.min_replicas != wanted[mode.name]:
            raise RuntimeError(f"{mode.name}: min replicas {mode.runtime.settings.min_replicas}")
    micro = Table(["setup", "min replicas", "calls", "count_attempt µs per call (token-checked, one at a time)",
                   "enqueue_checkout calls/s, one at a time", "p50 / p99 ms",
                   f"enqueue_checkout calls/s, {THREADS} threads", f"p50 / p99 ms ({THREADS} threads)"],
                  title="Per call, no worker consuming (this process; the setups alternating)")
    table = Table(["round", "setup", "bare client req/s", "pipeline jobs/s", "ratio", "in-task ms p50 / p99",
                   "enqueue calls/s (in the round)", "not paying", "CPU ms per job: workers", "Redis master",
                   "replica", "Sentinels (3)", "bench (poll)", "total"])
    summary = Table(["setup", "bare client req/s (median)", "pipeline jobs/s (median)", "ratio (median of rounds)",
                     "ratio ÷ one Redis's", "workers CPU ms per job", "Redis + replica + Sentinels CPU ms per job"],
                    title=f"Summary at 100 ms gateway latency ({rounds} round(s) of {n} jobs; CPU: medians of the rounds)")
    data: dict = {"micro": {}, "rounds": {}}
    try:
        # -- per call: count_attempt and enqueue_checkout, the setups alternating -----------------
        per_call: dict[str, dict[str, list]] = {m.name: {"attempt": [], "one": [], "one_lat": [], "many": [],
                                                         "many_lat": []} for m in modes}
        share = max(100, calls // rounds)
        for _ in range(rounds):
            for mode in modes:
                with mode.using(bench):
                    pc = per_call[mode.name]
                    pc["attempt"].append(_count_attempt_us(bench, share))
                    bench.enqueue(50)  # warm-up
                    t0 = time.perf_counter()
                    _, one_lat = bench.enqueue(share)
                    pc["one"].append(len(one_lat) / (time.perf_counter() - t0))
                    pc["one_lat"] += one_lat
                    seconds, many_lat = _concurrent(bench, share, THREADS)
                    pc["many"].append(share / seconds)
                    pc["many_lat"] += many_lat
                    bench.drop_queue("checkout")
                    bench.forget_jobs()
        for mode in modes:
            pc = per_call[mode.name]
            attempt_us, one_rate, many_rate = (statistics.median(pc[k]) for k in ("attempt", "one", "many"))
            micro.add(mode.name, mode.runtime.settings.min_replicas, share * rounds, attempt_us, one_rate,
                      f"{percentile(pc['one_lat'], 50) * 1000:.2f} / {percentile(pc['one_lat'], 99) * 1000:.2f}",
                      many_rate,
                      f"{percentile(pc['many_lat'], 50) * 1000:.2f} / {percentile(pc['many_lat'], 99) * 1000:.2f}")
            data["micro"][mode.name] = {"count_attempt_us": attempt_us, "enqueue_one": one_rate,
                                        "enqueue_threads": many_rate}
        # -- the pipeline at 100 ms, side by side -------------------------------------------------
        bench.sandbox_reset()
        for mode in modes:
            with mode.using(bench):
                mode.workers = [bench.start_worker(concurrency=shape[1]) for _ in range(shape[0])]
        bench.gateway_latency(0.1)
        for mode in modes:  # warm-up: threads, connections, scripts
            with mode.using(bench):
                bench.batch(mode.workers, 2 * c, timeout=60)
        per: dict[str, dict[str, list]] = {m.name: {"bare": [], "pipe": [], "ratio": [], "workers": [], "redis": []}
                                           for m in modes}
        for r in range(1, rounds + 1):
            for mode in modes:
                # the yardstick again right before each setup: the machine's noise comes in bursts
                bare = bare_rate(bench, c, n)
                with mode.using(bench):
                    pipe = bench.batch(mode.workers, n, timeout=max(60, n / 20))
                pc, tl = pipe["cpu_ms_per_job"], pipe["timeline"]
                ratio = pipe["jobs_per_s"] / bare["rps"]
                p = per[mode.name]
                p["bare"].append(bare["rps"])
                p["pipe"].append(pipe["jobs_per_s"])
                p["ratio"].append(ratio)
                p["workers"].append(pc.get("worker", 0.0))
                p["redis"].append(_redis_ms(pc))
                table.add(r, mode.name, bare["rps"], pipe["jobs_per_s"], ratio,
                          f"{tl['in_task_p50_s'] * 1000:.0f} / {tl['in_task_p99_s'] * 1000:.0f}",
                          pipe["n"] / pipe["enqueue_s"], sum(pipe["other"].values()), pc.get("worker", 0.0),
                          pc.get("redis", 0.0), pc.get("redis replica", 0.0), _sentinels_ms(pc),
                          pc.get("bench (client/poll)", 0.0), pc["total"] - pc.get("sandbox", 0.0))
                data["rounds"].setdefault(mode.name, []).append(
                    {"bare": bare["rps"], "pipeline": pipe["jobs_per_s"], "ratio": ratio, "cpu": pc,
                     "in_task_p50_s": tl["in_task_p50_s"], "other": pipe["other"]})
        base = statistics.median(per[PLAIN]["ratio"])
        for mode in modes:
            p = per[mode.name]
            ratio = statistics.median(p["ratio"])
            summary.add(mode.name, statistics.median(p["bare"]), statistics.median(p["pipe"]), ratio,
                        ratio / base, statistics.median(p["workers"]), statistics.median(p["redis"]))
            data[mode.name] = {"ratio": ratio, "workers_ms": statistics.median(p["workers"]),
                               "redis_ms": statistics.median(p["redis"]), "rounds": list(p["ratio"])}
        data["ratio_plain"], data["ratio_wait"] = data[PLAIN]["ratio"], data[WAIT]["ratio"]
        data["ratio_no_wait"] = data[NO_WAIT]["ratio"]
    finally:
        bench.gateway_latency(0)
        for mode in modes:
            for worker in mode.workers:
                bench.stop(worker)
        for mode in modes:
            with mode.using(bench):
                bench.drop_queue("checkout")
                bench.forget_jobs()
        group.stop()
    section.tables = [summary, table, micro]
    section.data = data
    section.notes = [
        f"Setups: one Redis is the bench's own redis-server (table 1's). The group is a master, one "
        f"replica (`--replicaof`, asynchronous replication over loopback) and three Sentinels "
        f"(`worker.local.sentinel_group`), started once for the run; the workers of the two group "
        f"setups get `REDIS_URL=sentinel://…` and `VEXORA_REDIS_SENTINEL_MASTER` (store, broker and "
        f"result backend through the Sentinels), and for the third also `VEXORA_REDIS_MIN_REPLICAS=0`. "
        f"Each setup has its own {label(shape)} workers, all started before the first round; the "
        f"setups not being measured stay started with their consumers cancelled.",
        f"Pipeline rounds: as table 1 ({n} jobs enqueued with the consumers cancelled, then the clock "
        f"runs from `add_consumer` to the last `paying`), each right after its own bare-client run "
        f"(the ratio's denominator); a warm-up batch of {2 * c} jobs per setup first. With WAIT 1, the "
        f"worker's `count_attempt` (the token-checked script and `WAIT 1 "
        f"{modes[1].runtime.replication.timeout_ms}` in one round trip) is the only write of a "
        f"submit that waits; the enqueue in the round also confirms each job with a WAIT.",
        "CPU: user+system time of each process over the timed drain, per job; \"total\" leaves out "
        "the sandbox (the gateway, the same work in every setup). The Sentinels' columns are their "
        "three processes summed.",
        f"Per call: this process alone against the setup's Redis (no worker consuming; the queued "
        f"messages are dropped after), the setups alternating in {rounds} round(s) of "
        f"{max(100, calls // rounds)} calls each (rates and µs: medians of the rounds; p50 / p99 over "
        f"all calls): `count_attempt` on jobs claimed beforehand, as the worker calls it, and "
        f"`enqueue_checkout` one at a time, then from {THREADS} threads (as table 3), after 50 untimed calls.",
    ]
    section.seconds = time.perf_counter() - started
    return section
