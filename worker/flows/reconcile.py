"""The reconciler: settles what nobody is waiting on any more, by asking the gateway.

Run by Celery beat as ``vexora.reconcile`` (one run at a time, under a Redis lock). Each run:
- ``unknown`` jobs: query the gateway. Known → take its status. Not known (a query ``8000`` whose
  message says the order does not exist) → the checkout never reached it: re-drive the submit
  once (it queries again before sending). A job whose last create the gateway refused (``8000``)
  after an ambiguous attempt is re-driven too, until ``refused_review_after`` checks: then it is
  flagged for review and no longer re-sent (it is still queried).
- a query refused with any other ``8000`` (a sign error...) is no answer: the job stays as it is
  and is asked again on its backoff; after ``refused_review_after`` checks it is flagged.
- ``paying`` and ``partially_paid`` jobs with no callback after ``paying_query_after``: query;
  what it reports goes through ``worker.domain.settlement`` like any other report (an unrecognised
  status keeps the job open and flags it; a final one settles it).
- ``submitting`` jobs whose lease expired (the worker died or froze: its heartbeat stopped) and
  ``queued`` jobs older than ``queued_redrive_after`` (their message never reached the broker):
  queue the submit again; the lease makes a second submit a no-op if the first is still alive.
Every job is checked with its own exponential backoff (a ``submitting`` one: when its lease runs
out): after a check its entry in the state's time index moves to when it is next due, atomically
with the count of checks, so each pass reads only due jobs. It runs on its own queue,
``reconcile``, so a backlog of checkouts cannot hold it back. Past
``reconcile_horizon`` a job is flagged ``needsReview`` with an event and leaves the index: it is
no longer retried, and a person decides.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from worker.config.settings import Settings
from worker.domain import states
from worker.domain.errors import AmbiguousError, CheckoutError
from worker.domain.settlement import Report
from worker.flows.settle import Settler
from worker.gateway import answers
from worker.gateway.client import GatewayClient
from worker.logs import event
from worker.store.jobs import Job, JobStore
from worker.store.locks import held

__all__ = ["Reconciler"]

log = logging.getLogger("vexora.reconcile")

REFUSED = object()  # a query the gateway refused with an 8000 that does not say "no such order"


class Reconciler:
    """One pass over the open jobs that need attention."""

    def __init__(self, settings: Settings, store: JobStore, gateway: GatewayClient,
                 send_submit: Callable[[str], object], settler: Settler, *,
                 clock: Callable[[], float] = time.time, meter=None):
        self.settings = settings
        self.store = store
        self.gateway = gateway
        self.send_submit = send_submit
        self.settler = settler
        self.clock = clock
        self.meter = meter  # worker.ops.metrics.Meter: results by kind

    @property
    def lock_ttl(self) -> int:
        return max(60, int(self.settings.reconcile_interval * 4))

    def run(self) -> dict[str, int]:
        """One pass, unless another is running; returns what it did, by kind.

        A pass stops taking new jobs at half the lock's TTL (the rest waits for the next pass), so
        with one gateway request's deadline on top it always ends while it still holds the lock:
        two passes never overlap.
        """
        with held(self.store.redis, self.store.keys.reconcile_lock, self.lock_ttl) as mine:
            if not mine:
                return {"skipped": 1}
            done = dict(self._pass(deadline=time.monotonic() + self.lock_ttl / 2))
            self.store.mark_reconcile_pass()
            if self.meter is not None:
                for result, count in done.items():
                    self.meter.inc("reconcile_total", count, result=result)
            return done

    def _pass(self, deadline: float) -> Counter:
        done: Counter = Counter()
        s = self.settings
        for state, older_than, check in (
            (states.UNKNOWN, 0.0, self._settle_unknown),
            (states.SUBMITTING, 0.0, self._redrive_submitting),
            (states.PAYING, s.paying_query_after, self._settle_paying),
            (states.PARTIALLY_PAID, s.paying_query_after, self._settle_paying),
            (states.QUEUED, s.queued_redrive_after, self._redrive),
        ):
            for trade_no in self.store.open_jobs(state, older_than_s=older_than, limit=s.reconcile_batch):
                if time.monotonic() > deadline:
                    done["deferred"] += 1  # the next pass starts where this one stopped
                    continue
                job = self.store.load(trade_no)
                if job is None or job.state != state:
                    self.store.unindex(state, trade_no)  # expired, or moved since the index was read
                    continue
                if self._past_horizon(job):
                    done["needs_review"] += 1
                    continue
                try:
                    done[check(job)] += 1
                except CheckoutError as exc:
                    event(log, logging.INFO, "reconcile_check_failed", tradeNo=trade_no, error=str(exc))  # retried
                    done["check_failed"] += 1
                self._schedule_next(job, older_than)
        if done:
            event(log, logging.INFO, "reconcile_pass", dict(done))
        return done

    # -- per state ------------------------------------------------------------------------
    def _settle_unknown(self, job: Job) -> str:
        known = self._query(job)
        if known is REFUSED:
            return "query_refused"
        if known is not None:
            return self._apply(job, known)
        if job.payload is None:
            return "not_known_no_payload"
        if job.fields.get("gatewayCode") == answers.BUSINESS_ERROR and self._refused_long(job):
            # its create was refused after an ambiguous attempt, and the gateway still does not
            # know it: a person decides (declined is never inferred); it is not sent again
            self.store.flag(job.trade_no, "the gateway refused the checkout after an ambiguous attempt "
                                          "and does not know the order")
            return "refused_needs_review"
        moved = self.store.move(job.trade_no, states.SUBMITTING, claim_lease=0,
                                detail={"reason": "re-driven: the gateway does not know it"})
        if moved.applied:
            self.send_submit(job.trade_no)
            return "resent"
        return "moved_meanwhile"

    def _settle_paying(self, job: Job) -> str:
        known = self._query(job)
        if known is REFUSED:
            return "query_refused"
        if known is None:
            # the gateway has no record of a checkout it gave a link for: a person must look
            self.store.flag(job.trade_no, f"the gateway does not know this {job.state} checkout")
            return "not_known"
        return self._apply(job, known)

    def _redrive_submitting(self, job: Job) -> str:
        if job.lease_until > self.store.server_now_ms():  # leases are on Redis's clock
            return "lease_live"
        self.send_submit(job.trade_no)
        return "redriven"

    def _redrive(self, job: Job) -> str:
        self.send_submit(job.trade_no)
        return "redriven"

    # -- helpers --------------------------------------------------------------------------
    def _query(self, job: Job) -> Report | object | None:
        """The gateway's record, ``None`` (no such order) or ``REFUSED`` (a query ``8000`` that
        does not say the order is missing: no answer; flagged once refused long enough)."""
        reply = self.gateway.query(job.trade_no, job.account)
        try:
            return answers.from_query(reply.code, reply.msg, reply.data,
                                      not_found=self.settings.query_not_found_messages)
        except AmbiguousError as exc:
            if exc.code != answers.BUSINESS_ERROR:
                raise  # counted as a failed check, asked again
            event(log, logging.WARNING, "gateway_query_refused", tradeNo=job.trade_no, state=job.state,
                  error=str(exc))
            if self._refused_long(job):
                self.store.flag(job.trade_no, "the gateway keeps refusing queries of this job (8000)")
            return REFUSED

    def _refused_long(self, job: Job) -> bool:
        """Whether this check reaches ``refused_review_after`` checks of the job."""
        return int(job.fields.get("reconcileChecks") or 0) + 1 >= self.settings.refused_review_after

    def _apply(self, job: Job, known: Report) -> str:
        result = self.settler.apply(job.trade_no, known, job=job, via="reconciler")
        return f"settled_{result}" if result in states.ALL else result

    def _schedule_next(self, job: Job, older_than: float) -> None:
        if job.state == states.SUBMITTING:
            # due again when its lease runs out, not after a backoff: a dead holder's job must
            # be taken over within a lease and a pass of its death
            self.store.reindex(job.state, job.trade_no, self._index_time(job.lease_until))
            return
        s = self.settings
        # the pass picks entries older than ``older_than``: shift so this one is due at its time
        self.store.schedule_check(job.trade_no, job.state, base=s.reconcile_backoff_base,
                                  maximum=s.reconcile_backoff_max, shift_s=older_than)

    def _index_time(self, server_ms: int) -> int:
        """A time on Redis's clock as a score of the index (kept on this process's clock)."""
        return server_ms - self.store.server_now_ms() + self.store.now_ms()

    def _past_horizon(self, job: Job) -> bool:
        created = int(job.fields.get("createdAt") or 0)
        if self.store.now_ms() - created < self.settings.reconcile_horizon * 1000:
            return False
        self.store.flag(job.trade_no, f"still {job.state} after the reconcile horizon")
        self.store.unindex(job.state, job.trade_no)
        return True
