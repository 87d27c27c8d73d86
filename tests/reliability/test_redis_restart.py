"""Redis restarted (AOF on) in the middle of a run: producers are refused while it is down,
workers, beat and web reconnect by themselves, callbacks that arrive meanwhile get 503 and succeed
on the gateway's resend, and no job that was accepted is lost."""

from __future__ import annotations

import re
import threading
import time

import pytest

from worker.domain import states
from worker.local.redis_server import RedisServer
from worker.waiting import wait_until
from tests.reliability.conftest import size
from tests.reliability.support import FAST, autopay, created_twice, wait_settled
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration


@pytest.fixture
def outage(tmp_path):
    server = RedisServer(appendonly=True, data_dir=str(tmp_path / "redis")).start()
    # callbacks resent after 0.4 s, 1 s, 2 s, 6 s, then 12 min: the outage fits in between
    stack = Stack(server.url, tmp_path, time_factor=0.2, VEXORA_LEASE_SECONDS="5",
                  VEXORA_VISIBILITY_TIMEOUT="10",
                  VEXORA_LOG_TASKS="true", **FAST,  # the reconciler's runs: counted from Celery's lines
                  ).start(workers=2, concurrency=8, web=True, beat=True)
    try:
        yield stack, server
    finally:
        stack.stop()
        server.cleanup()


class Producer(threading.Thread):
    """Enqueues jobs one after another; a job counts as accepted only if enqueue returned."""

    def __init__(self, stack, jobs):
        super().__init__(daemon=True)
        self.stack, self.jobs = stack, jobs
        self.accepted, self.refused = [], 0

    def run(self):
        for job in self.jobs:
            try:
                self.accepted.append(self.stack.enqueue(job))
            except Exception:  # noqa: BLE001 - any failure means "not accepted"; counted, not hidden
                self.refused += 1
            time.sleep(0.02)  # the producer's own pace, not a synchronisation


def _reconcile_runs(stack) -> int:
    return len(re.findall(r"Task vexora\.reconcile\[[^\]]+\] received", stack.logs()))


def test_redis_restart_mid_run(outage, figures):
    stack, server = outage
    autopay(stack, {"paid": 1.0}, delay=0.5)
    producer = Producer(stack, [payload() for _ in range(size(150, 600))])
    producer.start()
    wait_until(lambda: len(producer.accepted) >= len(producer.jobs) // 3, timeout=60, what="a third enqueued")

    server.stop()  # SIGTERM: Redis writes its AOF and exits
    down_at = time.monotonic()
    wait_until(lambda: producer.refused > 0 and _callbacks_refused(stack) > 0, timeout=30,
               what="a producer refused and a callback answered 503")
    server = RedisServer(port=server.port, appendonly=True, data_dir=server.data_dir).start()
    outage_s = time.monotonic() - down_at
    runs_before = _reconcile_runs(stack)
    producer.join(timeout=120)

    seconds, final = wait_settled(stack, producer.accepted, timeout=size(180, 600))
    lost = [t for t in producer.accepted if final[t] != states.SUCCEEDED]
    twice = created_twice(stack, producer.accepted)
    undelivered = [c for c in _callbacks(stack) if not c["delivered"]]
    figures.add("redis restart", jobs=len(producer.accepted), refused_while_down=producer.refused,
                faults=f"outage {outage_s:.1f}s, {_callbacks_refused(stack)} callbacks got 503",
                lost=len(lost), created_twice=len(twice), settle_s=seconds)
    assert lost == [], {t: final[t] for t in lost[:5]}
    assert twice == [] and undelivered == []
    wait_until(lambda: _reconcile_runs(stack) > runs_before, timeout=30, what="beat to schedule again")
    assert all(p.alive for p in stack.processes)
    server.stop()


def _callbacks(stack) -> list[dict]:
    return stack.http.get(stack.sandbox_url + "/_sandbox/callbacks", timeout=5).json()["callbacks"]


def _callbacks_refused(stack) -> int:
    return sum(c["last_status"] == 503 or c["attempts"] > 1 for c in _callbacks(stack))
