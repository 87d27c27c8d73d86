"""Submitting one checkout job: validate, claim, sign, send with retries, record the outcome.

Plain logic, testable without Celery: ``Submitter.submit(trade_no)`` is all the Celery task calls.
The rules (docs/design.md §Submission rules):
- the job is validated before anything is sent; an invalid one is ``rejected`` and never sent;
- a lease (``queued -> submitting``) makes one worker the only sender; the holder's heartbeat
  (``worker.flows.lease``) renews it while it works, and a job found in ``submitting`` is taken over
  only once its holder's lease ran out (the holder died or froze);
- every write after the claim (counting an attempt, recording the outcome) is conditional on
  still holding the lease: a holder that lost it sends and records nothing, and says so;
- before any request that might duplicate an earlier one (a takeover, or a retry after an
  ambiguous failure) the gateway is asked first, and the checkout is sent only if it does not
  know the tradeNo;
- transient failures are retried within the budget of ``worker.gateway.retry``; when it runs out, or the
  gateway answers ``5000``, the job is ``unknown`` for the reconciler — never sent blindly again;
- once a request may have reached the gateway, only the gateway's own record (a query, or a create
  answer) makes the job final: a refusal without one (an HTTP 4xx, a WAF page, a create ``8000``)
  leaves it ``unknown``, never ``declined``; a query ``8000`` means "not known" only when its
  message says the order does not exist (``worker.gateway.answers.says_not_found``);
- what the gateway's record means (paying, paid, amounts, unrecognised statuses) is
  ``worker.domain.settlement``'s, applied by ``worker.flows.settle`` as on every other path;
- a job is sent for its merchant account (the claim returns it with the payload: no round trip
  more): validated by that account's rules (codes, ``notifyUrl``), limited per payer IP within
  that account, signed with its secret and sent with its ``merchantNo``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping

from marshmallow import ValidationError

from worker.config.settings import Settings
from worker.domain import states
from worker.domain.errors import AmbiguousError, CheckoutError, DeclinedError, LeaseLostError, OutcomeUnknownError
from worker.domain.settlement import PURGE_ON, Report
from worker.flows.lease import LeaseKeeper
from worker.flows.settle import LEASE_LOST, Settler
from worker.gateway import answers
from worker.gateway.answers import Outcome
from worker.gateway.client import GatewayClient
from worker.gateway.retry import build_retrying
from worker.logs import event
from worker.store.jobs import Job, JobStore
from worker.store.limits import IpLimits, ip_hash

__all__ = ["Submitter"]

log = logging.getLogger("vexora.checkout")


class Submitter:
    """Owns the submit of one job at a time; shared by the threads of a worker."""

    def __init__(self, settings: Settings, store: JobStore, gateway: GatewayClient, schema,
                 limits: IpLimits, settler: Settler, leases: LeaseKeeper, *,
                 sleep: Callable[[float], None] = time.sleep, schemas: Mapping[str, object] | None = None,
                 account_limits: Mapping[str, IpLimits] | None = None):
        self.settings = settings
        self.store = store
        self.gateway = gateway
        self.schema = schema  # the default account's (and any account's without one of its own)
        self.schemas = dict(schemas or {})  # account id -> its payload schema (codes, notifyUrl)
        self.limits = limits
        self.account_limits = dict(account_limits or {})  # account id -> its per-IP limits
        self.sleep = sleep
        self.settler = settler
        self.leases = leases

    def submit(self, trade_no: str) -> str | None:
        """Take the job as far as this process can; return the state it is left in."""
        # One round trip reads and claims: the claim returns the payload it was made for.
        # A job never sent has its first request counted by the claim itself (no round trip
        # more): the request follows within this same call, well inside the fresh lease, and a
        # job refused before sending is recorded with ``attempts`` back at 0. With replicas the
        # count goes on its own, replicated before the send (count_attempt's WAIT).
        claimed_at = time.monotonic()
        claim = self.store.move(trade_no, states.SUBMITTING, claim_lease=self.settings.lease,
                                allowed_from={states.QUEUED, states.SUBMITTING},
                                detail={"reason": "lease claimed"},
                                detail_from={states.SUBMITTING: {"reason": "lease taken over after expiry"}},
                                count_first=not self._replicated)
        if not claim.applied:
            if claim.previous is None:
                event(log, logging.WARNING, "submit_not_found", tradeNo=trade_no)
            else:
                # it is in that state, its lease is held, or its payload is gone
                event(log, logging.INFO, "submit_not_claimed", tradeNo=trade_no, state=claim.previous)
            return claim.previous
        token = claim.lease_token
        # the claim's count stands for the first request only while the lease is surely still
        # ours: the claim is fresh (half the lease), or the request counts itself (Redis's clock)
        counted_until = claimed_at + self.settings.lease / 2 if claim.counted else 0.0
        with self.leases.hold(trade_no, token):
            try:
                return self._submit_claimed(trade_no, claim, token, counted_until)
            except LeaseLostError:
                return self._lease_lost(trade_no, "before sending")

    @property
    def _replicated(self) -> bool:
        replication = getattr(self.store, "replication", None)
        return bool(replication is not None and replication.enabled)

    def _submit_claimed(self, trade_no: str, claim, token: str, counted_until: float = 0.0) -> str | None:
        # refused before sending: the request the claim counted was never made
        unsent = {"attempts": 0} if claim.counted else {}
        account = self.settings.account(claim.account)
        if account is None:  # its account was removed from the settings: nothing to sign with
            return self.record(trade_no, Outcome(states.REJECTED, {"errors": {"account": [
                "not an account of this deployment any more"]}, **unsent}, "unknown account"), lease_token=token)
        try:
            fields = self.schemas.get(account.id, self.schema).load(claim.payload)
        except ValidationError as exc:
            return self.record(trade_no, Outcome(states.REJECTED, {"errors": exc.messages, **unsent},
                                                 "invalid input"), lease_token=token)
        hashed_ip = ip_hash(fields["ipAddress"], account.app_secret, account.id)
        resend = claim.attempts > 0 and not claim.counted
        if not resend:
            # with the limits on, the take also records the job's ipHash (ip_take.lua); off,
            # nothing counts successes per IP and the hash is only kept with a resend's count
            limits = self.account_limits.get(account.id, self.limits)
            refused = limits.take(hashed_ip, trade_no, self.store.keys.job(trade_no))
            if refused:
                return self.record(trade_no, Outcome(states.REJECTED, {"errors": {"ipAddress": [refused]}, **unsent},
                                                     "per-IP daily limit"), lease_token=token)
        outcome = self.send(trade_no, fields, resend=resend, hashed_ip=hashed_ip, lease_token=token,
                            account=account.id, counted_until=counted_until)
        # what this submit knows of its job; if a callback moved it meanwhile, the settler re-reads.
        # A resend (a re-drive or a takeover) reads it again: the job may have been flagged since
        # its first request, and a flagged job is judged as one (settlement.decide's ``flagged``).
        held = None if resend else Job(trade_no, states.SUBMITTING, claim.attempts, 0, None,
                                       {"amount": fields["amount"], "ipHash": hashed_ip, "account": account.id})
        return self.record(trade_no, outcome, held=held, lease_token=token)

    def _lease_lost(self, trade_no: str, when: str) -> str | None:
        """Another process took the job over: record nothing of ours, say so, leave it to them."""
        event(log, logging.WARNING, "lease_lost", tradeNo=trade_no, when=when)  # and records nothing
        self.store.note(trade_no, "lease_lost", {"reason": f"lease lost {when}; nothing recorded by the late holder"})
        job = self.store.load(trade_no)
        return job.state if job else None

    def send(self, trade_no: str, fields: dict, *, resend: bool, hashed_ip: str,
             lease_token: str | None = None, account: str | None = None,
             counted_until: float = 0.0) -> Outcome | Report:
        """Send within the retry budget; ``resend`` means an earlier request may have arrived.

        ``hashed_ip`` is stored with each request counted (the per-IP success counter of a paid
        callback needs it). ``counted_until`` (monotonic): the claim counted the first request,
        which may go without a count of its own until then."""
        started = time.monotonic()
        state = {"ambiguous": resend, "ipHash": hashed_ip, "token": lease_token, "account": account,
                 "counted_until": counted_until}
        try:
            for attempt in build_retrying(self.settings, sleep=self.sleep):
                with attempt:
                    outcome = self._attempt(trade_no, fields, state)
            return _timed(outcome, started)
        except LeaseLostError:
            raise  # not an outcome of ours to record
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
            known = self._query(trade_no, state["account"])
            if known is not None:
                return known
        if state["counted_until"] and time.monotonic() < state["counted_until"]:
            state["counted_until"] = 0.0  # the claim's count is this request's; a retry counts its own
        else:
            state["counted_until"] = 0.0
            self.store.count_attempt(trade_no, lease_token=state["token"], ipHash=state["ipHash"])
        try:
            reply = self.gateway.checkout(fields, state["account"])
        except AmbiguousError:
            state["ambiguous"] = True
            raise
        outcome = answers.from_checkout(reply.code, reply.msg, reply.data, after_ambiguous=state["ambiguous"])
        if isinstance(outcome, Outcome) and outcome.reason == answers.REFUSED_AFTER_AMBIGUOUS:
            # An 8000 after an earlier request may have landed (often "duplicate tradeNo"), or one
            # that says the tradeNo exists, declines nothing: the gateway's own record decides,
            # and without one the job stays unknown (never declined) for the reconciler.
            known = self._query(trade_no, state["account"])
            if known is not None:
                return known
            return Outcome(states.UNKNOWN, outcome.fields,
                           f"{answers.REFUSED_AFTER_AMBIGUOUS}; its query does not know the order")
        return outcome

    def _query(self, trade_no: str, account: str | None = None) -> Report | None:
        reply = self.gateway.query(trade_no, account)
        known = answers.from_query(reply.code, reply.msg, reply.data, not_found=self.settings.query_not_found_messages)
        event(log, logging.INFO, "gateway_query", tradeNo=trade_no, status=known.status if known else "not known")
        return known

    def record(self, trade_no: str, outcome: Outcome | Report, *, held: Job | None = None,
               lease_token: str | None = None) -> str | None:
        """Record what the submit learnt; a refused move leaves what got there first.

        With ``lease_token`` nothing is recorded once another process has claimed the job.
        """
        if isinstance(outcome, Report):
            result = self.settler.apply(trade_no, outcome, job=held,
                                        guard={"lease_token": lease_token} if lease_token else None)
            if result == LEASE_LOST:
                return self._lease_lost(trade_no, "before recording the gateway's answer")
            if result in states.ALL:
                return result
            job = self.store.load(trade_no)
            return job.state if job else None
        drop = ["payload"] if outcome.state in PURGE_ON else []
        detail = {"reason": outcome.reason}
        for key in ("gatewayCode", "latencyMs"):
            if outcome.fields.get(key):
                detail[{"gatewayCode": "code"}.get(key, key)] = outcome.fields[key]
        moved = self.store.move(trade_no, outcome.state, fields=outcome.fields, drop=drop, detail=detail,
                                lease_token=lease_token)
        if moved.applied:
            return outcome.state
        if moved.lease_lost:
            return self._lease_lost(trade_no, f"before recording {outcome.state}")
        event(log, logging.INFO, "outcome_not_recorded", tradeNo=trade_no, outcome=outcome.state,
              state=moved.previous)
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
    return dataclasses.replace(outcome, fields=fields)  # everything else kept (amount_may_be_order)
