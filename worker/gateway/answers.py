"""What the gateway's answers say (docs/gateway.md §Status and error codes): request-level codes read, no I/O.

The request-level ``code`` says whether the request was taken; ``data.status`` is the business
outcome, which this module hands over as a ``settlement.Report`` for ``worker.domain.settlement`` to
judge (the same rules as callbacks and queries). What a request-level code alone decides is an
``Outcome``: ``8000`` on a create is ``declined`` (only when nothing before it was ambiguous); an answer nobody documented is ``unknown``
(the reconciler settles it by query, while a wrong ``declined`` could abandon a checkout the
payer is paying); ``5000`` raises, as the outcome is unknown.

``8000`` is the gateway's code for several business errors (a sign error, a missing field, a
duplicate ``tradeNo``, an order it does not have), told apart only by the message. Only a message
in ``NOT_FOUND_MESSAGES`` (or one added by ``VEXORA_QUERY_NOT_FOUND_MESSAGES``) makes a query's
``8000`` mean "no such order"; any other query ``8000`` is no usable answer. A create's ``8000`` is
``declined`` only when nothing ambiguous was sent before and its message does not say the
``tradeNo`` exists (``DUPLICATE_MESSAGES``); otherwise the order may exist and a query decides
(docs/gateway.md §Status and error codes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from worker.domain import settlement
from worker.domain import states
from worker.domain.errors import AmbiguousError, OutcomeUnknownError
from worker.domain.settlement import Report

__all__ = ["Outcome", "from_checkout", "from_query", "says_not_found", "says_duplicate", "normalise_message",
           "NOT_FOUND_MESSAGES", "DUPLICATE_MESSAGES", "REFUSED_AFTER_AMBIGUOUS",
           "ACCEPTED", "SYSTEM_ERROR", "BUSINESS_ERROR", "PAID", "PARTIAL", "PAYING_STATUS", "FAILED_STATUSES"]

ACCEPTED = "0000"
SYSTEM_ERROR = "5000"
BUSINESS_ERROR = "8000"

PAID = "0000"
PARTIAL = "0001"
PAYING_STATUS = "0015"
FAILED_STATUSES = frozenset({"00029", "0029"})

# The ``8000`` messages that say the gateway has no order under this tradeNo, compared after
# ``normalise_message``: the whole message, not a part of it (a message that merely mentions a
# missing order, e.g. "merchant order config not found", is not one). The sandbox answers
# "order not found"; the others are the usual spellings. Anything not listed is no usable answer:
# the safe side (the job stays unknown and is asked again), never a resend or a decline.
NOT_FOUND_MESSAGES = frozenset({"order not found", "order does not exist", "order not exist",
                                "order is not exist", "no such order", "trade not found",
                                "tradeno not found", "tradeno does not exist"})
# A create's ``8000`` messages that say the tradeNo is already taken: the order exists.
DUPLICATE_MESSAGES = frozenset({"duplicate tradeno", "duplicate order", "tradeno already exists",
                                "order already exists", "repeat order", "duplicate trade no"})
# the reason an Outcome gives when a create's 8000 may hide an existing order: settled by query
REFUSED_AFTER_AMBIGUOUS = "gateway refused a checkout that may already exist"

_SPACES = re.compile(r"\s+")


def normalise_message(text: object) -> str:
    """A gateway message as compared: case-folded, spaces collapsed, trailing full stops dropped."""
    if not isinstance(text, str):
        return ""
    return _SPACES.sub(" ", text).strip().rstrip(".。").strip().casefold()


def _says(known: frozenset[str] | set[str], msg: str | None, data: dict | None) -> bool:
    texts = {normalise_message(msg), normalise_message((data or {}).get("message"))} - {""}
    return bool(texts & known)


def says_not_found(msg: str | None, data: dict | None = None, extra: Iterable[str] = ()) -> bool:
    """Whether an ``8000``'s message (``msg`` or ``data.message``) says the order does not exist.

    ``extra`` are more such messages (``VEXORA_QUERY_NOT_FOUND_MESSAGES``)."""
    known = NOT_FOUND_MESSAGES | {normalise_message(m) for m in extra} if extra else NOT_FOUND_MESSAGES
    return _says(known, msg, data)


def says_duplicate(msg: str | None, data: dict | None = None) -> bool:
    """Whether a create's ``8000`` says the tradeNo already exists at the gateway."""
    return _says(DUPLICATE_MESSAGES, msg, data)


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
    # a paid amount the answer gives only as the plain ``amount`` may be the order's amount
    # (docs/gateway.md §Amounts): the settlement never lets it close a flagged or partial job
    plain = data.get("paidAmount") is not None and data.get("paidAmountKey") == "amount"
    return Report(source, str(data.get("status") or ""), data.get("paidAmount"),
                  _gateway_fields(code, data, msg), amount_may_be_order=plain)


def from_checkout(code: str, msg: str | None, data: dict | None, *,
                  after_ambiguous: bool = False) -> Outcome | Report:
    """What a create-checkout answer says: a report of the order, or an outcome of the request.

    ``5000`` raises ``OutcomeUnknownError`` (final for the attempt loop: confirm by query).
    ``8000`` is ``declined`` only when nothing ambiguous was sent before (``after_ambiguous``) and
    the message does not say the tradeNo exists; otherwise it is ``unknown`` with the reason
    ``REFUSED_AFTER_AMBIGUOUS``: the order may exist, and only a query decides.
    """
    if code == SYSTEM_ERROR:
        raise OutcomeUnknownError("gateway system exception; outcome unknown", code=code)
    if code == BUSINESS_ERROR:
        fields = {**_gateway_fields(code, data, msg), "gatewayStatus": ""}
        if after_ambiguous or says_duplicate(msg, data):
            return Outcome(states.UNKNOWN, fields, REFUSED_AFTER_AMBIGUOUS)
        return Outcome(states.DECLINED, fields, "gateway declined the checkout")
    if code != ACCEPTED or not data:
        return Outcome(states.UNKNOWN, {**_gateway_fields(code, data, msg), "gatewayStatus": ""},
                       "unrecognised gateway answer")
    return _report(settlement.CREATE, code, msg, data)


def from_query(code: str, msg: str | None, data: dict | None, *,
               not_found: Iterable[str] = ()) -> Report | None:
    """The gateway's record of a tradeNo, or ``None`` when it says it has no such order.

    ``None`` only for an ``8000`` whose message says the order does not exist (``says_not_found``;
    ``not_found`` adds messages). Any other ``8000`` (a sign error, a merchant error, a message
    nobody listed) and anything unexpected raise ``AmbiguousError`` so the caller asks again
    rather than guessing; a refused query carries ``code="8000"``.
    """
    if code == BUSINESS_ERROR:
        if says_not_found(msg, data, not_found):
            return None
        raise AmbiguousError(f"gateway refused the query: {_short(msg or (data or {}).get('message'))}",
                             code=code)
    if code != ACCEPTED or not data or not data.get("status"):
        raise AmbiguousError("gateway query gave no usable answer", code=code)
    return _report(settlement.QUERY, code, msg, data)


def _short(text: object) -> str:
    """A gateway message as quoted in an error: printable, at most 120 characters."""
    text = "".join(ch for ch in str(text or "no message") if ch.isprintable())
    return text[:120]
