"""Webhook delivery under a bad receiver and a dying worker: every event of every job reaches the
merchant's receiver, verified, none lost.

The receiver (worker.sandbox.receiver, verifying with `standardwebhooks`) answers 503 to the
first attempt of every message, goes away for a few seconds mid-run, and one of the two workers
is SIGKILLed while deliveries are in flight. The truth is the store: every move a merchant acts on
recorded an event (its sequence in the job's history); each must arrive at least once.
"""

from __future__ import annotations

import threading
import time

import pytest

from worker.domain import states
from worker.local.redis_server import free_port
from worker.sandbox.receiver import make_receiver
from worker.store.jobs import WEBHOOK_STATES
from worker.waiting import wait_until
from worker.webhooks.signing import new_secret
from tests.reliability.conftest import size
from tests.reliability.support import FAST, autopay, enqueue_all
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration


def expected_events(stack, trade_nos) -> set[tuple[str, str]]:
    """(tradeNo, type) for every move into a state a merchant acts on, and every review flag."""
    out = set()
    for trade_no in trade_nos:
        for entry in stack.runtime.store.history(trade_no):
            if entry["to"] in WEBHOOK_STATES:
                out.add((trade_no, f"checkout.{entry['to']}"))
            if entry["detail"].get("kind") == "needs_review":
                out.add((trade_no, "checkout.needs_review"))
    return out


def test_every_event_reaches_the_receiver_through_503s_downtime_and_a_killed_worker(redis_url, tmp_path, figures):
    secret, port = new_secret(), free_port()
    receiver = make_receiver("127.0.0.1", port, secrets=[secret], path="/webhooks")
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    stack = Stack(redis_url, tmp_path, VEXORA_WEBHOOK_URL=url + "/webhooks", VEXORA_WEBHOOK_SECRET=secret,
                  VEXORA_WEBHOOK_ALLOW_PRIVATE="true", VEXORA_WEBHOOK_RETRY_SCHEDULE="0.5,1,1,2,2,3,5",
                  VEXORA_WEBHOOK_DISPATCH_INTERVAL="0.5", VEXORA_WEBHOOK_CLAIM_SECONDS="5",
                  VEXORA_LEASE_SECONDS="4", VEXORA_VISIBILITY_TIMEOUT="6", **FAST)
    try:
        stack.start(workers=2, concurrency=8, web=True, beat=True)
        stack.http.post(url + "/_receiver/faults", json={"fail_first": 1, "status": 503}, timeout=5)
        autopay(stack, {"paid": 0.7, "failed": 0.2, "partial": 0.1}, delay=0.3)
        jobs = [payload() for _ in range(size(100, 500))]
        trade_nos = enqueue_all(stack, jobs)
        started = time.monotonic()
        wait_until(lambda: len(stack.http.get(url + "/_receiver/events", timeout=10).json()) >= len(jobs) // 3,
                   timeout=120, what="a third of the events")
        stack.http.post(url + "/_receiver/faults", json={"down_for": 3}, timeout=5)
        victim = next(p for p in stack.processes if getattr(p, "worker_name", None))
        victim.kill()
        stack.start_worker(concurrency=8)

        def arrived() -> set[tuple[str, str]]:
            return {(e["tradeNo"], e["type"]) for e in stack.http.get(url + "/_receiver/events", timeout=10).json()}

        def settled() -> bool:
            final = {states.SUCCEEDED, states.FAILED, states.PARTIALLY_PAID}
            return all((stack.record(t) or {}).get("state") in final for t in trade_nos)
        try:
            wait_until(lambda: settled() and expected_events(stack, trade_nos) <= arrived(), timeout=size(180, 600),
                       interval=1.0, what="every event at the receiver")
        except AssertionError:
            pass  # counted below as lost
        expected, got = expected_events(stack, trade_nos), arrived()
        stats = stack.http.get(url + "/_receiver/stats", timeout=10).json()
        events = stack.http.get(url + "/_receiver/events", timeout=10).json()
        lost = expected - got
        figures.add("webhooks", jobs=len(jobs), events=len(expected), delivered=len(expected & got),
                    retried=sum(1 for e in events if e["attempt"] > 1), duplicates=stats["duplicates"],
                    rejected=stats["rejected"], lost=len(lost), faults="503 on each first attempt, "
                    "3 s down, 1 SIGKILL", settle_s=time.monotonic() - started)
        assert lost == set(), f"{len(lost)} events never arrived, e.g. {sorted(lost)[:5]}"
        assert stats["rejected"] == 0
    finally:
        stack.stop()
        receiver.shutdown()
        receiver.server_close()
