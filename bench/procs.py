"""Shared process helpers for the benchmarks: one private Redis, the sandbox gateway, Celery
workers and the web app as real processes (``worker.local.services``), plus the few things every
benchmark needs from them: job payloads with distinct public IPs, pausing and resuming a
worker's consumers, polling the store with a deadline, process-tree memory and CPU (psutil),
sandbox control.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from itertools import count
from pathlib import Path

import psutil
import redis
import requests

from worker.config.settings import Settings
from worker.gateway import signing
from worker.local.redis_server import RedisServer, free_port
from worker.local.services import Service, Services, http_ok
from worker.runtime.wiring import Runtime
from worker.waiting import TimedOut, wait_until
from worker.web.serve import web_argv

__all__ = ["Bench", "WaitResult", "MemorySampler", "MERCHANT_NO", "APP_SECRET", "tree_memory",
           "callback_body", "wait_for", "cpu_seconds", "machine_busy_seconds", "CpuMeter"]

MERCHANT_NO = "M-BENCH-0001"
APP_SECRET = "bench-secret-5b1e2d"
QUEUES = ("checkout", "callbacks", "reconcile", "webhooks")
# final states a job that will never be ``paying`` ends in (counted, so a wait does not hang)
_SETTLED = frozenset({"unknown", "declined", "rejected", "failed"})

# The worker env: the retry budget stays at its defaults (no faults are injected that retry).
WORKER_ENV = {
    "VEXORA_IP_LIMITS": "off",  # the per-IP daily limit would reject a benchmark's jobs
    "PYTHONUNBUFFERED": "1",
}


class WaitResult:
    """What a bounded wait saw: seconds until done (or until the deadline), states counted."""

    def __init__(self, seconds: float, states: Counter, pending: int):
        self.seconds = seconds
        self.states = states
        self.pending = pending

    @property
    def complete(self) -> bool:
        return self.pending == 0


class Bench:
    """Every process one benchmark run started; ``close`` stops them all."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.redis_server = RedisServer().start()
        self.sandbox_port = free_port()
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.web_port = free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            **os.environ,
            "REDIS_URL": self.redis_server.url,
            "VEXORA_BASE_URL": self.sandbox_url,
            "VEXORA_MERCHANT_NO": MERCHANT_NO,
            "VEXORA_APP_SECRET": APP_SECRET,
            "VEXORA_NOTIFY_URL": f"{self.web_url}/vexora/notify",
            **WORKER_ENV,
        }
        self.settings = Settings.from_env(self.env)
        self.runtime = Runtime(self.settings)
        self.redis: redis.Redis = self.runtime.redis
        self.services = Services(self.env, log_dir)
        self.http = requests.Session()
        self.sandbox: Service | None = None
        self.web: Service | None = None
        self.web_shape = (0, 0)
        self.extra_cpu_pids: dict[str, int] = {}  # e.g. a webhook receiver a benchmark started
        self.redis_pids: dict[str, int] | None = None  # set by ``elsewhere``; None: the bench's own Redis
        self._ids = count(1)
        self._run = uuid.uuid4().hex[:6]

    # -- processes --------------------------------------------------------------------------
    def start_sandbox(self) -> Service:
        """The sandbox gateway, as shipped (``vexora-checkout sandbox``)."""
        self.sandbox = self.services.start(
            "sandbox", "-m", "worker.cli", "sandbox", "--port", str(self.sandbox_port), "--time-factor", "0.01",
            ready=http_ok(self.sandbox_url + "/_sandbox/stats"), timeout=30)
        return self.sandbox

    def start_worker(self, *, pool: str = "threads", concurrency: int = 32, paused: bool = True,
                     extra_env: dict | None = None, timeout: float = 90, queues=QUEUES,
                     tree: Path | None = None) -> Service:
        """A Celery worker on ``queues`` (all of them by default); ``paused`` cancels its consumers
        once it answers. ``tree``: the code of another revision (``snapshot``) instead of this one."""
        name = f"b{uuid.uuid4().hex[:6]}@bench"
        argv = ["-m", "celery", "-A", "worker", "worker", "-Q", ",".join(queues), "--pool", pool,
                "-c", str(concurrency), "-n", name, "--loglevel", "INFO",
                "--without-gossip", "--without-mingle"]
        env = {**self.env, **(extra_env or {}), **({"PYTHONPATH": str(tree)} if tree else {})}
        service = Service(name, [self.python, *argv], env, self.log_dir, cwd=tree).start()
        self.services.started.append(service)
        service.worker_name = name
        service.wait_ready(lambda: self._worker_up(name), timeout=timeout)
        if paused:
            self.pause([service], queues)
        return service

    def start_naive(self, *, concurrency: int = 32, paused: bool = True, timeout: float = 90,
                    loglevel: str | None = None) -> Service:
        """The naive peer (``bench/naive_app.py``) on its own queue, started like ``start_worker``
        starts ours (threads pool, ``--without-gossip --without-mingle``, worker heartbeats at
        Celery's default), by default at Celery's default log level (WARNING: no line per task;
        ``loglevel`` e.g. ``INFO`` to compare); ``paused`` cancels its consumer once it answers."""
        from bench import naive_app
        name = f"n{uuid.uuid4().hex[:6]}@bench"
        argv = ["-m", "celery", "-A", "bench.naive_app", "worker", "-Q", naive_app.QUEUE, "--pool", "threads",
                "-c", str(concurrency), "-n", name, "--without-gossip", "--without-mingle",
                *(["--loglevel", loglevel] if loglevel else [])]
        service = Service(name, [self.python, *argv], self.env, self.log_dir).start()
        self.services.started.append(service)
        service.worker_name = name
        service.wait_ready(lambda: self._worker_up(name), timeout=timeout)
        if paused:
            self.pause([service], (naive_app.QUEUE,))
        return service

    def send_naive(self, n: int) -> tuple[list[str], float]:
        """Queue n fresh jobs for the naive peer, one ``send_task`` each with the job's fields as
        keyword arguments (the same fields ``enqueue_checkout`` gets); tradeNos and seconds."""
        from bench import naive_app
        if getattr(self, "_naive_producer", None) is None:
            self._naive_producer = naive_app.make_app(self.env["REDIS_URL"])
        celery_app = self._naive_producer
        jobs = [self.payload() for _ in range(n)]
        started = time.perf_counter()
        with celery_app.producer_or_acquire() as producer:
            for job in jobs:
                celery_app.send_task(naive_app.TASK, kwargs=job, queue=naive_app.QUEUE, producer=producer)
        return [job["tradeNo"] for job in jobs], time.perf_counter() - started

    def start_web(self, workers: int = 2, threads: int = 8) -> Service:
        self.web = self.services.start(
            # gunicorn.conf.py, with the shape under test: flags on the command line win
            "web", *web_argv("--bind", f"127.0.0.1:{self.web_port}", "--workers", str(workers),
                             "--threads", str(threads), "--backlog", "2048"),
            ready=http_ok(self.web_url + "/healthz"), timeout=60)
        self.web_shape = (workers, threads)
        return self.web

    def stop(self, service: Service | None) -> None:
        if service is None:
            return
        service.stop()
        if service in self.services.started:
            self.services.started.remove(service)
        if service is self.web:
            self.web = None

    def close(self) -> None:
        self.services.stop_all()
        self.http.close()
        self.redis_server.cleanup()

    def runtime_for(self, env: dict) -> Runtime:
        """A runtime for the bench's env with ``env`` on top (e.g. a Sentinel group's ``env()``)."""
        return Runtime(Settings.from_env({**self.env, **env}))

    @contextmanager
    def elsewhere(self, env: dict, runtime: Runtime, redis_pids: dict[str, int]):
        """While the block runs, point the bench at another Redis (a Sentinel group, say): the env
        of the workers it starts (``env`` on top of its own), its enqueues, store reads and worker
        control (``runtime``, from ``runtime_for(env)``), and the Redis processes whose CPU a
        measurement splits (``redis_pids``, name -> pid). Everything is put back after."""
        saved = (self.env, self.settings, self.runtime, self.redis, self.redis_pids)
        self.env = {**self.env, **env}
        self.settings, self.runtime, self.redis = runtime.settings, runtime, runtime.redis
        self.redis_pids = dict(redis_pids)
        try:
            yield self
        finally:
            self.env, self.settings, self.runtime, self.redis, self.redis_pids = saved

    @property
    def python(self) -> str:
        import sys
        return sys.executable

    # -- worker control -------------------------------------------------------------------
    def _worker_up(self, name: str) -> bool:
        replies = self.runtime.celery.control.ping(destination=[name], timeout=0.5)
        return any(name in reply for reply in replies)

    def _control(self, method: str, workers: list[Service], queues=QUEUES) -> None:
        names = [w.worker_name for w in workers]
        control = getattr(self.runtime.celery.control, method)
        for queue in queues:
            replies = control(queue, destination=names, reply=True, timeout=5)
            answered = {n for reply in replies for n in reply}
            missing = set(names) - answered
            if missing:
                raise RuntimeError(f"{method}({queue}) not acknowledged by {sorted(missing)}")

    def pause(self, workers: list[Service], queues=QUEUES) -> None:
        """Stop the workers taking messages (what is queued stays queued)."""
        self._control("cancel_consumer", workers, queues)

    def resume(self, workers: list[Service], queues=QUEUES) -> None:
        self._control("add_consumer", workers, queues)

    # -- jobs -----------------------------------------------------------------------------
    def payload(self) -> dict:
        """A valid job with a fresh tradeNo and a public IP no other job of this run has."""
        i = next(self._ids)
        return {
            "tradeNo": f"B{self._run}{i:010d}",
            "userId": f"user-{i % 997}",
            "amount": "300",
            "mobile": "09012345678",
            "firstname": "タロウ",
            "lastname": "ヤマダ",
            "email": "taro@example.com",
            "channelCode": "EWALLET",
            "wayCode": "PAYPAY",
            "ipAddress": f"8.{(i >> 16) % 200 + 1}.{(i >> 8) & 255}.{i % 254 + 1}" if i < 1 << 22
            else f"9.{(i >> 16) & 255}.{(i >> 8) & 255}.{i % 254 + 1}",
            "returnUrl": "https://shop.example/thanks",
            "remark": "bench",
        }

    def enqueue(self, n: int, time_limit: float = 300) -> tuple[list[str], list[float]]:
        """``enqueue_checkout`` n fresh jobs one at a time (stopping early at ``time_limit`` s);
        tradeNos and per-call seconds."""
        from worker.client import enqueue_checkout
        trade_nos, latencies = [], []
        deadline = time.perf_counter() + time_limit
        for _ in range(n):
            if time.perf_counter() > deadline:
                break
            job = self.payload()
            started = time.perf_counter()
            trade_nos.append(enqueue_checkout(job, runtime=self.runtime))
            latencies.append(time.perf_counter() - started)
        return trade_nos, latencies

    def cpu_pids(self) -> dict[str, int]:
        """The processes whose CPU a measurement splits: sandbox, Redis, web, this one."""
        pids = {"sandbox": self.sandbox.popen.pid,
                **(self.redis_pids or {"redis": self.redis_server.process.pid}),
                "bench (client/poll)": os.getpid()}
        if self.web is not None:
            pids["web"] = self.web.popen.pid
        pids.update(self.extra_cpu_pids)
        return pids

    def batch(self, workers: list[Service], n: int, *, timeout: float,
              sample: list[int] | None = None) -> dict:
        """Enqueue n jobs while ``workers`` are paused (timed), then resume them and time the
        drain from resume to the last job stored as ``paying`` (polled); pause them again.

        ``sample``: pids whose process-tree memory is sampled during the drain (peak kept).
        """
        trade_nos, latencies = self.enqueue(n)
        n = len(trade_nos)
        paying = self.runtime.store.keys.index("paying")
        before = self.redis.zcard(paying)
        sampler = MemorySampler(sample or [])
        pids = self.cpu_pids()
        pids.update({f"worker {i}": w.popen.pid for i, w in enumerate(workers)})
        with sampler, CpuMeter(pids) as cpu:
            started = time.perf_counter()
            self.resume(workers, queues=("checkout",))
            self.wait_count(lambda: self.redis.zcard(paying) - before >= n, timeout=timeout,
                            fallback=lambda: self.wait_states(trade_nos, {"paying"}, timeout=0,
                                                              settle=_SETTLED).complete)
            drain = time.perf_counter() - started
        self.pause(workers, queues=("checkout",))
        # the states, read once after the clock stopped: a job that ended elsewhere (unknown,
        # declined...) shows here; the wait's once-a-second full check ended the clock for it
        waited = self.wait_states(trade_nos, {"paying"}, timeout=5, settle=_SETTLED)
        timeline = self.timeline(trade_nos)
        if not waited.complete:
            # what is still queued must not leak into the next measurement
            self.drop_queue("checkout")
        return {"n": n, "enqueue_s": sum(latencies), "drain_s": drain,
                "jobs_per_s": n / drain, "e2e_jobs_per_s": n / (drain + sum(latencies)),
                "paying": waited.states.get("paying", 0),
                "other": {k: v for k, v in waited.states.items() if k != "paying"},
                "memory": sampler.peak if sample else None, "timeline": timeline,
                "in_flight": timeline["in_task_mean_s"] * n / drain,
                "cpu_ms_per_job": _per_job(cpu.used, n)}

    def timeline(self, trade_nos: list[str]) -> dict:
        """From the jobs' histories: the time inside the submit task (lease claimed ->
        ``paying``) and the spread of claims (first claim -> last ``paying``)."""
        store = self.runtime.store
        pipe = self.redis.pipeline(transaction=False)
        for trade_no in trade_nos:
            pipe.lrange(store.keys.history(trade_no), 0, -1)
        in_task, claims, done = [], [], []
        for entries in pipe.execute():
            at = {}
            for raw in entries:
                entry = json.loads(raw)
                at.setdefault(entry["to"], entry["at"])
            if "submitting" in at and "paying" in at:
                in_task.append((at["paying"] - at["submitting"]) / 1000)
                claims.append(at["submitting"])
                done.append(at["paying"])
        if not in_task:
            return {"in_task_mean_s": 0.0, "in_task_p50_s": 0.0, "in_task_p99_s": 0.0, "span_s": 0.0}
        in_task.sort()
        return {"in_task_mean_s": sum(in_task) / len(in_task),
                "in_task_p50_s": in_task[len(in_task) // 2],
                "in_task_p99_s": in_task[min(len(in_task) - 1, int(len(in_task) * 0.99))],
                "span_s": (max(done) - min(claims)) / 1000}

    @staticmethod
    def wait_count(done, *, timeout: float, interval: float = 0.01, fallback=None,
                   fallback_every: float = 1.0) -> bool:
        """Poll a cheap ``done()`` (one O(1) Redis command) until true or the deadline; every
        ``fallback_every`` s also ask the thorough (costlier) ``fallback()``, so a count that
        is off (a job that ended elsewhere) cannot hold the wait to its deadline."""
        next_fallback = time.perf_counter() + fallback_every

        def either() -> bool:
            nonlocal next_fallback
            if done():
                return True
            if fallback is not None and time.perf_counter() >= next_fallback:
                if fallback():
                    return True
                next_fallback = time.perf_counter() + fallback_every
            return False

        return wait_for(either, timeout=timeout, interval=interval)

    def make_paying(self, n: int, batch: int = 200) -> list[str]:
        """n jobs put straight into ``paying`` through the store's own ``create`` and ``move``
        (their Lua scripts queued into pipelines; no gateway, no broker): callback fodder."""
        from worker.domain import states
        from worker.domain.masking import mask_contact
        from worker.store.jobs import JobStore
        s = self.settings
        store = JobStore(self.redis, prefix=s.key_prefix, ttl_seconds=s.job_ttl_seconds,
                         events_maxlen=s.events_maxlen)
        create, move = store._create, store._move
        trade_nos = []
        for i in range(0, n, batch):
            jobs = [self.payload() for _ in range(min(batch, n - i))]
            pipe = self.redis.pipeline(transaction=False)
            store._create = lambda keys, args: (create(keys=keys, args=args, client=pipe), ("created", "queued"))[1]
            store._move = lambda keys, args: (move(keys=keys, args=args, client=pipe), (1, "x", 1, None))[1]
            for job in jobs:
                t = job["tradeNo"]
                store.create(t, job, contact=mask_contact(job), amount=job["amount"])
                store.move(t, states.SUBMITTING, claim_lease=60, detail={"reason": "bench"})
                store.move(t, states.PAYING, drop=["payload"], detail={"reason": "bench"},
                           fields={"platFormTradeNo": "p-" + t[-8:], "gatewayStatus": "0015",
                                   "paymentLink": "http://127.0.0.1/cashier/" + t, "gatewayCode": "0000"})
                trade_nos.append(t)
            answers = pipe.execute()
            if any(not a or a[0] in (0, b"conflict", b"existing") for a in answers):
                raise RuntimeError("make_paying: a create or move was refused")
        return trade_nos

    def wait_states(self, trade_nos: list[str], wanted: set[str], *, timeout: float,
                    interval: float = 0.02, settle: set[str] = frozenset()) -> WaitResult:
        """Poll job states with one pipeline per round until every job is in ``wanted`` (or in
        ``settle``, a final state that will not become ``wanted``); bounded by ``timeout``."""
        started = time.perf_counter()
        pending = list(trade_nos)
        seen: Counter = Counter()
        store = self.runtime.store

        def all_there() -> bool:
            """One round: one pipeline over the jobs still pending; counts those that arrived."""
            nonlocal pending
            pipe = self.redis.pipeline(transaction=False)
            for trade_no in pending:
                pipe.hget(store.keys.job(trade_no), "state")
            still = []
            for trade_no, state in zip(pending, pipe.execute()):
                state = state.decode() if state else None
                if state in wanted or state in settle:
                    seen[state] += 1
                else:
                    still.append(trade_no)
            pending = still
            return not pending

        wait_for(all_there, timeout=timeout, interval=interval)
        for trade_no in pending:
            seen["(timed out)"] += 1
        return WaitResult(time.perf_counter() - started, seen, len(pending))

    def forget_jobs(self) -> None:
        """Delete every job key (not the broker's own keys: kombu keeps queue bindings there)."""
        batch = []
        for key in self.redis.scan_iter(match=f"{self.settings.key_prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                self.redis.unlink(*batch)
                batch.clear()
        if batch:
            self.redis.unlink(*batch)

    def store_events_key(self) -> str:
        return self.runtime.store.keys.events

    def queue_length(self, queue: str) -> int:
        return int(self.redis.llen(queue))

    def drop_queue(self, queue: str) -> None:
        self.redis.delete(queue)

    # -- sandbox control ------------------------------------------------------------------
    def gateway_latency(self, seconds: float) -> None:
        """Every checkout answer from now on waits ``seconds`` (0: no fault rule at all)."""
        self.http.delete(self.sandbox_url + "/_sandbox/faults", timeout=5).raise_for_status()
        if seconds > 0:
            rule = {"endpoint": "checkout", "kind": "latency", "delay": seconds, "times": -1}
            self.http.post(self.sandbox_url + "/_sandbox/faults", json={"faults": [rule]},
                           timeout=5).raise_for_status()

    def sandbox_reset(self) -> None:
        self.http.post(self.sandbox_url + "/_sandbox/reset", timeout=5).raise_for_status()

    def sandbox_totals(self) -> dict:
        return self.http.get(self.sandbox_url + "/_sandbox/stats", timeout=10).json()["totals"]

    def sandbox_counts(self) -> dict:
        """The sandbox's totals alone (``GET /_sandbox/totals``: constant size, cheap to poll):
        ``received``, ``created``, ``duplicates``..."""
        return self.http.get(self.sandbox_url + "/_sandbox/totals", timeout=10).json()["totals"]

    def last_paying_ms(self, trade_nos: list[str]) -> int | None:
        """When the last of these jobs was moved to ``paying`` (epoch ms, from the histories;
        None if none was)."""
        pipe = self.redis.pipeline(transaction=False)
        for trade_no in trade_nos:
            pipe.lrange(self.runtime.store.keys.history(trade_no), 0, -1)
        last = None
        for entries in pipe.execute():
            for raw in entries:
                entry = json.loads(raw)
                if entry["to"] == "paying":
                    last = entry["at"] if last is None else max(last, entry["at"])
                    break
        return last


def snapshot(revision: str, into: Path) -> Path | None:
    """The repository's files at ``revision`` (``git archive``) under ``into``, or None without
    git or the revision: the code "before" a change, run beside today's."""
    import subprocess
    import tarfile
    root = Path(__file__).resolve().parents[1]
    archive = into / f"{revision}.tar"
    try:
        subprocess.run(["git", "-C", str(root), "archive", "--format=tar", "-o", str(archive), revision],
                       check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    tree = into / revision
    tree.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def _processes(pid: int, tree: bool = True) -> list[psutil.Process]:
    """A process, and all its descendants if ``tree`` (those that exist now)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)] if tree else [root]
    except psutil.Error:  # gone (or not ours to read): counts as nothing
        return []


def tree_memory(pid: int) -> dict:
    """RSS and PSS (MiB) summed over a process and all its descendants, and how many."""
    rss = pss = 0
    processes = _processes(pid)
    for process in processes:
        try:
            info = process.memory_full_info()  # rss from /proc/<pid>/statm, pss from smaps_rollup
        except psutil.Error:  # exited meanwhile
            continue
        rss += info.rss
        pss += info.pss
    return {"rss_mib": rss / 2**20, "pss_mib": pss / 2**20, "processes": len(processes)}


class MemorySampler:
    """Samples the memory of some process trees every ``interval`` s in a thread; keeps the max."""

    def __init__(self, pids: list[int], interval: float = 0.25):
        import threading
        self.pids = pids
        self.interval = interval
        self.peak = {"rss_mib": 0.0, "pss_mib": 0.0, "processes": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        total = {"rss_mib": 0.0, "pss_mib": 0.0, "processes": 0}
        for pid in self.pids:
            for key, value in tree_memory(pid).items():
                total[key] += value
        for key in total:
            self.peak[key] = max(self.peak[key], total[key])

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "MemorySampler":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()


def callback_body(trade_no: str, status: str = "0000", amount: str = "300.00",
                  secret: str = APP_SECRET, platform_no: str | None = None) -> bytes:
    """A callback as the gateway sends it, with the fields of ``tests/support/stack.py``'s
    ``Stack.callback_fields``: signed, ``amount`` a raw JSON number. ``platform_no`` is the
    gateway's id the job holds (a callback naming another is never applied); by default the one
    ``make_paying`` gives."""
    fields = {"platFormTradeNo": platform_no or "p-" + trade_no[-8:], "tradeNo": trade_no, "amount": amount,
              "status": status, "message": {"0000": "Success", "0001": "Partially paid",
                                            "0015": "Paying"}.get(status, "Failed"),
              "timestamp": str(int(time.time() * 1000))}
    return signing.callback_body(fields, secret)


def wait_for(predicate, *, timeout: float, interval: float = 0.02) -> bool:
    """``worker.waiting.wait_until`` for a measurement: a wait that ran out is reported with
    what it saw (a job short of its state), not raised; whether ``predicate`` became true."""
    try:
        wait_until(predicate, timeout=timeout, interval=interval)
    except TimedOut:
        return False
    return True


def cpu_seconds(pid: int, *, tree: bool = True) -> float:
    """User + system CPU seconds of a process (every thread), and of its descendants if ``tree``
    (those alive now: what exited is not counted)."""
    total = 0.0
    for process in _processes(pid, tree):
        try:
            times = process.cpu_times()
        except psutil.Error:  # exited meanwhile
            continue
        total += times.user + times.system
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot: every state but idle and iowait
    (guest time is already inside user time)."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq + times.steal


class CpuMeter:
    """CPU seconds each named process tree used between ``__enter__`` and ``__exit__``."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.used: dict[str, float] = {}

    def __enter__(self) -> "CpuMeter":
        self._start = {name: cpu_seconds(pid, tree=pid != os.getpid()) for name, pid in self.pids.items()}
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._wall
        self.used = {name: cpu_seconds(pid, tree=pid != os.getpid()) - self._start[name]
                     for name, pid in self.pids.items()}


def _per_job(used: dict[str, float], n: int) -> dict[str, float]:
    """CPU ms per job by process; the workers summed as "worker"."""
    out: dict[str, float] = {}
    for name, seconds in used.items():
        key = "worker" if name.startswith("worker ") else name
        out[key] = out.get(key, 0.0) + seconds * 1000 / n
    out["total"] = sum(v for k, v in out.items())
    return out
