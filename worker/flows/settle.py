"""Applying the gateway's reports to jobs: ``worker.domain.settlement`` decides, the store's move writes.

Every path that learns something from the gateway — the submit's create answer and takeover
query, a callback, the reconciler's query — calls ``Settler.apply``. It reads the job, asks
``settlement.decide`` what the report means for the state it found, and makes the move allowed
only from that state; if another process moved the job in between, it decides again on the new
state. A move to ``succeeded`` counts a success for the payer's IP in the same atomic step, so
every success counts exactly once, whichever path found it. A decision that needs a person sets
``needsReview`` with its reason and a ``needs_review`` event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from worker.domain import settlement
from worker.domain.settlement import Report
from worker.logs import event
from worker.store.jobs import Job, JobStore
from worker.store.limits import IpLimits

__all__ = ["Settler", "UNCHANGED", "ORPHAN", "LEASE_LOST"]

log = logging.getLogger("vexora.settle")

UNCHANGED = "unchanged"
ORPHAN = "orphan"
LEASE_LOST = "lease_lost"
# statuses that report no money: for a tradeNo with no job, an event is enough
_NO_MONEY = frozenset({settlement.PAYING, settlement.FAILED})
_ATTEMPTS = 4  # re-decisions when other processes keep moving the job; each one saw a real move


class Settler:
    """Decides and records what a report means; safe to call any number of times with it."""

    def __init__(self, store: JobStore, limits: IpLimits | None):
        self.store = store
        self.limits = limits

    def apply(self, trade_no: str, report: Report, *, job: Job | None = None,
              extra: Mapping[str, object] | None = None, guard: Mapping[str, object] | None = None,
              via: str | None = None) -> str:
        """Apply ``report``; the state moved to, ``unchanged``, ``orphan`` (no such job) or
        ``lease_lost`` (a ``guard`` lease that another process has claimed since).

        ``job`` is the job as the caller knows it (saves a read; if it is stale, the move is
        refused and the settler reads it). ``extra`` fields are recorded with a move; ``guard`` is
        passed to the store's move (e.g. the lease a submit must still hold).
        """
        for _ in range(_ATTEMPTS):
            job = job or self.store.load(trade_no)
            if job is None:
                if self.orphan(trade_no, report):
                    return ORPHAN
                continue  # the job exists after all: apply the report to it
            decision = settlement.decide(job.state, report, order_amount=job.fields.get("amount"),
                                         paid_so_far=job.fields.get("paidAmount"),
                                         flagged=bool(job.fields.get("needsReview")))
            if decision.target is None:
                token = (guard or {}).get("lease_token")
                if token and (decision.annotate or decision.review) and not self.store.holds_lease(trade_no, token):
                    return LEASE_LOST  # a late holder writes nothing, not even a note or a link
                self._no_move(trade_no, job, report, decision)
                return UNCHANGED
            fields = {**decision.fields, **(extra or {})}
            detail = {"reason": decision.reason, "source": report.source, "status": report.status}
            if via:
                detail["via"] = via  # which process asked (the reconciler, a takeover...)
            for key, name in (("latencyMs", "latencyMs"), ("gatewayCode", "code")):
                if fields.get(key):
                    detail[name] = fields[key]
            if decision.verdict not in ("n/a", "match", "partial"):
                detail["amount"] = decision.verdict
            if decision.review:
                # flagged in the move's own step: never needsReview without a review-queue entry
                fields.update(needsReview=True, reviewReason=decision.review)
                detail["review"] = decision.review
            counters = (self.limits.success_counter(job.fields.get("ipHash"))
                        if decision.count_success and self.limits else [])
            moved = self.store.move(trade_no, decision.target, fields=fields, detail=detail,
                                    allowed_from={job.state}, counters=counters,
                                    drop=["payload"] if decision.purge else [],
                                    increase="paidAmount" if decision.increase else None,
                                    flag=(decision.review, {"source": report.source}) if decision.review else None,
                                    **(guard or {}))
            if moved.lease_lost:
                return LEASE_LOST  # a late lease holder: another process owns the job now
            if moved.applied:
                return decision.target
            if moved.previous == job.state or moved.previous is None:
                # same state, refused by a guard (no more paid, a lost lease) or the job is gone
                return UNCHANGED
            job = None  # moved by someone else meanwhile: decide again on what it is now
        return UNCHANGED

    def orphan(self, trade_no: str, report: Report) -> bool:
        """A report for a tradeNo with no job. Money (a paid or partial status, or one nobody
        documented) is kept for a person — an orphan entry in the review queue, never dropped;
        anything else is an ``orphan_report`` event. False when the job exists after all."""
        kind = "orphan_callback" if report.source == settlement.CALLBACK else "orphan_report"
        if settlement.status_kind(report.status) in _NO_MONEY:
            self.store.note(trade_no, kind, {"source": report.source, "status": report.status})
            return True
        fields = {"source": report.source, "status": report.status}
        if report.paid_amount is not None:
            fields["paidAmount"] = report.paid_amount
        if report.fields.get("platFormTradeNo"):
            fields["platFormTradeNo"] = report.fields["platFormTradeNo"]
        if not self.store.record_orphan(trade_no, fields):
            return False
        self.store.note(trade_no, kind, {"source": report.source, "status": report.status,
                                         "review": "money reported for no job"})
        return True

    def _no_move(self, trade_no: str, job: Job, report: Report, decision: settlement.Decision) -> None:
        if decision.annotate:
            self.store.annotate(trade_no, **decision.annotate)
        if decision.review:
            self.store.flag(trade_no, decision.review, {"source": report.source, "state": job.state})
        event(log, logging.INFO, "report_changes_nothing", tradeNo=trade_no, source=report.source,
              status=report.status, reason=decision.reason, state=job.state)
