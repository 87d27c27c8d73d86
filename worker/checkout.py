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
  gateway answers ``5000``, the job is ``unknown`` for the reconciler — never sent blindly again.
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
from worker.store import JobStore

__all__ = ["Submitter", "PURGE_ON"]

log = logging.getLogger("vexora.checkout")

# Once a job reaches one of these, its payer data is no longer needed to act on it.
PURGE_ON = frozenset({states.PAYING, states.SUCCEEDED, states.PARTIALLY_PAID, states.FAILED,
                      states.DECLINED, states.REJECTED})

_LINK_STILL_USEFUL = frozenset({states.PAYING, states.PARTIALLY_PAID})


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
            refused = self.limits.take(hashed_ip)
            if refused:
                return self.record(trade_no, Outcome(states.REJECTED, {"errors": {"ipAddress": [refused]}},
                                                     "per-IP daily limit"))
        return self.record(trade_no, self.send(trade_no, fields, resend=resend, hashed_ip=hashed_ip))

    def send(self, trade_no: str, fields: dict, *, resend: bool, hashed_ip: str) -> Outcome:
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
            return _timed(Outcome(states.DECLINED, _error_fields(exc), "gateway refused the request"), started)
        except CheckoutError as exc:  # a retryable error that outlived the budget
            return _timed(Outcome(states.UNKNOWN, _error_fields(exc), "retries exhausted"), started)

    def _attempt(self, trade_no: str, fields: dict, state: dict) -> Outcome:
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
        if outcome.state == states.DECLINED and state["ambiguous"]:
            # A refusal after an earlier request may have landed is often "duplicate tradeNo":
            # the gateway's own record decides.
            known = self._query(trade_no)
            if known is not None:
                return known
        return outcome

    def _query(self, trade_no: str) -> Outcome | None:
        reply = self.gateway.query(trade_no)
        known = outcomes.from_query(reply.code, reply.msg, reply.data)
        log.info("job %s: gateway query says %s", trade_no, known.state if known else "not known")
        return known

    def record(self, trade_no: str, outcome: Outcome) -> str:
        """Move the job to the outcome's state; a refused move leaves what got there first."""
        drop = ["payload"] if outcome.state in PURGE_ON else []
        detail = {"reason": outcome.reason}
        for key in ("gatewayCode", "gatewayStatus", "latencyMs"):
            if outcome.fields.get(key):
                detail[{"gatewayCode": "code", "gatewayStatus": "status"}.get(key, key)] = outcome.fields[key]
        moved = self.store.move(trade_no, outcome.state, fields=outcome.fields, drop=drop, detail=detail)
        if moved.applied:
            return outcome.state
        if outcome.fields.get("paymentLink") and moved.previous in _LINK_STILL_USEFUL:
            # A callback overtook our own answer; the link it carried is still the payer's.
            self.store.annotate(trade_no, paymentLink=outcome.fields["paymentLink"],
                                platFormTradeNo=outcome.fields.get("platFormTradeNo", ""))
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


def _timed(outcome: Outcome, started: float) -> Outcome:
    return Outcome(outcome.state, {**outcome.fields, "latencyMs": int((time.monotonic() - started) * 1000)},
                   outcome.reason)
