"""Submitting one checkout job: validate, claim, sign, send with retries, record the outcome.

Plain logic, testable without Celery: ``Submitter.submit(trade_no)`` is all the Celery task calls.
The rules (DESIGN.md "Submission rules"):
- the job is validated before anything is sent; an invalid one is ``rejected`` and never sent;
- a lease (``queued -> submitting``) makes one worker the only sender; a job found in
  ``submitting`` is taken over only once its holder's lease ran out (the holder died);
- before any request that might duplicate an earlier one (a takeover, or a retry after an
  ambiguous failure) the gateway is asked first, and the checkout is sent only if it does not
  know the tradeNo;
- transient failures are retried within the budget of ``worker.retry``; when it runs out, or the
  gateway answers ``5000``, the job is ``unknown`` for the reconciler — never sent blindly again;
- once a request may have reached the gateway, only the gateway's own record (a query, or a create
  answer) makes the job final: a refusal without one (an HTTP 4xx, a WAF page) leaves it ``unknown``;
- what the gateway's record means (paying, paid, amounts, unrecognised statuses) is
  ``worker.settlement``'s, applied by ``worker.settler`` as on every other path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from marshmallow import ValidationError

from worker import outcomes, states
from worker.errors import AmbiguousError, CheckoutError, DeclinedError, OutcomeUnknownError
from worker.gateway import GatewayClient
from worker.limits import IpLimits, ip_hash
from worker.outcomes import Outcome
from worker.retry import build_retrying
from worker.settings import Settings
from worker.settlement import PURGE_ON, Report
from worker.settler import Settler
from worker.store import Job, JobStore

__all__ = ["Submitter"]

log = logging.getLogger("vexora.checkout")


class Submitter:
    """Owns the submit of one job at a time; shared by the threads of a worker."""

    def __init__(self, settings: Settings, store: JobStore, gateway: GatewayClient, schema,
                 limits: IpLimits, *, sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.store = store
        self.gateway = gateway
        self.schema = schema
        self.limits = limits
        self.sleep = sleep
        self.settler = Settler(store, limits)

    def submit(self, trade_no: str) -> str | None:
        """Take the job as far as this process can; return the state it is left in."""
        # One round trip reads and claims: the claim returns the payload it was made for.
        claim = self.store.move(trade_no, states.SUBMITTING, claim_lease=self.settings.lease,
                                allowed_from={states.QUEUED, states.SUBMITTING},
                                detail={"reason": "lease claimed"},
                                detail_from={states.SUBMITTING: {"reason": "lease taken over after expiry"}})
        if not claim.applied:
            if claim.previous is None:
                log.warning("job %s: not found; nothing to submit", trade_no)
            else:
                log.info("job %s: not claimed (it is %s, its lease is held, or its payload is gone)",
                         trade_no, claim.previous)
            return claim.previous
        try:
            fields = self.schema.load(claim.payload)
        except ValidationError as exc:
            return self.record(trade_no, Outcome(states.REJECTED, {"errors": exc.messages},
                                                 "invalid input"))
        hashed_ip = ip_hash(fields["ipAddress"], self.settings.app_secret)
        resend = claim.attempts > 0
        if not resend:
            refused = self.limits.take(hashed_ip, trade_no, self.store.job_key(trade_no))
            if refused:
                return self.record(trade_no, Outcome(states.REJECTED, {"errors": {"ipAddress": [refused]}},
                                                     "per-IP daily limit"))
        outcome = self.send(trade_no, fields, resend=resend, hashed_ip=hashed_ip)
        # what this submit knows of its job; if a callback moved it meanwhile, the settler re-reads
        held = Job(trade_no, states.SUBMITTING, claim.attempts, 0, None,
                   {"amount": fields["amount"], "ipHash": hashed_ip})
        return self.record(trade_no, outcome, held=held)

    def send(self, trade_no: str, fields: dict, *, resend: bool, hashed_ip: str) -> Outcome | Report:
        """Send within the retry budget; ``resend`` means an earlier request may have arrived.

        ``hashed_ip`` is stored with each request counted (the per-IP success counter of a paid
        callback needs it)."""
        started = time.monotonic()
        state = {"ambiguous": resend, "ipHash": hashed_ip}
        try:
            for attempt in build_retrying(self.settings, sleep=self.sleep):
                with attempt:
                    outcome = self._attempt(trade_no, fields, state)
            return _timed(outcome, started)
        except OutcomeUnknownError as exc:
            return _timed(Outcome(states.UNKNOWN, _error_fields(exc), "gateway system exception"), started)
        except DeclinedError as exc:
            if state["ambiguous"]:
                # an earlier request may have created the order: a refusal is not its record
                return _timed(Outcome(states.UNKNOWN, _error_fields(exc),
                                      "gateway refused a request after an ambiguous one"), started)
            return _timed(Outcome(states.DECLINED, _error_fields(exc), "gateway refused the request"), started)
        except CheckoutError as exc:  # a retryable error that outlived the budget
            return _timed(Outcome(states.UNKNOWN, _error_fields(exc), "retries exhausted"), started)

    def _attempt(self, trade_no: str, fields: dict, state: dict) -> Outcome | Report:
        if state["ambiguous"]:
            known = self._query(trade_no)
            if known is not None:
                return known
        self.store.count_attempt(trade_no, ipHash=state["ipHash"])
        try:
            reply = self.gateway.checkout(fields)
        except AmbiguousError:
            state["ambiguous"] = True
            raise
        outcome = outcomes.from_checkout(reply.code, reply.msg, reply.data)
        if isinstance(outcome, Outcome) and outcome.state == states.DECLINED and state["ambiguous"]:
            # A refusal after an earlier request may have landed is often "duplicate tradeNo":
            # the gateway's own record decides.
            known = self._query(trade_no)
            if known is not None:
                return known
        return outcome

    def _query(self, trade_no: str) -> Report | None:
        reply = self.gateway.query(trade_no)
        known = outcomes.from_query(reply.code, reply.msg, reply.data)
        log.info("job %s: gateway query says %s", trade_no, known.status if known else "not known")
        return known

    def record(self, trade_no: str, outcome: Outcome | Report, *, held: Job | None = None) -> str | None:
        """Record what the submit learnt; a refused move leaves what got there first."""
        if isinstance(outcome, Report):
            result = self.settler.apply(trade_no, outcome, job=held)
            if result in states.ALL:
                return result
            job = self.store.load(trade_no)
            return job.state if job else None
        drop = ["payload"] if outcome.state in PURGE_ON else []
        detail = {"reason": outcome.reason}
        for key in ("gatewayCode", "latencyMs"):
            if outcome.fields.get(key):
                detail[{"gatewayCode": "code"}.get(key, key)] = outcome.fields[key]
        moved = self.store.move(trade_no, outcome.state, fields=outcome.fields, drop=drop, detail=detail)
        if moved.applied:
            return outcome.state
        log.info("job %s: outcome %s not recorded, the job is already %s", trade_no, outcome.state,
                 moved.previous)
        return moved.previous or outcome.state


def _error_fields(exc: CheckoutError) -> dict:
    fields = {"message": exc.message}
    if exc.code:
        fields["gatewayCode"] = exc.code
    if exc.http_status:
        fields["httpStatus"] = exc.http_status
    return fields


def _timed(outcome: Outcome | Report, started: float) -> Outcome | Report:
    fields = {**outcome.fields, "latencyMs": int((time.monotonic() - started) * 1000)}
    if isinstance(outcome, Report):
        return Report(outcome.source, outcome.status, outcome.paid_amount, fields)
    return Outcome(outcome.state, fields, outcome.reason)
