"""Benchmark 5 — cost per job: Redis commands per job (``INFO commandstats`` deltas on the private
Redis, for enqueue, submit and callback, Celery's own traffic included), the round trips our code
makes (counted client-side in this process), bytes stored per job, and worker memory.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections import Counter
from contextlib import contextmanager

import redis

from bench.procs import Bench, callback_body, tree_memory, wait_for
from bench.report import Section, Table

__all__ = ["run"]

_NAME = re.compile(rb"\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n")


def _commandstats(client: redis.Redis) -> Counter:
    stats = client.info("commandstats")
    return Counter({k[len("cmdstat_"):] if k.startswith("cmdstat_") else k: int(v["calls"])
                    for k, v in stats.items()})


def _reset(client: redis.Redis) -> None:
    client.config_resetstat()


class Monitor:
    """``MONITOR`` in a thread: every command Redis runs, split into those sent by clients and
    those run inside Lua scripts, with round trips estimated per client connection (a
    ``MULTI`` … ``EXEC`` block counts once; every other client command once)."""

    STOP = "bench-monitor-stop"

    def __init__(self, client: redis.Redis):
        self.client = client
        self.client_cmds: Counter = Counter()
        self.lua_cmds: Counter = Counter()
        self.trips = 0
        self._in_multi: set[str] = set()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._ready = threading.Event()

    def _loop(self) -> None:
        with self.client.monitor() as mon:
            self._ready.set()
            for entry in mon.listen():
                command = entry["command"]
                name = command.split(" ", 1)[0].lower()
                if entry["client_type"] == "lua":
                    self.lua_cmds[name] += 1
                    continue
                if name == "echo" and self.STOP in command:
                    return
                conn = f"{entry['client_address']}:{entry['client_port']}"
                self.client_cmds[name] += 1
                if name == "multi":
                    self._in_multi.add(conn)
                    self.trips += 1
                elif name == "exec":
                    self._in_multi.discard(conn)
                elif conn not in self._in_multi:
                    self.trips += 1

    def __enter__(self) -> "Monitor":
        self._thread.start()
        self._ready.wait(timeout=10)
        time.sleep(0.1)
        return self

    def __exit__(self, *exc) -> None:
        self.client.echo(self.STOP)
        self._thread.join(timeout=30)


_SKIP = {"config", "info", "monitor", "echo", "hello"}


def _phase(client: redis.Redis, action, own: set[str]) -> dict:
    """What Redis served during ``action()``: commandstats deltas and the MONITOR split."""
    _reset(client)
    with Monitor(client) as mon:
        started = time.perf_counter()
        action()
        seconds = time.perf_counter() - started
    stats = Counter({k: v for k, v in _commandstats(client).items() if k not in own and k not in _SKIP})
    own_trips = sum(mon.client_cmds[k] for k in own)
    return {"seconds": seconds, "stats": stats,
            "client": Counter({k: v for k, v in mon.client_cmds.items() if k not in own and k not in _SKIP}),
            "lua": Counter({k: v for k, v in mon.lua_cmds.items() if k not in own}),
            "trips": mon.trips - own_trips - sum(mon.client_cmds[k] for k in _SKIP)}


def _less_idle(phase: dict, idle: dict) -> dict:
    """The phase less the idle rate times its length (the workers poll the broker when idle)."""
    scale = phase["seconds"] / idle["seconds"]
    out = {"seconds": phase["seconds"]}
    for key in ("stats", "client", "lua"):
        out[key] = Counter({k: v - idle[key].get(k, 0) * scale for k, v in phase[key].items()
                            if v - idle[key].get(k, 0) * scale > 0.5})
    out["trips"] = phase["trips"] - idle["trips"] * scale
    return out


class RoundTrips:
    """Counts what this process sends to Redis: one ``send_packed_command`` is one round trip."""

    def __init__(self):
        self.trips = 0
        self.commands: Counter = Counter()

    @contextmanager
    def counting(self):
        original = redis.connection.AbstractConnection.send_packed_command
        counter = self

        def send_packed_command(conn, command, check_health=True):
            counter.trips += 1
            data = command if isinstance(command, (bytes, bytearray)) else b"".join(
                bytes(c) for c in command)
            for name in _NAME.findall(data[:1 << 16]):
                counter.commands[name.decode().lower()] += 1
            return original(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = send_packed_command
        try:
            yield self
        finally:
            redis.connection.AbstractConnection.send_packed_command = original


def _per_call(bench: Bench, calls, label: str) -> dict:
    """Median round trips per call over the calls, and the commands they sent (per call)."""
    trips, commands = [], Counter()
    for call in calls:
        rt = RoundTrips()
        with rt.counting():
            call()
        trips.append(rt.trips)
        commands.update(rt.commands)
    n = len(trips)
    return {"label": label, "median": statistics.median(trips), "min": min(trips), "max": max(trips),
            "commands": {k: v / n for k, v in commands.most_common()}}


def run(bench: Bench, sizes: dict) -> Section:
    m, load_jobs, rss_c = sizes["jobs"], sizes["load_jobs"], sizes["rss_concurrency"]
    section = Section(
        "cost", "5. Cost per job (Redis work, bytes stored, worker memory)",
        "what one checkout costs the shared infrastructure: Redis commands per job in each phase "
        "(Celery's own broker traffic included), the round trips our code makes, the bytes a "
        "finished job keeps in Redis, and a worker's memory idle and under load.")
    started = time.perf_counter()
    r = bench.redis
    bench.forget_jobs()
    bench.sandbox_reset()
    bench.gateway_latency(0)
    web = bench.start_web(2, 8)
    worker = bench.start_worker(concurrency=8)
    try:
        # idle background: the worker's broker polling, heartbeats, the web app's nothing
        idle = _phase(r, lambda: time.sleep(4.0), set())

        mem_before = r.memory_usage(bench.store_events_key()) or 0
        xlen_before = r.xlen(bench.store_events_key())
        used_before = r.info("memory")["used_memory"]
        trade_nos: list[str] = []

        def enqueue():
            trade_nos.extend(bench.enqueue(m)[0])

        enq = _less_idle(_phase(r, enqueue, set()), idle)
        paying_key = bench.runtime.store.keys.index("paying")

        def submit():
            bench.resume([worker], queues=("checkout",))
            wait_for(lambda: r.zcard(paying_key) >= m, timeout=max(60, m / 10), interval=0.1)
            wait_for(lambda: r.hlen("unacked") == 0, timeout=30, interval=0.1)

        sub = _less_idle(_phase(r, submit, {"zcard", "hlen"}), idle)
        bench.pause([worker], queues=("checkout",))
        http = bench.http

        def callbacks():
            bench.resume([worker], queues=("callbacks",))
            deadline = time.perf_counter() + max(60, m / 5)
            for t in trade_nos:
                if time.perf_counter() > deadline:
                    break
                reply = http.post(bench.web_url + "/vexora/notify", data=callback_body(t, platform_no=ids.get(t)),
                                  headers={"Content-Type": "application/json"}, timeout=15)
                reply.raise_for_status()
            wait_for(lambda: r.zcard(paying_key) == 0, timeout=max(60, m / 10), interval=0.1)
            wait_for(lambda: r.hlen("unacked") == 0 and r.llen("callbacks") == 0, timeout=30, interval=0.1)

        # the gateway's id of each job, read before the phase is measured: callbacks must name it
        pipe = r.pipeline(transaction=False)
        for t in trade_nos:
            pipe.hget(bench.runtime.store.keys.job(t), "platFormTradeNo")
        ids = {t: v.decode() for t, v in zip(trade_nos, pipe.execute()) if v}
        cb = _less_idle(_phase(r, callbacks, {"zcard", "hlen", "llen"}), idle)
        bench.pause([worker], queues=("callbacks",))
        states = Counter(s.decode() if s else None for s in
                         (r.hget(bench.runtime.store.keys.job(t), "state") for t in trade_nos))

        # bytes kept per finished job
        store = bench.runtime.store
        sample = trade_nos[:: max(1, len(trade_nos) // 50)]
        job_bytes = statistics.mean(r.memory_usage(store.keys.job(t), samples=0) for t in sample)
        hist_bytes = statistics.mean(r.memory_usage(store.keys.history(t), samples=0) for t in sample)
        mem_after = r.memory_usage(bench.store_events_key(), samples=0) or 0
        xlen_after = r.xlen(bench.store_events_key())
        used_after = r.info("memory")["used_memory"]
        hlen = statistics.mean(r.hlen(store.keys.job(t)) for t in sample)
        encoding = Counter(_text(r.object("encoding", store.keys.job(t))) for t in sample)
        longest = Counter()
        for t in sample[:10]:
            for k, v in r.hgetall(store.keys.job(t)).items():
                if len(v) > 64:
                    longest[_text(k)] += 1
        hash_config = {k: v for k, v in r.config_get("hash-max-*").items()}
        # the same records, rewritten with a listpack allowed for values up to 256 bytes
        value_key = next(k for k in hash_config if k.endswith("value"))
        r.config_set(value_key, 256)
        compact = []
        try:
            for t in sample[:20]:
                r.delete("bench:compact")
                r.hset("bench:compact", mapping=r.hgetall(store.keys.job(t)))
                compact.append(r.memory_usage("bench:compact", samples=0))
            r.delete("bench:compact")
        finally:
            r.config_set(value_key, hash_config[value_key])
        compact_bytes = statistics.mean(compact)

        # round trips our own code makes, counted in this process
        fresh = [bench.payload() for _ in range(60)]
        from worker.client import enqueue_checkout
        rt_enqueue = _per_call(bench, [lambda j=j: enqueue_checkout(j, runtime=bench.runtime)
                                       for j in fresh[10:]], "enqueue_checkout")
        for j in fresh[:10]:
            enqueue_checkout(j, runtime=bench.runtime)  # not counted, just so submit has jobs
        bench.drop_queue("checkout")  # the in-process submit below stands in for the worker
        submitter = bench.runtime.submitter
        submitter.submit(fresh[0]["tradeNo"])  # warm-up: session, scripts
        rt_submit = _per_call(bench, [lambda t=j["tradeNo"]: submitter.submit(t) for j in fresh[1:]],
                              "Submitter.submit (in-process, 0 ms gateway)")
        processor = bench.runtime.callbacks
        held = {j["tradeNo"]: r.hget(store.keys.job(j["tradeNo"]), "platFormTradeNo") for j in fresh[1:]}
        rt_callback = _per_call(bench, [lambda t=j["tradeNo"]: processor.apply(
            {"tradeNo": t, "status": "0000", "amount": "300.00",
             "platFormTradeNo": held[t].decode() if held[t] else "p-" + t[-8:],
             "message": "Success"}) for j in fresh[1:]], "CallbackProcessor.apply (in-process)")
        idle_small = tree_memory(worker.popen.pid)
    finally:
        bench.stop(worker)
        bench.stop(web)

    # worker memory: idle and under load at concurrency rss_c, 100 ms gateway latency
    big = bench.start_worker(concurrency=rss_c)
    try:
        bench.gateway_latency(0.1)
        bench.batch([big], 2 * rss_c, timeout=60)  # warm-up: every thread has run
        time.sleep(1)
        idle_big = tree_memory(big.popen.pid)
        loaded = bench.batch([big], load_jobs, timeout=max(60, load_jobs / 20), sample=[big.popen.pid])
    finally:
        bench.stop(big)
        bench.gateway_latency(0)
        bench.forget_jobs()

    phases = (enq, sub, cb)
    names = sorted(set().union(*(p["stats"] for p in phases)),
                   key=lambda k: -sum(p["stats"][k] for p in phases))
    commands = Table(["Redis command", "enqueue", "submit (worker)", "callback (web + worker)",
                      "total per job", "of which inside Lua"],
                     title=f"Redis commands per job (`INFO commandstats` deltas over {m} jobs, idle rate "
                           f"subtracted; commandstats also counts what Lua scripts call)")
    for name in names:
        per = [p["stats"][name] / m for p in phases]
        lua = sum(p["lua"][name] for p in phases) / m
        commands.add(name, *per, sum(per), lua)
    totals = [sum(p["stats"].values()) / m for p in phases]
    commands.add("**all commands**", *totals, sum(totals), sum(sum(p["lua"].values()) for p in phases) / m)
    client = [sum(p["client"].values()) / m for p in phases]
    commands.add("**sent by clients** (MONITOR)", *client, sum(client), "–")
    trips_est = [p["trips"] / m for p in phases]
    commands.add("**round trips** (MONITOR; MULTI…EXEC = 1)", *trips_est, sum(trips_est), "–")
    trips = Table(["call", "round trips (median)", "min–max", "commands sent, per call"],
                  title="Round trips made by our code per call (counted in this process: one "
                        "`send_packed_command` = one round trip; the broker send included)")
    for rt in (rt_enqueue, rt_submit, rt_callback):
        trips.add(rt["label"], rt["median"], f"{rt['min']}–{rt['max']}",
                  ", ".join(f"{k} {v:.2g}" for k, v in rt["commands"].items()))
    stored = Table(["what a finished (`succeeded`) job keeps", "bytes per job"],
                   title="Bytes stored per job (`MEMORY USAGE ... SAMPLES 0`)")
    stored.add(f"job hash `vexora:job:{{<tradeNo>}}` ({hlen:.0f} fields, encoding "
               f"{', '.join(encoding)}; values over 64 bytes: {', '.join(sorted(longest)) or 'none'})", job_bytes)
    stored.add(f"  the same hash as a listpack (`{value_key} 256`; today {hash_config[value_key]})",
               compact_bytes)
    stored.add("history list `vexora:job:{<tradeNo>}:history` (4 entries)", hist_bytes)
    stored.add(f"events stream growth ({(xlen_after - xlen_before) / m:.1f} entries per job)",
               (mem_after - mem_before) / m)
    stored.add("Redis `used_memory` growth over the three phases ÷ jobs (allocator overhead and "
               "transient broker data included)", (used_after - used_before) / m)
    memory = Table(["worker", "state", "VmRSS MiB (tree)", "PSS MiB (tree)", "processes"],
                   title="Worker memory (RSS and PSS, psutil's `memory_full_info()`, summed over the process tree)")
    memory.add("threads -c 8", "idle, after the cost phases", idle_small["rss_mib"], idle_small["pss_mib"],
               idle_small["processes"])
    memory.add(f"threads -c {rss_c}", "idle, after a warm-up batch", idle_big["rss_mib"], idle_big["pss_mib"],
               idle_big["processes"])
    memory.add(f"threads -c {rss_c}", f"peak under load ({load_jobs} jobs at 100 ms, "
                                      f"{loaded['jobs_per_s']:.0f} jobs/s)",
               loaded["memory"]["rss_mib"], loaded["memory"]["pss_mib"], loaded["memory"]["processes"])
    section.tables = [commands, trips, stored, memory]
    section.data = {"commands_per_job": sum(totals), "client_per_job": sum(client),
                    "trips_per_job": sum(trips_est), "trips_phases": trips_est, "client_phases": client,
                    "rt_enqueue": rt_enqueue["median"], "rt_submit": rt_submit["median"],
                    "rt_callback": rt_callback["median"], "rt_submit_commands": rt_submit["commands"],
                    "job_bytes": job_bytes + hist_bytes, "stream_bytes": (mem_after - mem_before) / m,
                    "rss_idle": idle_big["rss_mib"], "rss_load": loaded["memory"]["rss_mib"],
                    "rss_c": rss_c, "m": m, "encoding": dict(encoding), "long_fields": sorted(longest),
                    "hash_config": hash_config, "job_hash_bytes": job_bytes,
                    "compact_bytes": compact_bytes, "value_key": value_key,
                    "sub_client": {k: v / m for k, v in sub["client"].items()},
                    "cb_client": {k: v / m for k, v in cb["client"].items()}}
    section.notes = [
        f"{m} jobs, end states {dict(states)}; phases: enqueue {enq['seconds']:.1f} s, submit "
        f"{sub['seconds']:.1f} s, callback {cb['seconds']:.1f} s (with MONITOR on, so these are "
        "not speeds). One worker (`--pool threads -c 8`), gunicorn 2×8, gateway at 0 ms. "
        "`CONFIG RESETSTAT` before each phase; the idle rate (measured over 4 s first: "
        f"{sum(idle['stats'].values()) / idle['seconds']:.1f} commands/s, the worker's broker "
        "polling and heartbeats) times the phase's length is subtracted, as are the bench's own "
        "`ZCARD`/`HLEN`/`LLEN` polls.",
        "`evalsha` is one of the store's Lua scripts (create, each state move); `multi`/`exec` wrap "
        "kombu's pipelines (the unacked bookkeeping of `acks_late`), so the commands between them "
        "share one round trip; `publish` is Celery's task events (`worker_send_task_events`, on for "
        "Flower). Callbacks here are posted one at a time (not the load test of 4).",
        "The second table counts round trips client-side for the same calls run in this process "
        "(the worker's code path without Celery around it): the submit against the sandbox at 0 ms.",
    ]
    section.seconds = time.perf_counter() - started
    return section


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
