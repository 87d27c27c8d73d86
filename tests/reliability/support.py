"""What the reliability scenarios share: fast-settling settings, expected states from the
sandbox's own records, and counting what was lost or created twice."""

from __future__ import annotations

import time
from decimal import Decimal

from worker.domain import states
from worker.waiting import wait_until

# Settle quickly: short timeouts, a reconciler every second, callbacks resent fast.
FAST = {
    "VEXORA_RECONCILE_INTERVAL": "1",
    "VEXORA_PAYING_QUERY_AFTER": "4",
    "VEXORA_QUEUED_REDRIVE_AFTER": "20",
    "VEXORA_RECONCILE_BACKOFF_BASE": "0.5",
    "VEXORA_RECONCILE_BACKOFF_MAX": "2",
    "VEXORA_RECONCILE_BATCH": "500",
}

SETTLED = {states.SUCCEEDED, states.PARTIALLY_PAID, states.FAILED, states.REJECTED, states.DECLINED}


def expected_state(stack, trade_no: str) -> str | None:
    """The job state the sandbox's own order says it must reach (None: no order, still open, or the
    sandbox's payer has steps left to take on it).

    Written out here rather than taken from ``worker.domain.settlement``: the test states the rule. A
    ``0000`` for less than the order is ``partially_paid`` (flagged); a status nobody documented
    keeps the job open.
    """
    answer = stack.http.get(f"{stack.sandbox_url}/_sandbox/orders/{trade_no}", timeout=10)
    if answer.status_code != 200:
        return None
    order = answer.json()
    if order.get("autopayStepsLeft"):
        return None  # the payer is not done: e.g. a partial payment whose full one is to come
    status = order.get("status")
    if status == "0000":
        paid = Decimal(str(order.get("paidAmount") or order["amount"]))
        return states.SUCCEEDED if paid >= Decimal(order["amount"]) else states.PARTIALLY_PAID
    return {"0001": states.PARTIALLY_PAID, "00029": states.FAILED, "0029": states.FAILED}.get(status)


def wait_expected(stack, trade_nos: list[str], timeout: float) -> tuple[float, dict[str, str | None],
                                                                        dict[str, str | None]]:
    """Seconds until every job is in the state the gateway's record says (or the deadline), the
    final states and the expected ones. Jobs whose expected state is open are not waited for."""
    started = time.monotonic()
    pending = set(trade_nos)

    def caught_up() -> bool:
        current = records(stack, sorted(pending))
        for trade_no, state in current.items():
            if state in SETTLED and state == expected_state(stack, trade_no):
                pending.discard(trade_no)
        return not pending
    try:
        wait_until(caught_up, timeout=timeout, interval=1.0, what="every job to reach the gateway's state")
    except AssertionError:
        pass  # the caller counts what is wrong
    return (time.monotonic() - started, records(stack, trade_nos),
            {t: expected_state(stack, t) for t in trade_nos})


def records(stack, trade_nos: list[str]) -> dict[str, dict]:
    """Every job's record, read with one pipeline."""
    store = stack.runtime.store
    pipe = store.redis.pipeline()
    for trade_no in trade_nos:
        pipe.hget(store.keys.job(trade_no), "state")
    return {t: (s.decode() if s else None) for t, s in zip(trade_nos, pipe.execute())}


def wait_settled(stack, trade_nos: list[str], timeout: float,
                 settled: frozenset | set = SETTLED) -> tuple[float, dict[str, str | None]]:
    """Seconds until every job is in a settled state (or the deadline), and the final states."""
    started = time.monotonic()
    try:
        wait_until(lambda: all(s in settled for s in records(stack, trade_nos).values()),
                   timeout=timeout, interval=0.25, what="every job to settle")
    except AssertionError:
        pass  # the caller counts what did not settle as lost
    return time.monotonic() - started, records(stack, trade_nos)


def created_twice(stack, trade_nos: list[str]) -> list[str]:
    """tradeNos the gateway was asked to create while it already had them, or created twice."""
    counts = stack.stats()["checkout"]
    return [t for t in trade_nos
            if counts.get(t, {}).get("duplicates", 0) or counts.get(t, {}).get("created", 0) > 1]


def autopay(stack, mix: dict, delay: float = 0.2, seed: int = 7) -> None:
    stack.http.post(stack.sandbox_url + "/_sandbox/autopay", json={"mix": mix, "delay": delay, "seed": seed},
                    timeout=5).raise_for_status()


def enqueue_all(stack, jobs: list[dict]) -> list[str]:
    return [stack.enqueue(job) for job in jobs]
