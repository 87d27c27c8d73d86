"""Applying the gateway's payment notifications (docs/gateway.md §Callbacks (notify)) to jobs, exactly once.

``CallbackProcessor.apply(fields)`` takes verified callback fields (the web endpoint checked the
signature and the schema) and hands them to ``worker.flows.settle`` as a report: the same rules as a
query or a create answer decide the move (``worker.domain.settlement``). Exactly once comes from the
store: a move is atomic and forward-only, so the gateway's resends, duplicates delivered
concurrently and late callbacks change nothing. A callback for an unknown ``tradeNo`` is an orphan
event; one that reports money is also kept in the review queue (``Settler.orphan``); conflicts (paid for a job closed unpaid, unrecognised statuses, amounts that differ)
are flagged for review, never applied.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from worker.domain import settlement
from worker.domain.settlement import Report
from worker.flows.settle import ORPHAN, Settler
from worker.store.jobs import JobStore

__all__ = ["CallbackProcessor"]

log = logging.getLogger("vexora.callbacks")


class CallbackProcessor:
    """Moves jobs on callbacks; safe to call any number of times with the same callback."""

    def __init__(self, store: JobStore, settler: Settler):
        self.store = store
        self.settler = settler

    def apply(self, callback: Mapping[str, object]) -> str:
        """Apply one callback; return what happened: the new state, ``unchanged`` or ``orphan``."""
        trade_no = str(callback["tradeNo"])
        status = str(callback["status"])
        job = self.store.load(trade_no)
        if job is None:
            # money for a tradeNo with no job goes to the review queue, never dropped (settle.orphan)
            orphan = Report(settlement.CALLBACK, status, _text(callback.get("amount")),
                            {"platFormTradeNo": _text(callback.get("platFormTradeNo"))})
            if self.settler.orphan(trade_no, orphan):
                return ORPHAN
            job = self.store.load(trade_no)  # created meanwhile: applied to it below
        fields = {"message": str(callback.get("message") or ""), "callbackAt": self.store.now_ms()}
        if callback.get("platFormTradeNo"):
            fields["platFormTradeNo"] = str(callback["platFormTradeNo"])
        report = Report(settlement.CALLBACK, status, _text(callback.get("amount")), fields)
        return self.settler.apply(trade_no, report, job=job)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
