"""A Flower process beside a test stack, with basic auth, as it is deployed — the credentials in
its environment (``FLOWER_BASIC_AUTH``, which Flower reads itself), never on its command line:
its API, its task list and its worker pages (what Flower shows of a worker comes from
``inspect`` replies)."""

from __future__ import annotations

import secrets

import requests

from worker.local.redis_server import free_port
from worker.waiting import wait_until
from tests.support.processes import Process, python_cmd
from tests.support.stack import Stack


class Flower:
    """A Flower process of the stack (stopped with it, its log part of ``stack.logs()``)."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(16)
        self.auth = ("ops", self.password)
        self.http = requests.Session()
        self.proc = Process("flower", python_cmd(
            "-m", "celery", "-A", "worker", "flower", "--address=127.0.0.1", f"--port={self.port}"),
            {**stack.env, "FLOWER_BASIC_AUTH": f"ops:{self.password}"}, stack.log_dir / "flower.log").start()
        stack.processes.append(self.proc)  # stopped with the stack, its log part of stack.logs()

    def get(self, path: str, auth=True, **kwargs) -> requests.Response:
        return self.http.get(self.url + path, auth=self.auth if auth is True else auth, timeout=10,
                             **kwargs)

    def wait_up(self) -> None:
        """Until Flower answers its API (it sees only the events sent from then on)."""
        def answering():
            try:
                return self.get("/api/workers").status_code == 200 or not self.proc.alive
            except requests.ConnectionError:
                return False
        wait_until(answering, timeout=30, interval=0.2, what="Flower to answer")
        assert self.proc.alive, self.proc.log()

    def wait_for_worker(self, worker_name: str) -> None:
        def listed():
            if not self.proc.alive:
                return "dead"
            try:
                answer = self.get("/api/workers", params={"refresh": "1"})
            except requests.ConnectionError:
                return False
            return answer.status_code == 200 and worker_name in answer.json()
        wait_until(listed, timeout=30, interval=0.2, what=f"Flower to list {worker_name}")
        assert self.proc.alive, self.proc.log()

    def tasks(self) -> tuple[str, dict]:
        answer = self.get("/api/tasks")
        answer.raise_for_status()
        return answer.text, answer.json()

    def wait_tasks(self, wanted, timeout: float = 15) -> tuple[str, dict]:
        """Poll ``/api/tasks`` until ``wanted(tasks)`` holds; return the last answer's text and JSON."""
        last: list = []

        def seen():
            text, tasks = self.tasks()
            last[:] = [text, tasks]
            return wanted(tasks)
        try:
            wait_until(seen, timeout=timeout, interval=0.1, what="Flower to show the tasks")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; /api/tasks is {last[0] if last else None}") from None
        return last[0], last[1]

    def inspect_worker(self, worker_name: str, wanted, timeout: float = 15) -> tuple[str, dict]:
        """Poll ``/api/workers?refresh=1&workername=<name>`` until ``wanted(entry)`` holds; return
        the last answer's text and the worker's entry.

        With a worker name Flower inspects that worker's tasks too (``active``, ``reserved``,
        ``scheduled``, ``revoked``), as its worker page does; without one it skips them.
        """
        last: list = []

        def seen():
            answer = self.get("/api/workers", params={"refresh": "1", "workername": worker_name})
            answer.raise_for_status()
            last[:] = [answer.text, answer.json().get(worker_name) or {}]
            return wanted(last[1])
        try:
            wait_until(seen, timeout=timeout, interval=0.2, what=f"Flower's inspection of {worker_name}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; /api/workers is {last[0] if last else None}") from None
        return last[0], last[1]

    def worker_page(self, worker_name: str) -> str:
        """The HTML of the worker's page (``/worker/<name>``), from Flower's last inspection."""
        answer = self.get(f"/worker/{worker_name}")
        answer.raise_for_status()
        return answer.text
