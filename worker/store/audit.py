"""The audit log: every operator and admin action, appended to one Redis stream (docs/design.md §Access).

``AuditLog.record(principal, action, …)`` appends who (the principal's label, kind and account),
when (the store's clock, ms), from which address, what (``action``, e.g. ``review.resolve``,
``key.create``, ``login.failed``; its ``target``: a tradeNo, an endpoint id, a key id, an
operator's name), and the record before and after where there is one. Entries older than the
retention (``VEXORA_AUDIT_RETENTION_DAYS``) are trimmed as new ones are appended (``MINID``):
nobody consumes this stream, it is read by time (``read``: newest first).

No secret is ever passed here: a key is named by its id, a password never appears, and callers
pass records as the API shows them (payer data masked).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping

import redis

from worker.domain.access import Principal
from worker.store.keys import Keys

__all__ = ["AuditLog", "DAY_MS", "is_entry_id"]

DAY_MS = 24 * 3600 * 1000
_ENTRY_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")  # fullmatch: ASCII digits, no trailing newline
_STREAM_PART_MAX = 2 ** 64 - 1  # each half of a stream entry id


def is_entry_id(text: object) -> bool:
    """Whether ``text`` is an entry id Redis can hold (``<ms>-<seq>``, each at most 2^64 - 1):
    what ``read``'s ``before_id`` must be (a page's ``next``)."""
    return (isinstance(text, str) and bool(_ENTRY_ID.fullmatch(text))
            and all(int(part) <= _STREAM_PART_MAX for part in text.split("-")))


class AuditLog:
    """Appends and reads the audit stream ``p:audit``."""

    def __init__(self, client: redis.Redis, keys: Keys, *, retention_days: int = 400,
                 clock=time.time):
        self.redis = client
        self.key = keys.audit
        self.retention_ms = int(retention_days) * DAY_MS
        self.clock = clock

    def record(self, principal: Principal | None, action: str, *, target: str = "",
               account: str = "", address: str | None = None, before: Mapping | None = None,
               after: Mapping | None = None, detail: Mapping | None = None) -> str:
        """Append one entry; its stream id. ``principal`` None: someone not identified (a failed
        login names the name tried in ``target``)."""
        now = int(self.clock() * 1000)
        entry = {
            "at": now,
            "actor": principal.label if principal else "anonymous",
            "actorKind": principal.kind if principal else "",
            "actorAccount": principal.account if principal else "",
            "action": action,
            "target": target or "",
            "account": account or "",
            "address": address or "",
            "before": json.dumps(dict(before), sort_keys=True, default=str) if before is not None else "",
            "after": json.dumps(dict(after), sort_keys=True, default=str) if after is not None else "",
            "detail": json.dumps(dict(detail), sort_keys=True, default=str) if detail is not None else "",
        }
        # trimmed by age as it grows: an entry is kept at least the retention (MINID ~ trims only
        # whole macro-nodes older than it)
        return self.redis.xadd(self.key, entry, minid=f"{max(0, now - self.retention_ms)}-0",
                               approximate=True)

    def read(self, *, since_ms: int | None = None, until_ms: int | None = None, limit: int = 100,
             account: str | None = None, before_id: str | None = None) -> list[dict]:
        """Entries newest first, at most ``limit``; ``account`` keeps one account's (and those
        for every account); ``before_id`` pages on from an entry's ``id``."""
        if before_id is not None and not is_entry_id(before_id):
            raise ValueError("before_id: an entry id")
        if before_id is not None and before_id.replace("0", "") == "-":
            return []  # 0-0: nothing is older than the first entry
        high = (f"({before_id}" if before_id else
                (f"{until_ms}-{_STREAM_PART_MAX}" if until_ms is not None else "+"))
        low = f"{since_ms}-0" if since_ms is not None else "-"
        out: list[dict] = []
        while len(out) < limit:
            batch = self.redis.xrevrange(self.key, max=high, min=low, count=max(limit * 2, 50))
            if not batch:
                break
            for entry_id, fields in batch:
                item = _decoded(entry_id, fields)
                if account and item["account"] not in ("", "*", account):
                    continue
                out.append(item)
                if len(out) >= limit:
                    break
            high = f"({_text(batch[-1][0])}"
        return out


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decoded(entry_id, fields: Mapping) -> dict:
    item = {_text(k): _text(v) for k, v in fields.items()}
    out = {"id": _text(entry_id), "at": int(item.get("at") or 0)}
    for name in ("actor", "actorKind", "actorAccount", "action", "target", "account", "address"):
        out[name] = item.get(name, "")
    for name in ("before", "after", "detail"):
        out[name] = json.loads(item[name]) if item.get(name) else None
    return out
