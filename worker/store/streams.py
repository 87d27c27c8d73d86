"""The store's streams (``p:events``, the webhook outbox) kept bounded without losing an entry
nobody read: the trim pass and what the metrics say of each stream's readers.

Entries are written without a cap (``XADD`` with no ``MAXLEN``: a cap trims whether or not a
consumer group has read them); ``trim`` then removes, from the oldest end, only entries that are
beyond the newest ``VEXORA_EVENTS_MAXLEN``, read and acknowledged by every consumer group of the
stream, and (the outbox) older than its replay horizon — ``lua/stream_trim.lua``, one atomic step
per batch. A stream no group reads (``p:events`` when no app runs an ``EventConsumer``) is simply
capped at ``VEXORA_EVENTS_MAXLEN``, as before.
"""

from __future__ import annotations

import time

import redis

from worker.store import scripts

__all__ = ["StreamTrimmer", "readers"]

TRIM_BATCH = 1000  # entries per script call: a call stays short however long the backlog
_COUNT_CAP = 10_000  # unread entries counted one by one (Redis < 7 reports no group lag)


class StreamTrimmer:
    """Trims streams in batches until nothing more may go, or ``budget`` seconds are spent."""

    def __init__(self, client: redis.Redis, *, batch: int = TRIM_BATCH):
        self.redis = client
        self.batch = batch
        self._trim = scripts.register(client, "stream_trim")

    def trim(self, key: str, maxlen: int, *, keep_from_ms: int | None = None,
             budget: float = 5.0) -> tuple[int, str]:
        """(entries removed, what held the trim last: ``count``, ``group:<name>``, ``horizon``,
        ``batch`` when the budget ran out first)."""
        keep_from = "" if keep_from_ms is None else f"{int(keep_from_ms)}-0"
        removed, held, deadline = 0, "count", time.monotonic() + budget
        while True:
            try:
                n, why = self._trim(keys=[key], args=[int(maxlen), keep_from, self.batch])
            except redis.exceptions.ResponseError as exc:
                if "no such key" in str(exc).lower():
                    return removed, "count"
                raise
            removed += int(n)
            held = why.decode() if isinstance(why, bytes) else str(why)
            if held != "batch" or time.monotonic() >= deadline:
                return removed, held


def readers(client: redis.Redis, key: str) -> list[dict]:
    """Each consumer group of a stream: ``{group, unread, oldestUnreadMs}`` — entries delivered to
    none of its consumers or delivered and not acknowledged; ``unread`` counts at most
    10,000 one by one where Redis (before 7) reports no lag; ``oldestUnreadMs`` None: nothing
    unread. No group (or no stream): an empty list."""
    try:
        groups = client.xinfo_groups(key)
    except redis.exceptions.ResponseError:
        return []
    out = []
    for g in groups:
        name = _text(g["name"])
        last = _text(g["last-delivered-id"])
        pipe = client.pipeline(transaction=False)
        pipe.xpending_range(key, name, min="-", max="+", count=1)
        pipe.xrange(key, min="(" + last, max="+", count=1 if g.get("lag") is not None else _COUNT_CAP)
        pending_first, undelivered = pipe.execute()
        lag = g.get("lag")
        unread = int(g["pending"]) + (int(lag) if lag is not None else len(undelivered))
        firsts = [_text(pending_first[0]["message_id"])] if pending_first else []
        if undelivered:
            firsts.append(_text(undelivered[0][0]))
        oldest = min((int(i.split("-")[0]) for i in firsts), default=None)
        out.append({"group": name, "unread": unread, "oldestUnreadMs": oldest})
    return out


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
