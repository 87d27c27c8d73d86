"""Redis Sentinel failover mid-run: a master, a replica and three Sentinels; producers enqueue at
a steady rate and payers pay while the master is SIGKILLed. Every process follows the Sentinels to
the new master without a restart; acknowledgements waited for the replica (``WAIT``), so every
accepted job reaches its right state, every callback acknowledged before the kill is applied, and
nothing is created twice. State changes the workers made on the old master may be lost with it:
the lease, the query-before-resend and the reconciler repair them. Flower keeps showing the
workers and their tasks."""

from __future__ import annotations

import threading
import time

import pytest

from worker.domain import states
from worker.waiting import wait_until
from tests.conftest import SENTINEL_GROUP_PASSWORD, SENTINEL_PASSWORD
from tests.reliability.conftest import size
from tests.reliability.support import FAST, autopay, created_twice, wait_settled
from tests.support.flower import Flower
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration
TOKEN = "api-token-failover-3b81"


@pytest.fixture
def ha_stack(sentinel_group, tmp_path):
    stack = Stack(sentinel_group.url, tmp_path, time_factor=0.2, VEXORA_LEASE_SECONDS="5",
                  VEXORA_VISIBILITY_TIMEOUT="10", VEXORA_API_TOKEN=TOKEN,
                  **sentinel_group.env(), **FAST)
    assert stack.settings.min_replicas == 1  # the default with Sentinel
    stack.start(workers=2, concurrency=8, web=True, beat=True)
    stack.flower = Flower(stack)
    try:
        stack.flower.wait_up()
        yield stack
    finally:
        stack.stop()


class Producer(threading.Thread):
    """Enqueues at a steady pace, over HTTP and from Python by turns; a job counts as accepted
    only if the call returned success. Records when each call was answered."""

    def __init__(self, stack, jobs):
        super().__init__(daemon=True)
        self.stack, self.jobs = stack, jobs
        self.accepted: list[tuple[str, float]] = []
        self.refused: list[float] = []

    def run(self):
        for i, job in enumerate(self.jobs):
            try:
                if i % 2:
                    answer = self.stack.http.post(self.stack.web_url + "/v1/checkouts", json=job, timeout=15,
                                                  headers={"Authorization": f"Bearer {TOKEN}"})
                    if answer.status_code != 202:
                        raise RuntimeError(f"HTTP {answer.status_code}")
                    trade_no = answer.json()["tradeNo"]
                else:
                    trade_no = self.stack.enqueue(job)
                self.accepted.append((trade_no, time.monotonic()))
            except Exception:  # noqa: BLE001 - any failure means "not accepted"; counted, not hidden
                self.refused.append(time.monotonic())
            time.sleep(0.03)  # the producers' own steady pace, not a synchronisation


def test_sigkill_the_master_mid_run(ha_stack, sentinel_group, figures):
    stack = ha_stack
    autopay(stack, {"paid": 1.0}, delay=0.5)
    producer = Producer(stack, [payload() for _ in range(size(200, 1000))])
    producer.start()
    wait_until(lambda: len(producer.accepted) >= len(producer.jobs) // 3, timeout=90, what="a third enqueued")

    old, killed_at = sentinel_group.kill_master()
    killed_wall = time.time()
    new = sentinel_group.wait_failover(old, timeout=60)
    promoted_s = time.monotonic() - killed_at
    # With one replica, promoted, no write can be acknowledged as replicated: producers are
    # refused until a replica is back. The killed node's supervisor restarts it; the Sentinels make
    # it a replica of the new master.
    sentinel_group.restart(old)
    wait_until(lambda: any(at > killed_at for _, at in producer.accepted), timeout=60,
               what="a producer's enqueue accepted by the new master")
    accepting_s = min(at for _, at in producer.accepted if at > killed_at) - killed_at
    producer.join(timeout=180)
    assert not producer.is_alive()

    accepted = [t for t, _ in producer.accepted]
    seconds, final = wait_settled(stack, accepted, timeout=size(180, 600))
    lost = [t for t in accepted if final[t] != states.SUCCEEDED]
    twice = created_twice(stack, accepted)
    acked_before = [c for c in _callbacks(stack) if c["delivered"] and c["delivered_at"] < killed_wall]
    unapplied = [c["tradeNo"] for c in acked_before if final.get(c["tradeNo"]) != states.SUCCEEDED]
    repaired = sum(_by_query(stack, t) for t in accepted)
    figures.add("redis failover (sentinel)", jobs=len(accepted), refused_while_failing=len(producer.refused),
                faults=f"master SIGKILLed; promoted after {promoted_s:.1f}s, producers accepted again after "
                       f"{accepting_s:.1f}s; {len(acked_before)} callbacks acknowledged before the kill",
                settled_by_query=repaired, lost=len(lost), created_twice=len(twice), settle_s=seconds)
    assert lost == [], {t: final[t] for t in lost[:5]}
    assert twice == []
    assert unapplied == []
    assert acked_before, "no callback was acknowledged before the kill: the scenario proves nothing"
    assert all(p.alive for p in stack.processes), "every process follows the failover without a restart"
    # Every worker kept consuming after it reconnected (kombu once left a reconnected consumer
    # idle), and Flower, which followed the failover too, shows it: each worker's tasks received
    # after the promotion.
    workers = [p.worker_name for p in stack.processes if getattr(p, "worker_name", None)]
    for name in workers:
        stack.flower.wait_for_worker(name)

    def each_worker_busy_after_failover() -> bool:
        tasks = stack.flower.get("/api/tasks").json().values()
        busy = {t.get("worker") for t in tasks if (t.get("received") or 0) > killed_wall + promoted_s}
        return set(workers) <= busy
    wait_until(each_worker_busy_after_failover, timeout=30, interval=0.5,
               what="Flower to show tasks each worker received after the failover")
    assert new.port != old.port
    logs = stack.logs()
    assert SENTINEL_GROUP_PASSWORD not in logs and SENTINEL_PASSWORD not in logs
    wait_until(lambda: sentinel_group.replicas_online(new) >= 1, timeout=60, what="the old master to rejoin")


def _callbacks(stack) -> list[dict]:
    return stack.http.get(stack.sandbox_url + "/_sandbox/callbacks", timeout=5).json()["callbacks"]


def _by_query(stack, trade_no: str) -> bool:
    return any("query" in str(entry.get("detail", {})) for entry in stack.runtime.store.history(trade_no)
               if entry.get("to") == states.SUCCEEDED)
