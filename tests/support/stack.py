"""The product as real processes for integration tests: sandbox gateway and Celery workers.

Redis is the one the test command started; each stack flushes it first, so a module starts
clean. Payer and secret values here are markers that the tests look for in every log.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from pathlib import Path

import requests

from worker.config.settings import Settings
from worker.local.redis_server import free_port
from worker.runtime.wiring import Runtime
from worker.signing import callback_body
from worker.waiting import wait_until
from worker.web.serve import web_argv

from tests.support.processes import Process, python_cmd

MERCHANT_NO = "M-TEST-0001"
APP_SECRET = "sekret-MARKER-7f3a9c"
MARKERS = {
    "mobile": "09087654321",
    "email": "marker.payer@example.jp",
    "firstname": "マーカー",
    "lastname": "ヤマダ",
}

FAST_RETRIES = {
    "VEXORA_CONNECT_TIMEOUT": "1.0",
    "VEXORA_READ_TIMEOUT": "1.0",
    "VEXORA_RETRY_MAX_ATTEMPTS": "4",
    "VEXORA_RETRY_MAX_SECONDS": "8",
    "VEXORA_RETRY_BASE_DELAY": "0.05",
    "VEXORA_RETRY_MAX_DELAY": "0.2",
}


def payload(**overrides) -> dict:
    """A valid job payload with a fresh tradeNo and the marker payer data."""
    base = {
        "tradeNo": "T" + uuid.uuid4().hex[:20],
        "userId": "user-1",
        "amount": "300",
        "mobile": MARKERS["mobile"],
        "firstname": MARKERS["firstname"],
        "lastname": MARKERS["lastname"],
        "email": MARKERS["email"],
        "channelCode": "EWALLET",
        "wayCode": "PAYPAY",
        "ipAddress": f"8.{random.randrange(1, 255)}.{random.randrange(256)}.{random.randrange(1, 255)}",
        "returnUrl": "https://merchant.example/return",
        "remark": "order 42",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


class Stack:
    """Sandbox + workers on the test Redis; ``stop`` ends every process it started."""

    def __init__(self, redis_url: str, log_dir: Path, time_factor: float = 0.01, *, defaults: bool = False,
                 **env_overrides: str):
        self.log_dir = log_dir
        self.time_factor = str(time_factor)  # the sandbox's callback resend schedule, scaled
        self.sandbox_port = free_port()
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.web_port = free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "VEXORA_BASE_URL": self.sandbox_url,
            "VEXORA_ENV": "sandbox",  # the only switch for the sandbox's relaxations
            "VEXORA_MERCHANT_NO": MERCHANT_NO,
            "VEXORA_APP_SECRET": APP_SECRET,
            "VEXORA_NOTIFY_URL": f"{self.web_url}/vexora/notify",
            "PYTHONUNBUFFERED": "1",
            **({} if defaults else FAST_RETRIES),  # defaults: the shipped timeouts and lease
            **env_overrides,
        }
        self.settings = Settings.from_env(self.env)
        self.runtime = Runtime(self.settings)
        self.processes: list[Process] = []
        self.http = requests.Session()

    # -- processes ------------------------------------------------------------------------
    def start(self, workers: int = 1, concurrency: int = 4, web: bool = False, beat: bool = False) -> "Stack":
        """Start the processes; if one fails to start, stop those already started, then raise
        (the caller never got the stack to stop)."""
        try:
            self.runtime.redis.flushall()
            self.start_sandbox()
            for _ in range(workers):
                self.start_worker(concurrency=concurrency)
            if web:
                self.start_web()
            if beat:
                self.start_beat()
        except BaseException:
            self.stop()
            raise
        return self

    def start_sandbox(self) -> Process:
        proc = self._spawn("sandbox", python_cmd("-m", "worker.cli", "sandbox", "--port", str(self.sandbox_port),
                                               "--time-factor", self.time_factor))
        wait_until(lambda: self._sandbox_up() or _dead(proc), timeout=20, what="sandbox to listen")
        assert proc.alive, proc.log()
        return proc

    def start_worker(self, concurrency: int = 4, queues: str = "checkout,callbacks,reconcile,webhooks") -> Process:
        name = f"w{uuid.uuid4().hex[:6]}@test"
        proc = self._spawn(name, python_cmd("-m", "celery", "-A", "worker", "worker", "-Q", queues,
                                            "--pool", "threads", "-c", str(concurrency), "-n", name,
                                            "--loglevel", "INFO", "--without-gossip", "--without-mingle"))
        wait_until(lambda: self._worker_up(name) or _dead(proc), timeout=40, what=f"worker {name}")
        assert proc.alive, proc.log()
        proc.worker_name = name
        return proc

    def start_web(self) -> Process:
        # gunicorn.conf.py as deployed (its access log included), on a port of its own
        proc = self._spawn("web", python_cmd(*web_argv("--bind", f"127.0.0.1:{self.web_port}",
                                                       "--workers", "2", "--threads", "4")))
        wait_until(lambda: self._up(self.web_url + "/healthz") or _dead(proc), timeout=30, what="web app")
        assert proc.alive, proc.log()
        return proc

    def start_beat(self) -> Process:
        proc = self._spawn("beat", python_cmd("-m", "celery", "-A", "worker", "--quiet", "beat", "--loglevel", "INFO",
                                              "--schedule", str(self.log_dir / "beat-schedule")))
        wait_until(lambda: "beat: Starting" in proc.log() or _dead(proc), timeout=30, what="beat")
        assert proc.alive, proc.log()
        return proc

    def _spawn(self, name: str, cmd: list[str]) -> Process:
        proc = Process(name, cmd, self.env, self.log_dir / f"{name.replace('@', '_')}.log").start()
        self.processes.append(proc)
        return proc

    def _sandbox_up(self) -> bool:
        return self._up(self.sandbox_url + "/_sandbox/stats")

    def _up(self, url: str) -> bool:
        try:
            return self.http.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def _worker_up(self, name: str) -> bool:
        replies = self.runtime.celery.control.ping(destination=[name], timeout=0.5)
        return any(name in reply for reply in replies)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.http.close()

    def logs(self) -> str:
        return "\n".join(proc.log() for proc in self.processes)

    # -- sandbox control ------------------------------------------------------------------
    def faults(self, *rules: dict) -> None:
        self.http.delete(self.sandbox_url + "/_sandbox/faults", timeout=5).raise_for_status()
        if rules:
            self.http.post(self.sandbox_url + "/_sandbox/faults", json={"faults": list(rules)},
                           timeout=5).raise_for_status()

    def drop_callbacks(self, trade_no: str) -> None:
        """Make the sandbox lose every callback of this tradeNo."""
        self.http.post(self.sandbox_url + "/_sandbox/callbacks/drop", json={"tradeNo": trade_no},
                       timeout=5).raise_for_status()

    def set_gateway_status(self, trade_no: str, status: str, paid_amount: str | None = None) -> None:
        """The payer's outcome at the gateway (it sends its callback, unless dropped)."""
        body = {"status": status, "message": "set by test"}
        if paid_amount:
            body["paidAmount"] = paid_amount
        self.http.post(f"{self.sandbox_url}/_sandbox/orders/{trade_no}/status", json=body,
                       timeout=5).raise_for_status()

    def stats(self) -> dict:
        return self.http.get(self.sandbox_url + "/_sandbox/stats", timeout=5).json()

    def sent(self, trade_no: str) -> dict:
        """The sandbox's counts for one tradeNo (zeros when it never saw it)."""
        empty = {"received": 0, "created": 0, "duplicates": 0, "faults": 0}
        return {**empty, **self.stats()["checkout"].get(trade_no, {})}

    def callback_fields(self, trade_no: str, status: str = "0000", amount: str = "300.00", **extra: str) -> dict:
        """The fields of a callback as the gateway sends them, unsigned (``amount`` verbatim).

        ``platFormTradeNo`` is the one the job holds (the gateway's id for it), else made up: a
        callback naming another id than the job's is never applied."""
        store = self.runtime.store
        held = store.redis.hget(store.keys.job(trade_no), "platFormTradeNo")
        return {"platFormTradeNo": held.decode() if held else "p-" + trade_no[-8:],
                "tradeNo": trade_no, "amount": amount,
                "status": status, "message": {"0000": "Success", "0001": "Partially paid",
                                              "0015": "Paying"}.get(status, "Failed"),
                "timestamp": str(int(time.time() * 1000)), **extra}

    def callback(self, trade_no: str, status: str = "0000", amount: str = "300.00", *,
                 secret: str = APP_SECRET, **extra: str) -> bytes:
        """A callback body as the gateway sends it: signed, ``amount`` a raw JSON number."""
        return callback_body(self.callback_fields(trade_no, status, amount, **extra), secret)

    def notify(self, body: bytes) -> requests.Response:
        """POST a callback body to the web app, as the gateway would."""
        return self.http.post(self.web_url + "/vexora/notify", data=body,
                              headers={"Content-Type": "application/json"}, timeout=15)

    # -- jobs -----------------------------------------------------------------------------
    def enqueue(self, job: dict) -> str:
        from worker.client import enqueue_checkout
        return enqueue_checkout(job, runtime=self.runtime)

    def enqueue_for(self, account: str, job: dict) -> str:
        """A job of the merchant account ``account``."""
        from worker.client import enqueue_checkout
        return enqueue_checkout(job, account=account, runtime=self.runtime)

    def paying(self, **overrides) -> str:
        """A new job (``payload(**overrides)``) taken as far as ``paying``; its tradeNo."""
        from worker.domain import states
        trade_no = self.enqueue(payload(**overrides))
        self.wait_state(trade_no, states.PAYING)
        return trade_no

    def unsettled(self) -> str:
        """A job the reconciler cannot settle: ``unknown`` (a 5000 after the order was created),
        then past its horizon, so it is flagged for a person; its tradeNo."""
        from worker.domain import states
        from worker.flows.reconcile import Reconciler
        job = payload()
        self.faults({"tradeNo": job["tradeNo"], "kind": "code_5000", "create": True})
        trade_no = self.enqueue(job)
        self.wait_state(trade_no, states.UNKNOWN)
        rt = self.runtime
        Reconciler(self.settings.replace(reconcile_horizon=0), rt.store, rt.gateway, lambda t: None, rt.settler).run()
        return trade_no

    def record(self, trade_no: str) -> dict | None:
        return self.runtime.store.get(trade_no)

    def wait_state(self, trade_no: str, *wanted: str, timeout: float = 30.0) -> dict:
        """Poll the store until the job is in one of ``wanted``; return its record."""
        def reached():
            record = self.record(trade_no)
            return record if record and record["state"] in wanted else None
        try:
            return wait_until(reached, timeout=timeout, what=f"{trade_no} to reach {wanted}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; record is {self.record(trade_no)}") from None


def _dead(proc: Process) -> bool:
    return not proc.alive
