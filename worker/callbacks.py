"""Applying the gateway's payment notifications (GATEWAY.md §4) to jobs, exactly once.

``CallbackProcessor.apply(fields)`` takes verified callback fields (the web endpoint checked the
signature and the schema) and moves the job: ``0000`` succeeded, ``0001`` partially paid, ``0015``
still paying, anything else failed. Exactly once comes from the store: a move is atomic and
forward-only, so the gateway's resends, duplicates delivered concurrently and late callbacks
change nothing. A callback for an unknown ``tradeNo`` is kept as an orphan event; a paid outcome
for a job already closed otherwise is flagged for review, never applied.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from worker import outcomes, states
from worker.limits import IpLimits
from worker.store import JobStore

__all__ = ["CallbackProcessor"]

log = logging.getLogger("vexora.callbacks")

_CLOSED_UNPAID = frozenset({states.FAILED, states.DECLINED, states.REJECTED})


def _amount(value: object) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


class CallbackProcessor:
    """Moves jobs on callbacks; safe to call any number of times with the same callback."""

    def __init__(self, store: JobStore, limits: IpLimits):
        self.store = store
        self.limits = limits

    def apply(self, callback: Mapping[str, object]) -> str:
        """Apply one callback; return what happened: the new state, ``unchanged`` or ``orphan``."""
        trade_no = str(callback["tradeNo"])
        status = str(callback["status"])
        detail = {"reason": "callback", "status": status}
        job = self.store.load(trade_no)
        if job is None:
            self.store.note(trade_no, "orphan_callback", detail)
            return "orphan"
        target = outcomes.status_state(status)
        fields = {"gatewayStatus": status, "message": str(callback.get("message") or "")}
        if callback.get("platFormTradeNo"):
            fields["platFormTradeNo"] = str(callback["platFormTradeNo"])
        if status in {outcomes.PAID, outcomes.PARTIAL}:
            fields["paidAmount"] = str(callback.get("amount"))
            if self._amount_mismatch(job.fields.get("amount"), callback.get("amount"), status):
                fields["amountMismatch"] = True
                detail["amountMismatch"] = True
        if target in {states.SUCCEEDED, states.PARTIALLY_PAID, states.FAILED}:
            fields["callbackAt"] = self.store.now_ms()
        counters = self.limits.success_counter(job.fields.get("ipHash")) if target == states.SUCCEEDED else []
        moved = self.store.move(trade_no, target, fields=fields, detail=detail, counters=counters,
                                drop=["payload"])
        if moved.applied:
            return target
        if target in {states.SUCCEEDED, states.PARTIALLY_PAID} and moved.previous in _CLOSED_UNPAID:
            # Money may have moved for a job we consider closed: a person must look.
            self.store.annotate(trade_no, needsReview=True)
            self.store.note(trade_no, "conflicting_callback", {**detail, "state": moved.previous})
        return "unchanged"

    @staticmethod
    def _amount_mismatch(requested: object, paid: object, status: str) -> bool:
        want, got = _amount(requested), _amount(paid)
        if want is None or got is None:
            return True
        return got != want if status == outcomes.PAID else not (0 < got < want)
