"""What the gateway's answers say (docs/gateway.md §Status and error codes): request-level codes read, no I/O.

The request-level ``code`` says whether the request was taken; ``data.status`` is the business
outcome, which this module hands over as a ``settlement.Report`` for ``worker.domain.settlement`` to
judge (the same rules as callbacks and queries). What a request-level code alone decides is an
``Outcome``: ``8000`` on a create is ``declined``; an answer nobody documented is ``unknown``
(the reconciler settles it by query, while a wrong ``declined`` could abandon a checkout the
payer is paying); ``5000`` raises, as the outcome is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.domain import settlement
from worker.domain import states
from worker.domain.errors import AmbiguousError, OutcomeUnknownError
from worker.domain.settlement import Report

__all__ = ["Outcome", "from_checkout", "from_query", "ACCEPTED", "SYSTEM_ERROR", "BUSINESS_ERROR",
           "PAID", "PARTIAL", "PAYING_STATUS", "FAILED_STATUSES"]

ACCEPTED = "0000"
SYSTEM_ERROR = "5000"
BUSINESS_ERROR = "8000"

PAID = "0000"
PARTIAL = "0001"
PAYING_STATUS = "0015"
FAILED_STATUSES = frozenset({"00029", "0029"})


@dataclass(frozen=True)
class Outcome:
    """A target state decided without a gateway record, and the fields to record with it."""

    state: str
    fields: dict = field(default_factory=dict)
    reason: str = ""


def _gateway_fields(code: str, data: dict | None, msg: str | None) -> dict:
    data = data or {}
    fields = {"gatewayCode": code, "message": data.get("message") or msg or ""}
    for key in ("platFormTradeNo", "paymentLink"):
        if data.get(key):
            fields[key] = data[key]
    return fields


def _report(source: str, code: str, msg: str | None, data: dict) -> Report:
    return Report(source, str(data.get("status") or ""), data.get("paidAmount"),
                  _gateway_fields(code, data, msg))


def from_checkout(code: str, msg: str | None, data: dict | None) -> Outcome | Report:
    """What a create-checkout answer says: a report of the order, or an outcome of the request.

    ``5000`` raises ``OutcomeUnknownError`` (final for the attempt loop: confirm by query).
    """
    if code == SYSTEM_ERROR:
        raise OutcomeUnknownError("gateway system exception; outcome unknown", code=code)
    if code == BUSINESS_ERROR:
        return Outcome(states.DECLINED, {**_gateway_fields(code, data, msg), "gatewayStatus": ""},
                       "gateway declined the checkout")
    if code != ACCEPTED or not data:
        return Outcome(states.UNKNOWN, {**_gateway_fields(code, data, msg), "gatewayStatus": ""},
                       "unrecognised gateway answer")
    return _report(settlement.CREATE, code, msg, data)


def from_query(code: str, msg: str | None, data: dict | None) -> Report | None:
    """The gateway's record of a tradeNo, or ``None`` when it does not know the tradeNo.

    On the query API ``8000`` means "not known", not a failure. Anything unexpected raises
    ``AmbiguousError`` so the caller asks again rather than guessing.
    """
    if code == BUSINESS_ERROR:
        return None
    if code != ACCEPTED or not data or not data.get("status"):
        raise AmbiguousError("gateway query gave no usable answer", code=code)
    return _report(settlement.QUERY, code, msg, data)
