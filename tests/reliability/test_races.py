"""Races: the same tradeNo enqueued by ten producers at once, and the same callback delivered ten
times at once — one job, one create, one transition, every time."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from worker.domain import states
from worker.domain.errors import DuplicateTradeNoError
from worker.waiting import wait_until
from tests.reliability.conftest import size
from tests.reliability.support import created_twice, records
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration

PRODUCERS = 10


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    s = Stack(redis_url, tmp_path_factory.mktemp("races")).start(workers=2, concurrency=8, web=True)
    try:
        yield s
    finally:
        s.stop()


def at_once(calls):
    """Run the calls in threads released together by a barrier; results or raised errors."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - the test inspects each outcome
            return exc
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def queued_events(stack, trade_no) -> int:
    return sum(1 for _, e in stack.runtime.store.events(count=1_000_000)
               if e["tradeNo"] == trade_no and e["to"] == states.QUEUED)


def test_ten_producers_one_trade_no(stack, figures):
    rounds = size(20, 100)
    jobs = [payload() for _ in range(rounds)]
    refused_total = 0
    for job in jobs:
        same = at_once([lambda: stack.enqueue(dict(job))] * PRODUCERS)
        assert same == [job["tradeNo"]] * PRODUCERS
        different = payload(tradeNo="R" + job["tradeNo"][1:])
        outcomes = at_once([lambda n=n: stack.enqueue({**different, "amount": str(100 + n)})
                            for n in range(PRODUCERS)])
        winners = [o for o in outcomes if o == different["tradeNo"]]
        refused = [o for o in outcomes if isinstance(o, DuplicateTradeNoError)]
        assert len(winners) == 1 and len(refused) == PRODUCERS - 1, outcomes
        refused_total += len(refused)
    trade_nos = [j["tradeNo"] for j in jobs] + ["R" + j["tradeNo"][1:] for j in jobs]
    wait_until(lambda: all(s == states.PAYING for s in records(stack, trade_nos).values()), timeout=120,
               what="every job to get its payment link")
    sent = stack.stats()["checkout"]
    twice = created_twice(stack, trade_nos)
    figures.add("races: 10 producers", rounds=rounds, jobs=len(trade_nos),
                producers=PRODUCERS * 2 * rounds, refused_as_duplicates=refused_total,
                lost=0, created_twice=len(twice))
    assert twice == []
    assert all(sent[t]["received"] == 1 for t in trade_nos)
    assert all(queued_events(stack, t) == 1 for t in trade_nos)


def test_ten_concurrent_deliveries_of_one_callback(stack, figures):
    rounds = size(20, 100)
    transitions = []
    for _ in range(rounds):
        trade_no = stack.enqueue(payload())
        stack.wait_state(trade_no, states.PAYING)
        body = stack.callback(trade_no, "0000")
        answers = at_once([lambda: stack.notify(body).text] * PRODUCERS)
        assert answers == ["OK"] * PRODUCERS
        stack.wait_state(trade_no, states.SUCCEEDED)
        transitions.append(trade_no)
    # every delivery was queued; let the worker drain them before counting transitions
    marker = stack.enqueue(payload())
    stack.wait_state(marker, states.PAYING)
    stack.notify(stack.callback(marker, "0000"))
    stack.wait_state(marker, states.SUCCEEDED)
    counts = [sum(h["to"] == states.SUCCEEDED for h in stack.runtime.store.history(t)) for t in transitions]
    figures.add("races: 10 deliveries", rounds=rounds, deliveries=rounds * PRODUCERS,
                transitions=sum(counts), extra_transitions=sum(counts) - rounds)
    assert counts == [1] * rounds
