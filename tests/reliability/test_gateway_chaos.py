"""Gateway chaos: 5xx, slow answers after the order was created, 5000s, dropped connections and
lost callbacks, all at once. Every job must reach the state the gateway's own record says, and
no tradeNo may be created twice."""

from __future__ import annotations

import pytest

from tests.reliability.conftest import size
from tests.reliability.support import FAST, autopay, created_twice, enqueue_all, expected_state, wait_settled
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration

RATES = {"http_error": 0.20, "slow_after_create": 0.10, "code_5000": 0.05, "drop": 0.05}


@pytest.fixture
def stack(redis_url, tmp_path):
    s = Stack(redis_url, tmp_path, **FAST).start(workers=2, concurrency=16, web=True, beat=True)
    try:
        yield s
    finally:
        s.stop()


def test_gateway_chaos_every_job_right_none_twice_none_lost(stack, figures):
    jobs = [payload() for _ in range(size(200, 1000))]
    trade_nos = [job["tradeNo"] for job in jobs]
    lost_callbacks = len(jobs) // 10
    stack.http.post(stack.sandbox_url + "/_sandbox/chaos",
                    json={"rates": RATES, "delay": 2.0, "seed": 11}, timeout=5).raise_for_status()
    stack.http.post(stack.sandbox_url + "/_sandbox/callbacks/drop", json={"count": lost_callbacks},
                    timeout=5).raise_for_status()
    autopay(stack, {"paid": 0.8, "partial": 0.05, "failed": 0.15}, delay=0.2)

    enqueue_all(stack, jobs)
    seconds, final = wait_settled(stack, trade_nos, timeout=size(240, 900))

    wrong = {t: (final[t], expected_state(stack, t)) for t in trade_nos if final[t] != expected_state(stack, t)}
    lost = [t for t in trade_nos if final[t] is None or t in wrong]
    twice = created_twice(stack, trade_nos)
    stats = stack.stats()
    figures.add("gateway chaos", jobs=len(jobs), faults=stats["totals"]["faults"],
                callbacks_lost=stats["callbacks"]["dropped"], lost=len(lost), created_twice=len(twice),
                settle_s=seconds)
    assert wrong == {}, f"{len(wrong)} jobs not in the gateway's state, e.g. {list(wrong.items())[:5]}"
    assert twice == []
    assert stats["totals"]["faults"] > 0 and stats["callbacks"]["dropped"] == lost_callbacks
    assert all(stats["checkout"][t]["created"] == 1 for t in trade_nos)
