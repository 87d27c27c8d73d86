"""The gateway chaos run with RabbitMQ as the broker (issue 14), the job store on Redis: faults and
payers as in test_gateway_chaos, and mid-run one worker SIGKILLed, then the broker node itself
crashed (SIGKILL) and started again on its data. RabbitMQ redelivers what the dead worker held
as soon as its connection is gone; the quorum queues keep every confirmed message through the
node's crash; workers, beat and the web app reconnect by themselves; the gateway resends the
callbacks the web app could not queue meanwhile. Every job must reach the gateway's state, no
tradeNo may be created twice, and nothing may be left in a dead-letter queue but beat's ticks."""

from __future__ import annotations

import random
import time
import uuid

import pytest

from worker.celery import QUEUES, dead_letter_queue
from worker.domain import states
from worker.waiting import wait_until
from tests.reliability.conftest import size
from tests.reliability.support import FAST, autopay, created_twice, enqueue_all, records, wait_expected
from tests.reliability.test_gateway_chaos import PAYERS, QUERY_RATES
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration

# the gateway chaos rates, with slow answers added so that work is in flight at each fault
RATES = {"http_error": 0.10, "slow_after_create": 0.10, "code_5000": 0.05, "drop": 0.05, "latency": 0.30}


@pytest.fixture
def stack(rabbitmq, redis_url, tmp_path):
    vhost = "chaos-" + uuid.uuid4().hex[:6]
    s = Stack(redis_url, tmp_path, VEXORA_BROKER_URL=rabbitmq.vhost(vhost), VEXORA_LEASE_SECONDS="3",
              VEXORA_READ_TIMEOUT="5", **FAST).start(workers=3, concurrency=8, web=True, beat=True)
    s.vhost = vhost
    try:
        yield s
    finally:
        s.stop()
        rabbitmq.ctl("delete_vhost", vhost, check=False)


def test_rabbitmq_chaos_worker_killed_and_broker_restarted(stack, rabbitmq, figures):
    rng = random.Random()
    jobs = [payload() for _ in range(size(150, 800))]
    trade_nos = [job["tradeNo"] for job in jobs]
    stack.http.post(stack.sandbox_url + "/_sandbox/chaos",
                    json={"rates": RATES, "delay": 1.0, "seed": 23,
                          "query": {"rates": QUERY_RATES, "status": 403}}, timeout=5).raise_for_status()
    stack.http.post(stack.sandbox_url + "/_sandbox/callbacks/drop", json={"count": len(jobs) // 10},
                    timeout=5).raise_for_status()
    autopay(stack, PAYERS, delay=0.2)
    started = time.monotonic()
    enqueue_all(stack, jobs)

    # 1. SIGKILL a worker with jobs in flight; a replacement starts
    wait_until(lambda: _past_submit(stack, trade_nos) >= 0.25 * len(jobs), timeout=120,
               what="a quarter of the jobs past their submit")
    in_flight_at_kill = sum(s == states.SUBMITTING for s in records(stack, trade_nos).values())
    victim = rng.choice([p for p in stack.processes if getattr(p, "worker_name", None)])
    victim.kill()
    stack.start_worker(concurrency=8)

    # 2. crash the broker node and start it again (same node, same data)
    wait_until(lambda: _past_submit(stack, trade_nos) >= 0.5 * len(jobs), timeout=120,
               what="half of the jobs past their submit")
    in_flight_at_restart = sum(s == states.SUBMITTING for s in records(stack, trade_nos).values())
    broker_down_s = rabbitmq.restart(crash=True)

    seconds, final, expected = wait_expected(stack, trade_nos, timeout=size(240, 900))
    wrong = {t: (final[t], expected[t]) for t in trade_nos if final[t] != expected[t]}
    twice = created_twice(stack, trade_nos)
    stats = stack.stats()
    queues = rabbitmq.queues(stack.vhost)
    dead = {dead_letter_queue(q): queues.get(dead_letter_queue(q), {}).get("messages", 0) for q in QUEUES}
    figures.add("rabbitmq chaos", jobs=len(jobs), faults=stats["totals"]["faults"],
                callbacks_lost=stats["callbacks"]["dropped"], worker_sigkills=1,
                in_flight_at_kill=in_flight_at_kill, broker_crashes=1, in_flight_at_restart=in_flight_at_restart,
                broker_down_s=broker_down_s,
                dead_letters="/".join(f"{q.split('.')[0]}={n}" for q, n in dead.items()), lost=len(wrong),
                created_twice=len(twice), settle_s=time.monotonic() - started)
    assert wrong == {}, f"{len(wrong)} jobs not in the gateway's state, e.g. {list(wrong.items())[:5]}"
    assert twice == []
    assert all(stats["checkout"][t]["created"] == 1 for t in trade_nos)
    assert None not in expected.values()
    # a dead-lettered submit or callback would have been a job at risk (the reconciler covers it,
    # but it must not happen here); beat's ticks may expire while the node is away
    assert dead["checkout.dead"] == 0 and dead["callbacks.dead"] == 0, dead
    assert seconds > 0


def _past_submit(stack, trade_nos) -> int:
    return sum(s not in (None, states.QUEUED, states.SUBMITTING) for s in records(stack, trade_nos).values())
