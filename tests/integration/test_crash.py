"""A worker SIGKILLed mid-submit: the broker redelivers the message to another worker, which
asks the gateway before sending anything again."""

from __future__ import annotations

import pytest

from worker.domain import states
from worker.waiting import wait_until
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration


@pytest.fixture
def crash_stack(redis_url, tmp_path):
    # A short lease and redelivery so the test runs in seconds; a long read timeout so the
    # worker is still waiting for the gateway's answer when it is killed.
    s = Stack(redis_url, tmp_path, VEXORA_LEASE_SECONDS="2", VEXORA_VISIBILITY_TIMEOUT="3",
              VEXORA_READ_TIMEOUT="30").start(workers=1, concurrency=2)
    try:
        yield s
    finally:
        s.stop()


def test_redelivery_after_a_crash_queries_before_sending_again(crash_stack):
    stack = crash_stack
    first = stack.processes[-1]
    job = payload()
    stack.faults({"kind": "slow_after_create", "delay": 20, "times": 1, "tradeNo": job["tradeNo"]})
    trade_no = stack.enqueue(job)
    wait_until(lambda: stack.sent(trade_no)["created"] == 1, timeout=20, what="the order to be created")
    assert stack.record(trade_no)["state"] == states.SUBMITTING

    first.kill()  # SIGKILL the worker's whole process group while it waits for the answer
    wait_until(lambda: not first.alive, timeout=10, what="the worker to die")
    stack.start_worker(concurrency=2)

    record = stack.wait_state(trade_no, states.PAYING, states.UNKNOWN, timeout=60)
    assert record["state"] == states.PAYING
    assert "lease taken over after expiry" in [h["detail"].get("reason") for h in record["history"]]
    assert stack.sent(trade_no) == {"received": 1, "created": 1, "duplicates": 0, "faults": 1}
    assert stack.stats()["query"][trade_no] >= 1
