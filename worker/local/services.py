"""Local processes for the demo and ``--serve``: start each in its own process group with its
output in a log file, wait until it answers, and stop every one of them for sure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import requests

from worker.waiting import wait_until

__all__ = ["Service", "Services", "http_ok"]


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False
    return check


class Service:
    """One child process in its own session; its whole process group is signalled on stop."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path, *,
                 log_path: Path | None = None, cwd: Path | None = None):
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path or log_dir / f"{name}.log"
        self.cwd = cwd
        self.popen: subprocess.Popen | None = None

    def start(self) -> "Service":
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          cwd=str(self.cwd) if self.cwd else None)
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, ready: Callable[[], bool], timeout: float = 60) -> None:
        wait_until(lambda: ready() or not self.alive, timeout=timeout, what=f"{self.name} to start")
        if not self.alive:
            tail = self.log()[-2000:]
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a Celery worker or gunicorn has children)."""
        if self.alive:
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 20) -> None:
        if not self.alive:
            return
        self.kill(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.popen.wait(timeout)


class Services:
    """The processes one command started; ``stop_all`` ends them in reverse order."""

    def __init__(self, env: Mapping[str, str], log_dir: Path):
        self.env = dict(env)
        self.log_dir = log_dir
        self.started: list[Service] = []

    def start(self, name: str, *args: str, ready: Callable[[], bool] | None = None,
              timeout: float = 60, env: Mapping[str, str] | None = None) -> Service:
        """``env``: variables for this process only (a credential it reads, never an argument)."""
        service = Service(name, [sys.executable, *args], {**self.env, **(env or {})}, self.log_dir).start()
        self.started.append(service)
        if ready is not None:
            service.wait_ready(ready, timeout)
        return service

    def stop_all(self) -> None:
        for service in reversed(self.started):
            try:
                service.stop()
            except ProcessLookupError:
                pass
        self.started.clear()
