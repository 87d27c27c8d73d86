"""The review queue: the jobs a person must look at, and what that person can do about them.

A job is in the queue once it is flagged ``needsReview`` (``JobStore.flag``: an amount that
differs, money on a closed job, an undocumented status, a job the reconciler could not settle
within its horizon...). A person can ask the gateway again (``query``: its answer goes through
the normal settlement rules) or settle the job as ``succeeded`` or ``failed`` with a reason
(``resolve``: ``settlement.decide_operator``); the history keeps who, when and why. Used by the
HTTP API (``/v1/review``), the CLI (``vexora-checkout review``) and the ``/ops`` page.

A resolve is conditional on the record the person decided on: it names the record's ``version``
(the API's ETag, the ``/ops`` form's hidden field, the CLI's ``--version``), and when the job has
changed since — a late callback moved it, another flag was raised, anyone wrote to it — nothing is
changed (``VersionChanged``): the person reads it again. The check, the move, the unflag and the
review set change are one Lua step (``move.lua`` with ``version`` and ``unflag``, or
``unflag.lua`` when the job is already in the state decided). A resolve as ``succeeded`` records
the amount the person confirmed paid (``resolvedAmount``).

Money the gateway reports for a tradeNo with no job (``Settler.orphan``) is an orphan entry in the
same queue (``orphans``); a person dismisses it with a reason (``dismiss``).

Per account: ``items`` and ``orphans`` take the principal's ``account`` (None or ``*``: every
account). A job belongs to its record's ``account`` (a record from before accounts: ``default``);
an orphan has no job: it belongs to the ``account`` its entry records, else to ``default`` (the
same rule as a record without one). Who resolved or dismissed is the caller's
authenticated principal's label, passed as ``operator`` — never a field of a request.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from marshmallow import ValidationError

from schemas.api import REASON_MAX, DismissRequestSchema, OrphanSchema, QueryAnswerSchema, ResolveRequestSchema
from schemas.record import ReviewItemSchema
from worker.domain import settlement
from worker.domain.access import ALL_ACCOUNTS, DEFAULT_ACCOUNT
from worker.domain.errors import InvalidError
from worker.flows.settle import Settler
from worker.gateway import answers
from worker.store.jobs import GONE, NOT_IN_REVIEW, VERSION_CHANGED, JobStore

__all__ = ["ReviewQueue", "NotInReview", "NoSuchJob", "VersionRequired", "VersionChanged", "REASON_MAX"]

_ITEM = ReviewItemSchema()
_ANSWER = QueryAnswerSchema()
_RESOLUTION = ResolveRequestSchema()
_DISMISSAL = DismissRequestSchema()
_ORPHAN = OrphanSchema()


class NoSuchJob(LookupError):
    """No job has that tradeNo."""


class NotInReview(Exception):
    """The job is not waiting for a person (HTTP 409)."""


class VersionRequired(Exception):
    """A resolve that names no version of the record it decided on (HTTP 428)."""


class VersionChanged(Exception):
    """The job changed since the version the person decided on (HTTP 412); nothing was changed."""

    def __init__(self, trade_no: str, current: int | None):
        super().__init__(f"{trade_no} changed since you read it (it is now at version {current}); "
                         "read it again and decide on what it says now")
        self.current = current


class ReviewQueue:
    """Lists, re-queries and resolves the jobs flagged for a person."""

    def __init__(self, store: JobStore, settler: Settler, gateway_factory: Callable[[], object],
                 *, clock: Callable[[], float] = time.time):
        self.store = store
        self.settler = settler
        self.gateway_factory = gateway_factory  # built on first use: listing needs no gateway
        self.clock = clock

    def items(self, limit: int = 500, *, account: str | None = None) -> list[dict]:
        """The queue, oldest flag first: each job's public record without its history
        and contact (``ReviewItemSchema``: no payer data) and its age; only the jobs of
        ``account`` (None or ``*``: every account's; a job without one is ``default``'s)."""
        out = []
        for trade_no in self.store.flagged():
            job = self.store.load(trade_no)
            if job is None or not job.fields.get("needsReview"):
                if not self._orphan_waits(trade_no):
                    self.store.forget_flag(trade_no)  # resolved (or gone, before jobs in review kept)
                continue
            if not _belongs(job.fields.get("account") or DEFAULT_ACCOUNT, account):
                continue
            age = max(0, int(self.clock() - int(job.fields.get("createdAt") or 0) / 1000))
            out.append(_ITEM.dump({**job.fields, "ageSeconds": age}))
        out.sort(key=lambda item: item.get("reviewAt", 0))
        return out[:limit]

    def orphans(self, limit: int = 500, *, account: str | None = None) -> list[dict]:
        """Money reported for tradeNos with no job, waiting for a person, oldest first; only those
        of ``account`` (None or ``*``: all). An orphan has no job: it belongs to the account its
        entry records (the callback's merchant, when the callback path records it), else to
        ``default`` — the one account of a deployment without an accounts file."""
        out = [_ORPHAN.dump(entry) for entry in (self.store.orphan(t) for t in self.store.flagged())
               if entry and entry.get("needsReview") == "true"
               and _belongs(entry.get("account") or DEFAULT_ACCOUNT, account)]
        out.sort(key=lambda item: item.get("firstAt", 0))
        return out[:limit]

    def _orphan_waits(self, trade_no: str) -> bool:
        entry = self.store.orphan(trade_no)
        return bool(entry and entry.get("needsReview") == "true")

    def dismiss(self, trade_no: str, reason: object, operator: object) -> dict:
        """A person looked at money reported for ``trade_no``, which has no job: out of the queue."""
        try:
            _DISMISSAL.load({k: v for k, v in (("reason", reason), ("operator", operator)) if v is not None})
        except ValidationError as exc:
            errors = {k: list(dict.fromkeys(v)) for k, v in exc.messages.items()}
            raise InvalidError("a dismissal needs a reason and an operator", errors=errors) from None
        done = self.store.dismiss_orphan(trade_no, operator.strip(), reason.strip())
        if done == GONE:
            raise NoSuchJob(trade_no)
        if done == NOT_IN_REVIEW:
            raise NotInReview(f"{trade_no} is not waiting for a person (dismissed already)")
        return self.store.orphan(trade_no) or {}

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

    def resolve(self, trade_no: str, state: object, reason: object, operator: object, *,
                version: object, amount: object = None) -> dict:
        """Settle a job in review as ``succeeded`` (with the ``amount`` confirmed paid) or
        ``failed``, only if it is still at ``version`` (the record the person decided on; a list
        of versions: any of them); keeps who, when, why and the amount."""
        given = {k: v for k, v in (("state", state), ("reason", reason), ("operator", operator), ("amount", amount))
                 if v is not None}
        try:
            _RESOLUTION.load(given)
        except ValidationError as exc:
            # one message per field (a value may break both of a field's rules)
            errors = {k: list(dict.fromkeys(v)) for k, v in exc.messages.items()}
            raise InvalidError("a resolution needs a state, a reason and an operator "
                               "(and, as succeeded, the amount confirmed)", errors=errors) from None
        seen = _versions(version)
        if seen is None:
            raise VersionRequired(f"name the version of {trade_no} you decided on")
        job = self.store.load(trade_no)
        if job is None:
            raise NoSuchJob(trade_no)
        if job.version not in seen:
            raise VersionChanged(trade_no, job.version)
        if not job.fields.get("needsReview"):
            raise NotInReview(f"{trade_no} is not waiting for a person (it is {job.state})")
        decision = settlement.decide_operator(job.state, state)
        who = {"operator": operator.strip(), "why": reason.strip()}
        fields = {"resolvedBy": who["operator"], "resolvedReason": who["why"], "resolvedAt": self.store.now_ms()}
        if state == "succeeded":
            fields["resolvedAmount"] = who["amount"] = str(amount)
        resolved = {"reason": f"resolved as {state}", **who}
        if decision.target is None:
            done = self.store.unflag(trade_no, job.version, fields, resolved)
            if done == GONE:
                raise NoSuchJob(trade_no)
            if done == NOT_IN_REVIEW:
                raise NotInReview(f"{trade_no} is not waiting for a person")
            if done == VERSION_CHANGED:
                raise VersionChanged(trade_no, self._version(trade_no))
            return self.store.get(trade_no)
        counters = (self.settler.limits.success_counter(job.fields.get("ipHash"))
                    if decision.count_success and self.settler.limits else [])
        moved = self.store.move(trade_no, decision.target, fields=fields, allowed_from={job.state},
                                detail={"reason": decision.reason, **who}, counters=counters,
                                drop=["payload"], version=job.version, unflag=resolved)
        if not moved.applied:
            if moved.previous is None:
                raise NoSuchJob(trade_no)
            raise VersionChanged(trade_no, self._version(trade_no))
        return self.store.get(trade_no)

    def _version(self, trade_no: str) -> int | None:
        job = self.store.load(trade_no)
        return None if job is None else job.version


def _belongs(owner: str, account: str | None) -> bool:
    """Whether an item of ``owner`` is listed for a principal of ``account`` (None, ``*``: all)."""
    return account is None or account == ALL_ACCOUNTS or owner == account


def _versions(version: object) -> frozenset[int] | None:
    """The versions a caller names (one, or a list: an If-Match header's strong tags); None when
    none is named. A value that is not a version, or an empty list, matches none."""
    if version is None:
        return None
    values = version if isinstance(version, (list, tuple, set, frozenset)) else [version]
    out = set()
    for value in values:
        text = str(value).strip()
        if text.isdigit() and len(text) < 19:
            out.add(int(text))
    return frozenset(out)
