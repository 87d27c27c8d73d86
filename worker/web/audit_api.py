"""``GET /v1/audit``: the audit log (``worker.store.audit``), newest first, for admins (scope ``audit:read``).

Query parameters: ``since`` and ``until`` (ISO-8601, or epoch milliseconds, or — ``since`` only — a
duration back from now such as ``24h``, ``30m``, ``7d``), ``limit`` (1–500, default 100),
``before`` (an entry's ``id``: the page after it), ``account`` (a principal of every account may
narrow to one; a principal of one account sees only its own and those for every account). Answer:
``{"entries": [...], "next": <the id to pass as before, or null>}``; each entry ``{id, at, actor,
actorKind, actorAccount, action, target, account, address, before, after, detail}``. A bad
parameter is a 400 problem document naming it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timezone

import redis
from flask import Blueprint, g, jsonify, request

from worker.domain.access import ACCOUNT_ID, ALL_ACCOUNTS
from worker.runtime.wiring import Runtime
from worker.store.audit import is_entry_id
from worker.web.problems import problem

__all__ = ["audit_api", "parse_when", "LIMIT_MAX"]

LIMIT_MAX = 500
# the times a query may name: from the epoch to 9999-12-31T23:59:59.999Z (what ISO-8601 can write)
TIME_MAX_MS = 253_402_300_799_999
_DURATION = re.compile(r"^(\d{1,9})([smhd])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_when(text: str, *, now_ms: int | None = None, durations: bool = True) -> int:
    """A time as epoch milliseconds: ISO-8601 (``Z`` or an offset; naive is UTC), epoch
    milliseconds (digits), or a duration back from ``now_ms`` (``90s``, ``30m``, ``24h``, ``7d``).
    ``ValueError`` for anything else."""
    text = (text or "").strip()
    if not text:
        raise ValueError("empty")
    match = _DURATION.match(text)
    if match and durations:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return max(0, now - int(match.group(1)) * _UNIT_MS[match.group(2)])  # at most back to the epoch
    if text.isascii() and text.isdigit():
        return _bounded(int(text))
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError("an ISO-8601 time, epoch milliseconds or a duration like 24h") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return _bounded(int(when.timestamp() * 1000))


def _bounded(ms: int) -> int:
    """``ms`` if it is a time from the epoch to 9999-12-31T23:59:59.999Z, else ``ValueError``
    (the stream's ids hold no time before the epoch, and none past 2^64)."""
    if not 0 <= ms <= TIME_MAX_MS:
        raise ValueError("a time from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z")
    return ms


def audit_api(guard: Callable[[], object], runtime: Callable[[], Runtime]) -> Blueprint:
    """The ``/v1/audit`` blueprint; ``guard`` authenticates (None: go on, else the answer)."""
    api = Blueprint("audit_api", __name__)

    @api.before_request
    def authenticate():
        return guard()  # scope: audit:read (the bearer guard of worker.web.api says which principal)

    @api.get("/v1/audit")
    def read_audit():
        args = request.args
        try:
            since = parse_when(args["since"]) if args.get("since") else None
        except ValueError as exc:
            return problem(400, f"since: {exc}")
        try:
            until = parse_when(args["until"], durations=False) if args.get("until") else None
        except ValueError as exc:
            return problem(400, f"until: {exc}")
        try:
            limit = int(args.get("limit", "100"))
            if not 1 <= limit <= LIMIT_MAX:
                raise ValueError
        except ValueError:
            return problem(400, f"limit: a whole number from 1 to {LIMIT_MAX}")
        before = args.get("before") or None
        if before and not _entry_id(before):
            return problem(400, "before: an entry's id (as in next)")
        account = args.get("account") or None
        if account and account != ALL_ACCOUNTS and not ACCOUNT_ID.match(account):
            return problem(400, "account: an account id")
        principal = g.get("principal")
        if principal is not None and principal.account != ALL_ACCOUNTS:
            account = principal.account  # one account's principal: its own entries only
        if before and before.replace("0", "") == "-":  # 0-0: no entry is older than the first one
            return jsonify({"entries": [], "next": None})
        try:
            entries = runtime().audit.read(since_ms=since, until_ms=until, limit=limit,
                                           account=None if account in (None, ALL_ACCOUNTS) else account,
                                           before_id=before)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            return problem(503, "temporarily unavailable")
        return jsonify({"entries": entries, "next": entries[-1]["id"] if len(entries) == limit else None})

    return api


def _entry_id(text: str) -> bool:
    """Whether ``text`` is a stream entry id: ``<ms>-<seq>``, each at most 2^64 - 1."""
    return is_entry_id(text)
