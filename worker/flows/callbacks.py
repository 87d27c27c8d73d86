"""Applying the gateway's payment notifications (docs/gateway.md §Callbacks (notify)) to jobs, exactly once.

``CallbackProcessor.apply(fields)`` takes verified callback fields (the web endpoint checked the
signature and the schema) and hands them to ``worker.flows.settle`` as a report: the same rules as a
query or a create answer decide the move (``worker.domain.settlement``). Exactly once comes from the
store: a move is atomic and forward-only, so the gateway's resends, duplicates delivered
concurrently and late callbacks change nothing. A callback for an unknown ``tradeNo`` is an orphan
event; one that reports money is also kept in the review queue (``Settler.orphan``); conflicts (paid for a job closed unpaid, unrecognised statuses, amounts that differ)
are flagged for review, never applied.

The web endpoint verified the callback with one merchant account's secret and sends that account
as ``account`` beside the fields (absent in messages from before accounts). A job of another
account is never moved by it (``account_mismatch``): the web app found no job for the tradeNo,
checked the signature against every account's secrets, and the job was created meanwhile for
another account than the one whose secret signed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from worker.domain import settlement
from worker.domain.access import DEFAULT_ACCOUNT
from worker.domain.settlement import Report
from worker.flows.settle import ORPHAN, Settler
from worker.logs import event
from worker.store.jobs import JobStore

__all__ = ["CallbackProcessor", "PLATFORM_MISMATCH", "ACCOUNT_MISMATCH", "platform_mismatch"]

log = logging.getLogger("vexora.callbacks")

PLATFORM_MISMATCH = "platform_mismatch"  # apply()'s answer, and the callbacks_total result
ACCOUNT_MISMATCH = "account_mismatch"  # signed for another account than the job's: not applied


class CallbackProcessor:
    """Moves jobs on callbacks; safe to call any number of times with the same callback."""

    def __init__(self, store: JobStore, settler: Settler, meter=None):
        self.store = store
        self.settler = settler
        self.meter = meter  # worker.ops.metrics.Meter, or None (metrics off)

    def apply(self, callback: Mapping[str, object]) -> str:
        """Apply one callback; return what happened: the new state, ``unchanged``, ``orphan`` or
        ``platform_mismatch`` (it names another ``platFormTradeNo`` than the job holds)."""
        trade_no = str(callback["tradeNo"])
        status = str(callback["status"])
        signed_for = callback.get("account")  # the account whose secret the web app verified
        job = self.store.load(trade_no)
        if job is None:
            # money for a tradeNo with no job goes to the review queue, never dropped (settle.orphan)
            orphan = Report(settlement.CALLBACK, status, _text(callback.get("amount")),
                            {"platFormTradeNo": _text(callback.get("platFormTradeNo"))})
            if self.settler.orphan(trade_no, orphan):
                return ORPHAN
            job = self.store.load(trade_no)  # created meanwhile: applied to it below
        account = str(job.fields.get("account") or DEFAULT_ACCOUNT)
        if signed_for is not None and str(signed_for) != account:
            event(log, logging.WARNING, "callback_refused", tradeNo=trade_no,
                  reason="signed for another account than the job's: not applied")
            if self.meter is not None:
                self.meter.inc("callbacks_total", result=ACCOUNT_MISMATCH, account=account)
            return ACCOUNT_MISMATCH
        given, held = _text(callback.get("platFormTradeNo")), job.fields.get("platFormTradeNo")
        if platform_mismatch(held, given):
            return self._mismatch(trade_no, status, given, held, account)
        fields = {"message": str(callback.get("message") or ""), "callbackAt": self.store.now_ms()}
        if given:
            fields["platFormTradeNo"] = given
        report = Report(settlement.CALLBACK, status, _text(callback.get("amount")), fields)
        return self.settler.apply(trade_no, report, job=job)

    def _mismatch(self, trade_no: str, status: str, given: str | None, held: str, account: str) -> str:
        """A signed callback that names another gateway id than the one the job holds: nothing
        applied; in front of a person (a resend of it flags once), and counted."""
        self.store.flag(trade_no, f"a signed callback named platFormTradeNo {given}, but the gateway "
                                  f"gave this job {held}: not applied",
                        {"source": settlement.CALLBACK, "check": "platFormTradeNo", "status": status,
                         "platFormTradeNo": given, "held": held})
        if self.meter is not None:
            self.meter.inc("callbacks_total", result=PLATFORM_MISMATCH, account=account)
        return PLATFORM_MISMATCH


def platform_mismatch(held: object, given: object) -> bool:
    """True when a callback's ``platFormTradeNo`` contradicts the one the job already holds.

    A job that holds none yet (its create answer was lost) accepts the callback's, as the first
    word from the gateway about it; a callback without one cannot contradict (the schema requires
    it anyway)."""
    return bool(held) and bool(given) and str(given) != str(held)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
