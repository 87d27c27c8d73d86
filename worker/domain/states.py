"""Job states and the only moves between them (docs/design.md §Job states).

A state never moves backwards: each target state lists the states it may be entered from, and
the store refuses every other move atomically. ``submitting`` may be re-entered from itself only
once its lease has expired (a worker died holding it); ``partially_paid`` only with a larger paid
amount. Which report leads to which move is ``worker.domain.settlement``'s to decide.
"""

from __future__ import annotations

__all__ = [
    "QUEUED", "SUBMITTING", "PAYING", "SUCCEEDED", "PARTIALLY_PAID", "FAILED",
    "REJECTED", "DECLINED", "UNKNOWN", "ALL", "TERMINAL", "OPEN", "ENTERED_FROM", "can_move",
]

QUEUED = "queued"
SUBMITTING = "submitting"
PAYING = "paying"
SUCCEEDED = "succeeded"
PARTIALLY_PAID = "partially_paid"
FAILED = "failed"
REJECTED = "rejected"
DECLINED = "declined"
UNKNOWN = "unknown"

ALL = (QUEUED, SUBMITTING, PAYING, SUCCEEDED, PARTIALLY_PAID, FAILED, REJECTED, DECLINED, UNKNOWN)
TERMINAL = frozenset({SUCCEEDED, FAILED, REJECTED, DECLINED})
# States a process may still have to act on; the store indexes these by time for the reconciler.
OPEN = tuple(s for s in ALL if s not in TERMINAL)

# target state -> states it may be entered from
ENTERED_FROM: dict[str, frozenset[str]] = {
    QUEUED: frozenset(),
    SUBMITTING: frozenset({QUEUED, SUBMITTING, UNKNOWN}),
    PAYING: frozenset({SUBMITTING, UNKNOWN}),
    UNKNOWN: frozenset({SUBMITTING}),
    DECLINED: frozenset({SUBMITTING, UNKNOWN}),
    REJECTED: frozenset({QUEUED, SUBMITTING}),
    # Payment outcomes may overtake the submit's own answer (a callback can arrive first).
    # partially_paid is open: more may be paid (a self-move, only with a larger paid amount),
    # the rest may be paid, or the payment may fail.
    PARTIALLY_PAID: frozenset({SUBMITTING, UNKNOWN, PAYING, PARTIALLY_PAID}),
    SUCCEEDED: frozenset({SUBMITTING, UNKNOWN, PAYING, PARTIALLY_PAID}),
    FAILED: frozenset({SUBMITTING, UNKNOWN, PAYING, PARTIALLY_PAID}),
}


def can_move(current: str, target: str) -> bool:
    """True when ``current -> target`` is a forward move."""
    return current in ENTERED_FROM.get(target, frozenset())
