"""What the gateway's answers mean for a job (GATEWAY.md §5): pure functions, no I/O.

The request-level ``code`` says whether the request was taken; ``data.status`` is the business
outcome. When in doubt the answer is ``unknown``: the reconciler settles it by query, while a
wrong ``declined`` could abandon a checkout the payer is paying.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from worker import states
from worker.errors import AmbiguousError, OutcomeUnknownError

__all__ = ["Outcome", "from_checkout", "from_query", "status_state", "ACCEPTED", "SYSTEM_ERROR",
           "BUSINESS_ERROR", "PAID", "PARTIAL", "PAYING_STATUS", "FAILED_STATUSES"]

ACCEPTED = "0000"
SYSTEM_ERROR = "5000"
BUSINESS_ERROR = "8000"

PAID = "0000"
PARTIAL = "0001"
PAYING_STATUS = "0015"
FAILED_STATUSES = frozenset({"00029", "0029"})


@dataclass(frozen=True)
class Outcome:
    """A target state and the fields to record with it."""

    state: str
    fields: dict = field(default_factory=dict)
    reason: str = ""


def status_state(status: str | None) -> str:
    """The job state a transaction ``status`` stands for (callbacks and queries)."""
    if status == PAID:
        return states.SUCCEEDED
    if status == PARTIAL:
        return states.PARTIALLY_PAID
    if status == PAYING_STATUS:
        return states.PAYING
    return states.FAILED


def _gateway_fields(code: str, data: dict | None, msg: str | None) -> dict:
    data = data or {}
    fields = {"gatewayCode": code, "gatewayStatus": data.get("status") or "",
              "message": data.get("message") or msg or ""}
    for key in ("platFormTradeNo", "paymentLink"):
        if data.get(key):
            fields[key] = data[key]
    return fields


def from_checkout(code: str, msg: str | None, data: dict | None) -> Outcome:
    """The outcome of a create-checkout answer.

    ``5000`` raises ``OutcomeUnknownError`` (final for the attempt loop: confirm by query).
    """
    if code == SYSTEM_ERROR:
        raise OutcomeUnknownError("gateway system exception; outcome unknown", code=code)
    fields = _gateway_fields(code, data, msg)
    if code == BUSINESS_ERROR:
        return Outcome(states.DECLINED, fields, "gateway declined the checkout")
    if code != ACCEPTED or not data:
        return Outcome(states.UNKNOWN, fields, "unrecognised gateway answer")
    status = data.get("status")
    if status == PAYING_STATUS and not data.get("paymentLink"):
        return Outcome(states.UNKNOWN, fields, "checkout created without a payment link")
    if status in FAILED_STATUSES or status in {PAID, PARTIAL, PAYING_STATUS}:
        return Outcome(status_state(status), _with_paid(fields, status, data), "gateway answered")
    return Outcome(states.UNKNOWN, fields, "unrecognised transaction status")


def from_query(code: str, msg: str | None, data: dict | None) -> Outcome | None:
    """The outcome a query reports, or ``None`` when the gateway does not know the tradeNo.

    On the query API ``8000`` means "not known", not a failure. Anything unexpected raises
    ``AmbiguousError`` so the caller retries the query rather than guessing.
    """
    if code == BUSINESS_ERROR:
        return None
    if code != ACCEPTED or not data or not data.get("status"):
        raise AmbiguousError("gateway query gave no usable answer", code=code)
    status = data["status"]
    fields = _gateway_fields(code, data, msg)
    return Outcome(status_state(status), _with_paid(fields, status, data), "gateway query")


def _with_paid(fields: dict, status: str, data: dict) -> dict:
    if status in {PAID, PARTIAL} and data.get("amount") not in (None, ""):
        return {**fields, "paidAmount": str(data["amount"])}
    return fields
