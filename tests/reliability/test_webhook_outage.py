"""Webhooks through an outage of the dispatcher (beat) and the webhook worker under steady load
(issue 20, finding 3): every event of every job reaches the merchant's receiver, none lost.

Jobs are enqueued at a steady rate the whole time; a while in, beat and the webhook worker are
stopped, so nothing reads the outbox while events keep being recorded — far more of them than
``VEXORA_EVENTS_MAXLEN`` (set small for the test). An ``XADD ... MAXLEN`` cap trimmed such unread
entries, losing their events with nothing pending; the streams are now trimmed only below what
every consumer group has acknowledged. Then beat and a webhook worker start again, and the
backlog is drained. The truth is the store: every move a merchant acts on recorded an event.
"""

from __future__ import annotations

import threading
import time

import pytest

from worker.local.redis_server import free_port
from worker.sandbox.receiver import make_receiver
from worker.waiting import wait_until
from worker.webhooks.signing import new_secret
from tests.reliability.conftest import size
from tests.reliability.support import FAST, SETTLED, autopay
from tests.reliability.test_webhook_delivery import expected_events
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration

MAXLEN = 20  # far below what the outage leaves unread


def unread(client, outbox: str) -> int:
    """Entries of the outbox the dispatcher's group has not acknowledged (delivered or not)."""
    groups = {g["name"].decode(): g for g in client.xinfo_groups(outbox)}
    group = groups["dispatch"]
    last = group["last-delivered-id"].decode()
    return int(group["pending"]) + len(client.xrange(outbox, min="(" + last, max="+"))


def test_every_event_arrives_after_the_dispatcher_and_the_webhook_worker_were_down(redis_url, tmp_path, figures):
    secret, port = new_secret(), free_port()
    receiver = make_receiver("127.0.0.1", port, secrets=[secret], path="/webhooks")
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    stack = Stack(redis_url, tmp_path, VEXORA_WEBHOOK_URL=url + "/webhooks", VEXORA_WEBHOOK_SECRET=secret,
                  VEXORA_WEBHOOK_ALLOW_PRIVATE="true", VEXORA_WEBHOOK_RETRY_SCHEDULE="0.5,1,1,2,2,3,5",
                  VEXORA_WEBHOOK_DISPATCH_INTERVAL="0.5", VEXORA_WEBHOOK_CLAIM_SECONDS="5",
                  VEXORA_EVENTS_MAXLEN=str(MAXLEN), VEXORA_LEASE_SECONDS="4", VEXORA_VISIBILITY_TIMEOUT="6",
                  **FAST)
    rate, seconds = size(8, 20), size(16, 60)  # jobs per second, seconds of load
    outage = (3.0, seconds - 2.0)  # from, until (seconds into the load)
    trade_nos: list[str] = []
    stop = threading.Event()
    try:
        stack.start(workers=0, web=True)
        stack.start_worker(concurrency=8, queues="checkout,callbacks,reconcile")
        webhooks = stack.start_worker(concurrency=8, queues="webhooks")
        beat = stack.start_beat()
        autopay(stack, {"paid": 0.7, "failed": 0.2, "partial": 0.1}, delay=0.3)

        def load():
            started = time.monotonic()
            for i in range(rate * seconds):
                due = started + i / rate
                while not stop.is_set() and time.monotonic() < due:
                    stop.wait(min(0.05, max(0.0, due - time.monotonic())))
                if stop.is_set():
                    return
                trade_nos.append(stack.enqueue(payload()))
        loader = threading.Thread(target=load, daemon=True)
        began = time.monotonic()
        loader.start()
        wait_until(lambda: time.monotonic() - began >= outage[0], timeout=outage[0] + 5, interval=0.1,
                   what="the outage's start")
        beat.stop()
        webhooks.stop()
        down_at = time.monotonic()
        outbox = stack.runtime.webhook_dispatcher.outbox
        wait_until(lambda: time.monotonic() - began >= outage[1], timeout=seconds + 5, interval=0.2,
                   what="the outage's end")
        # what the outage left unread: far over the cap, all of it still there
        left = unread(stack.runtime.redis, outbox)
        backlog = stack.runtime.redis.xlen(outbox)
        stack.start_worker(concurrency=8, queues="webhooks")
        stack.start_beat()
        down_s = time.monotonic() - down_at
        loader.join(timeout=seconds + 30)
        assert not loader.is_alive()

        def arrived() -> set[tuple[str, str]]:
            return {(e["tradeNo"], e["type"]) for e in receiver.inbox.events()}

        def settled() -> bool:
            return all((stack.record(t) or {}).get("state") in SETTLED for t in trade_nos)
        resumed = time.monotonic()
        try:
            wait_until(lambda: settled() and expected_events(stack, trade_nos) <= arrived(), timeout=size(90, 300),
                       interval=1.0, what="every event at the receiver")
        except AssertionError:
            pass  # counted below as lost
        expected, got = expected_events(stack, trade_nos), arrived()
        lost = expected - got
        stats = receiver.inbox.stats()
        figures.add("webhook outage", jobs=len(trade_nos), events=len(expected), delivered=len(expected & got),
                    lost=len(lost), duplicates=stats["duplicates"], unread_at_restart=left,
                    events_maxlen=MAXLEN, faults=f"beat and webhook worker stopped {down_s:.0f} s under load",
                    catch_up_s=time.monotonic() - resumed)
        assert lost == set(), f"{len(lost)} events never arrived, e.g. {sorted(lost)[:5]}"
        assert backlog > 5 * MAXLEN, backlog  # the outage did leave a backlog, far over the cap
        assert stats["rejected"] == 0
        # and the dispatcher has read everything
        assert unread(stack.runtime.redis, outbox) == 0
    finally:
        stop.set()
        stack.stop()
        receiver.shutdown()
        receiver.server_close()
