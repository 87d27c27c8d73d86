"""Settlement: what one report from the gateway means for a job, on every path. Pure, no I/O.

A *report* is what the gateway said about a ``tradeNo`` — the data of a create answer, of a query
answer, or a callback — reduced to its transaction ``status`` and the amount actually paid.
``decide`` takes the job's current state, its order amount and what was paid so far, and gives
one ``Decision``: the state to move to (or none), the fields to record, whether a person must look
(``review``), the amount verdict and whether the move counts a success for the payer's IP. The
create path, the takeover query, callbacks and the reconciler all go through it; the store's Lua
move stays the one atomic writer (``worker.settle`` applies a decision).

The rules (README "Job states"):
- ``0015`` paying, ``0000`` paid, ``0001`` partially paid, ``00029``/``0029`` failed; any other
  status is *unrecognised*: it never ends a payment. The job stays open (a create answer leaves it
  ``unknown``), is flagged for review, and the reconciler keeps asking.
- The paid amount is compared with the order's on every report. ``0000`` for the full amount is
  ``succeeded``; for more, ``succeeded`` and flagged; for less, ``partially_paid`` and flagged (a
  merchant ships on ``succeeded``). ``0001`` must be more than nothing and less than the order.
  A paid status without any amount ends nothing: it is settled by a query that reports one.
- ``partially_paid`` is open: it may move to itself with a larger paid amount, to ``succeeded``,
  or to ``failed`` (flagged: money moved and may need refunding).
- Closed jobs never move. A paid report for a job closed unpaid, a failure for a succeeded one,
  or a different paid amount for a succeeded one is a conflict: flagged, not applied.
- An amount that may be the order's (a query's or create answer's plain ``amount``, not named
  as paid, equal to the order's amount) never settles a ``partially_paid`` job or a flagged open
  one: the job stays as it is and is flagged (docs/gateway.md §Amounts).
- Only a person, through the review queue (``decide_operator``), settles a flagged job against
  these rules: as ``succeeded`` or ``failed``, from whatever state it is in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation

from worker.domain import states

__all__ = ["Report", "Decision", "decide", "decide_operator", "status_kind", "amount_verdict", "PURGE_ON",
           "CREATE", "QUERY", "CALLBACK", "PAID", "PARTIAL", "PAYING", "FAILED", "UNRECOGNISED"]

# where a report came from
CREATE, QUERY, CALLBACK = "create", "query", "callback"

# what a status stands for
PAID, PARTIAL, PAYING, FAILED, UNRECOGNISED = "paid", "partial", "paying", "failed", "unrecognised"
_KINDS = {"0000": PAID, "0001": PARTIAL, "0015": PAYING, "00029": FAILED, "0029": FAILED}

# Once a job reaches one of these, its payer data is no longer needed to act on it.
PURGE_ON = frozenset({states.PAYING, states.SUCCEEDED, states.PARTIALLY_PAID, states.FAILED,
                      states.DECLINED, states.REJECTED})

_NOT_YET_PAYING = frozenset({states.SUBMITTING, states.UNKNOWN})
_OPEN_AT_GATEWAY = frozenset({states.SUBMITTING, states.UNKNOWN, states.PAYING, states.PARTIALLY_PAID})
_CLOSED_UNPAID = frozenset({states.FAILED, states.DECLINED, states.REJECTED})


@dataclass(frozen=True)
class Report:
    """What the gateway said: ``status``, the amount paid (text, as received) and raw fields.

    ``fields`` are recorded as they are (``gatewayStatus``, ``message``, ``platFormTradeNo``,
    ``paymentLink``, ``gatewayCode``...). ``amount_may_be_order``: the paid amount was not named
    as paid (docs/gateway.md §Amounts).
    """

    source: str
    status: str
    paid_amount: str | None = None
    fields: Mapping[str, object] = field(default_factory=dict)
    # the amount came under a name that may also mean the order's amount (a query's or create
    # answer's plain ``amount``): it never settles a flagged or partially paid job by itself
    amount_may_be_order: bool = False


@dataclass(frozen=True)
class Decision:
    """The one outcome of a report for a job in a given state.

    ``target`` None: no change of state (``annotate`` fields may still be set). A move with
    ``increase`` is allowed from ``partially_paid`` to itself only if ``paidAmount`` grows (checked
    atomically by the store).
    """

    target: str | None
    fields: dict = field(default_factory=dict)
    reason: str = ""
    review: str | None = None
    verdict: str = "n/a"
    count_success: bool = False
    increase: bool = False
    annotate: dict = field(default_factory=dict)

    @property
    def purge(self) -> bool:
        return self.target in PURGE_ON


def status_kind(status: object) -> str:
    """``paid``, ``partial``, ``paying``, ``failed`` or ``unrecognised`` for a status code."""
    return _KINDS.get(str(status) if status is not None else "", UNRECOGNISED)


def _number(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def amount_verdict(kind: str, order_amount: object, paid_amount: object) -> str:
    """How a reported paid amount compares with the order's.

    ``n/a`` (no payment reported), ``missing`` (no usable amount), ``match``, ``under``, ``over``
    for ``0000``; ``partial`` (0 < paid < order), ``over``, ``none_paid`` for ``0001``.
    """
    if kind not in (PAID, PARTIAL):
        return "n/a"
    paid, order = _number(paid_amount), _number(order_amount)
    if paid is None or order is None:
        return "missing"
    if kind == PAID:
        return "match" if paid == order else ("under" if paid < order else "over")
    if paid <= 0:
        return "none_paid"
    return "partial" if paid < order else "over"


def decide(current: str, report: Report, *, order_amount: object = None,
           paid_so_far: object = None, flagged: bool = False) -> Decision:
    """The decision for ``report`` on a job now in ``current`` (see the module docstring);
    ``flagged``: the job is waiting for a person (``needsReview``)."""
    kind = status_kind(report.status)
    verdict = amount_verdict(kind, order_amount, report.paid_amount)
    fields = {k: v for k, v in report.fields.items() if v not in (None, "")}
    fields["gatewayStatus"] = report.status
    if _maybe_order_amount(report, kind, order_amount):
        if current == states.PARTIALLY_PAID or (flagged and current in _OPEN_AT_GATEWAY):
            return Decision(None, reason="amount may be the order's", verdict=verdict,
                            review=f"gateway {report.source} reports status {report.status} with an amount "
                                   "equal to the order's, not named as paid; not settled without a person",
                            annotate={k: fields[k] for k in ("gatewayStatus", "message") if k in fields})
        if current == states.SUCCEEDED:
            # the order's amount says nothing against what a succeeded job recorded as paid
            return Decision(None, reason="stale: already succeeded", verdict=verdict)
    if verdict not in ("n/a", "missing"):
        fields["paidAmount"] = str(report.paid_amount)
    decision = _RULES[kind](current, report, verdict, fields, paid_so_far)
    return replace(decision, verdict=verdict, count_success=decision.target == states.SUCCEEDED)


def _maybe_order_amount(report: Report, kind: str, order_amount: object) -> bool:
    """A paid status whose amount, not named as paid, equals the order's: it may be the order's
    amount, and so says nothing of what was paid."""
    if not report.amount_may_be_order or kind not in (PAID, PARTIAL):
        return False
    paid, order = _number(report.paid_amount), _number(order_amount)
    return paid is not None and paid == order


def _paying(current: str, report: Report, verdict: str, fields: dict, paid_so_far) -> Decision:
    if current in _NOT_YET_PAYING:
        if report.source == CREATE and not fields.get("paymentLink"):
            return Decision(states.UNKNOWN, fields, "checkout created without a payment link")
        return Decision(states.PAYING, fields, f"gateway {report.source}: paying")
    if current in (states.PAYING, states.PARTIALLY_PAID) and fields.get("paymentLink"):
        # our own answer overtaken by a callback: the link is still the payer's way to pay
        link = {k: fields[k] for k in ("paymentLink", "platFormTradeNo") if k in fields}
        return Decision(None, annotate=link, reason="paying (already known)")
    return Decision(None, reason="stale: paying")


def _paid(current: str, report: Report, verdict: str, fields: dict, paid_so_far) -> Decision:
    return _payment(current, report, verdict, fields, paid_so_far, full=True)


def _partial(current: str, report: Report, verdict: str, fields: dict, paid_so_far) -> Decision:
    return _payment(current, report, verdict, fields, paid_so_far, full=False)


def _payment(current: str, report: Report, verdict: str, fields: dict, paid_so_far, *,
             full: bool) -> Decision:
    status = report.status
    if current in _CLOSED_UNPAID or current == states.QUEUED:
        return Decision(None, reason="conflict",
                        review=f"gateway {report.source} reports status {status} (money paid) "
                               f"but the job is {current}")
    if current == states.SUCCEEDED:
        same = _number(paid_so_far) == _number(report.paid_amount)
        if full and not same and verdict != "missing":
            return Decision(None, reason="conflict",
                            review=f"gateway {report.source} reports {report.paid_amount} paid, "
                                   f"the job recorded {paid_so_far}")
        return Decision(None, reason="stale: already succeeded")
    if verdict == "missing":
        # the status says money moved, but not how much: only a report with an amount settles it
        if current == states.SUBMITTING:
            return Decision(states.UNKNOWN, fields, f"status {status} without a paid amount")
        review = (f"gateway {report.source} reports status {status} without a paid amount"
                  if report.source == QUERY else None)
        return Decision(None, reason="paid amount missing", review=review)
    if full and verdict in ("match", "over"):
        review = (f"paid {report.paid_amount}, more than the order's amount" if verdict == "over"
                  else None)
        return Decision(states.SUCCEEDED, fields, f"gateway {report.source}: paid", review)
    # less than the order (0000 short, or 0001): open, partially paid
    review = None
    if full:
        review = f"status {status} (paid) but only {report.paid_amount} of the order paid"
    elif verdict == "over":
        review = f"status {status} (partially paid) but {report.paid_amount} paid, not less than the order"
    elif verdict == "none_paid":
        review = f"status {status} (partially paid) with nothing paid"
    if current == states.PARTIALLY_PAID:
        if not _number(report.paid_amount) > (_number(paid_so_far) or Decimal(0)):
            return Decision(None, reason="stale: no more paid than recorded")
        return Decision(states.PARTIALLY_PAID, fields, f"gateway {report.source}: more paid", review,
                        increase=True)
    return Decision(states.PARTIALLY_PAID, fields, f"gateway {report.source}: partially paid", review)


def _failed(current: str, report: Report, verdict: str, fields: dict, paid_so_far) -> Decision:
    if current in _NOT_YET_PAYING or current == states.PAYING:
        return Decision(states.FAILED, fields, f"gateway {report.source}: failed")
    if current == states.PARTIALLY_PAID:
        return Decision(states.FAILED, fields, f"gateway {report.source}: failed",
                        f"failed after {paid_so_far or 'a partial payment'} was paid; check the refund")
    if current == states.SUCCEEDED:
        return Decision(None, reason="conflict",
                        review=f"gateway {report.source} reports status {report.status} (failed) "
                               "for a succeeded job")
    return Decision(None, reason="stale: already closed")


def _unrecognised(current: str, report: Report, verdict: str, fields: dict, paid_so_far) -> Decision:
    review = f"unrecognised gateway status {report.status!r} ({report.source})"
    if current == states.SUBMITTING:
        return Decision(states.UNKNOWN, fields, "unrecognised transaction status", review)
    return Decision(None, reason="unrecognised status", review=review,
                    annotate={k: fields[k] for k in ("gatewayStatus", "message") if k in fields}
                    if current in _OPEN_AT_GATEWAY else {})


def decide_operator(current: str, target: str) -> Decision:
    """A person settles a job in review as ``succeeded`` or ``failed`` (the review queue).

    The only move that may leave a closed state (a person has read the gateway's records); the
    same state again confirms it and only clears the flag.
    """
    if target not in (states.SUCCEEDED, states.FAILED):
        raise ValueError("a person settles a job as succeeded or failed")
    if current == target:
        return Decision(None, reason="confirmed by a person")
    return Decision(target, {}, "resolved by a person", count_success=target == states.SUCCEEDED)


_RULES = {PAYING: _paying, PAID: _paid, PARTIAL: _partial, FAILED: _failed,
          UNRECOGNISED: _unrecognised}
