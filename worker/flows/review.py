"""The review queue: the jobs a person must look at, and what that person can do about them.

A job is in the queue once it is flagged ``needsReview`` (``JobStore.flag``: an amount that
differs, money on a closed job, an undocumented status, a job the reconciler could not settle
within its horizon...). A person can ask the gateway again (``query``: its answer goes through
the normal settlement rules) or settle the job as ``succeeded`` or ``failed`` with a reason
(``resolve``: ``settlement.decide_operator``); the history keeps who, when and why. Used by the
HTTP API (``/v1/review``), the CLI (``vexora-checkout review``) and the ``/ops`` page.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from marshmallow import ValidationError

from schemas.api import REASON_MAX, QueryAnswerSchema, ResolveRequestSchema
from schemas.record import ReviewItemSchema
from worker.domain import settlement
from worker.domain.errors import InvalidError
from worker.flows.settle import Settler
from worker.gateway import answers
from worker.store.jobs import JobStore

__all__ = ["ReviewQueue", "NotInReview", "NoSuchJob", "REASON_MAX"]

_ITEM = ReviewItemSchema()
_ANSWER = QueryAnswerSchema()
_RESOLUTION = ResolveRequestSchema()


class NoSuchJob(LookupError):
    """No job has that tradeNo."""


class NotInReview(Exception):
    """The job is not waiting for a person (HTTP 409)."""


class ReviewQueue:
    """Lists, re-queries and resolves the jobs flagged for a person."""

    def __init__(self, store: JobStore, settler: Settler, gateway_factory: Callable[[], object],
                 *, clock: Callable[[], float] = time.time):
        self.store = store
        self.settler = settler
        self.gateway_factory = gateway_factory  # built on first use: listing needs no gateway
        self.clock = clock

    def items(self, limit: int = 500) -> list[dict]:
        """The queue, oldest flag first: each job's public record without its history
        and contact (``ReviewItemSchema``: no payer data) and its age."""
        out = []
        for trade_no in self.store.flagged():
            job = self.store.load(trade_no)
            if job is None or not job.fields.get("needsReview"):
                self.store.forget_flag(trade_no)  # expired, or resolved
                continue
            age = max(0, int(self.clock() - int(job.fields.get("createdAt") or 0) / 1000))
            out.append(_ITEM.dump({**job.fields, "ageSeconds": age}))
        out.sort(key=lambda item: item.get("reviewAt", 0))
        return out[:limit]

    def query(self, trade_no: str) -> dict:
        """Ask the gateway now and apply its answer by the normal rules; what it said and did."""
        if self.store.load(trade_no) is None:
            raise NoSuchJob(trade_no)
        gateway = self.gateway_factory()
        reply = gateway.query(trade_no)
        known = answers.from_query(reply.code, reply.msg, reply.data, not_found=gateway.not_found_messages)
        if known is None:
            return _ANSWER.dump({"gateway": "not known", "result": "unchanged",
                                 "record": self.store.get(trade_no)})
        result = self.settler.apply(trade_no, known, via="operator query")
        return _ANSWER.dump({"gateway": known.status, "paidAmount": known.paid_amount, "result": result,
                             "record": self.store.get(trade_no)})

    def resolve(self, trade_no: str, state: object, reason: object, operator: object) -> dict:
        """Settle a job in review as ``succeeded`` or ``failed``; keeps who, when and why."""
        try:
            _RESOLUTION.load({k: v for k, v in (("state", state), ("reason", reason), ("operator", operator))
                              if v is not None})
        except ValidationError as exc:
            # one message per field (a value may break both of a field's rules)
            errors = {k: list(dict.fromkeys(v)) for k, v in exc.messages.items()}
            raise InvalidError("a resolution needs a state, a reason and an operator", errors=errors) from None
        for _ in range(3):
            job = self.store.load(trade_no)
            if job is None:
                raise NoSuchJob(trade_no)
            if not job.fields.get("needsReview"):
                raise NotInReview(f"{trade_no} is not waiting for a person (it is {job.state})")
            decision = settlement.decide_operator(job.state, state)
            who = {"operator": operator.strip(), "why": reason.strip()}
            fields = {"resolvedBy": who["operator"], "resolvedReason": who["why"],
                      "resolvedAt": self.store.now_ms()}
            if decision.target is None:
                self.store.annotate(trade_no, **fields)
                break
            counters = (self.settler.limits.success_counter(job.fields.get("ipHash"))
                        if decision.count_success and self.settler.limits else [])
            moved = self.store.move(trade_no, decision.target, fields=fields, allowed_from={job.state},
                                    detail={"reason": decision.reason, **who}, counters=counters,
                                    drop=["payload"])
            if moved.applied:
                break
        else:
            raise NotInReview(f"{trade_no} kept moving; try again")
        self.store.unflag(trade_no, {"reason": f"resolved as {state}", **who})
        return self.store.get(trade_no)
