"""``vexora-checkout migrate-keys``: a job's keys from their names before the hash tags to today's.

Before, a job's keys were ``p:job:<tradeNo>``, ``p:job:<tradeNo>:history``, ``:payload`` and
``:retained``, and its webhook attempts ``p:webhooks:attempts:<tradeNo>``; now the tradeNo is a
hash tag, ``p:job:{<tradeNo>}`` and so on (``worker.store.jobs``, docs/redis-cluster.md). This SCANs
for the old names and renames each key to its new one with ``RENAMENX``, which keeps the key's
TTL and never overwrites: a key already under its new name (written by a worker that ran the new
code first) is left as it is, and counted. Run it with the workers stopped (docs/upgrading.md);
running it again renames nothing.

``persist_kept_jobs`` (run by the same command, after the renames) removes the TTL that versions
before issue 20 gave every job: open jobs (each open state's index and entry-time zsets) and
flagged ones (the review set) are kept until they close and are resolved, as ``move.lua`` keeps
them now. It reads those zsets and the set, never SCANs, and is safe to run again.
"""

from __future__ import annotations

import re
from collections import Counter

import redis

from worker.domain import states
from worker.store.keys import Keys

__all__ = ["migrate_keys", "old_names", "persist_kept_jobs"]

_NAME = r"[A-Za-z0-9_-]+"  # a tradeNo (schemas' rule; no brace, no colon); an endpoint's "_endpoint_<id>" too
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def old_names(prefix: str) -> list[tuple[str, re.Pattern, str]]:
    """``(SCAN pattern, old name, kind)`` for every kind of key that was renamed."""
    p = re.escape(prefix)
    glob = _GLOB_SPECIAL.sub(r"\\\1", prefix)
    return [
        (f"{glob}:job:*", re.compile(rf"^{p}:job:(?P<id>{_NAME})(?::(?P<kind>history|payload|retained))?$"), "job"),
        (f"{glob}:webhooks:attempts:*", re.compile(rf"^{p}:webhooks:attempts:(?P<id>{_NAME})$"), "webhook attempts"),
    ]


def _new_name(keys: Keys, kind: str, match: re.Match) -> tuple[str, str]:
    name = match.group("id")
    if kind == "webhook attempts":
        return keys.webhook_attempts(name), kind
    sub = match.group("kind")
    key = {None: keys.job, "history": keys.history, "payload": keys.payload, "retained": keys.retained}[sub](name)
    return key, sub or "job"


def migrate_keys(client: redis.Redis, prefix: str, *, batch: int = 1000) -> Counter:
    """Rename every key under an old name; the counts by kind (``job``, ``history``, ``payload``,
    ``retained``, ``webhook attempts``), plus ``kept`` (the new name existed: not renamed) and
    ``gone`` (expired between the scan and the rename)."""
    keys = Keys(prefix)
    done: Counter = Counter()
    for pattern, old, kind in old_names(prefix):
        pending: list[tuple[str, str, str]] = []
        for raw in client.scan_iter(match=pattern, count=batch):
            key = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            match = old.match(key)
            if match is None:
                continue  # a new name ("{" after the prefix), or not ours
            pending.append((key, *_new_name(keys, kind, match)))
            if len(pending) >= batch:
                _rename(client, pending, done)
                pending = []
        _rename(client, pending, done)
    return done


def _rename(client: redis.Redis, pending: list[tuple[str, str, str]], done: Counter) -> None:
    """One round trip per batch (SCAN may return a key twice: the second rename finds it gone)."""
    if not pending:
        return
    pipe = client.pipeline(transaction=False)
    for old, new, _kind in pending:
        pipe.renamenx(old, new)
    for (_old, _new, kind), answer in zip(pending, pipe.execute(raise_on_error=False)):
        if isinstance(answer, redis.exceptions.ResponseError):
            if "no such key" not in str(answer).lower():
                raise answer
            done["gone"] += 1
        elif answer:
            done[kind] += 1
        else:
            done["kept"] += 1


def persist_kept_jobs(client: redis.Redis, prefix: str, *, batch: int = 1000) -> int:
    """Remove the TTL of every open or flagged job's keys (record, history, payload; a flagged
    tradeNo's orphan entry too); how many had one."""
    keys = Keys(prefix)
    trade_nos: set[str] = set()
    for state in states.OPEN:
        for zset in (keys.index(state), keys.entered(state)):
            trade_nos.update(_text(t) for t in client.zrange(zset, 0, -1))
    trade_nos.update(_text(t) for t in client.smembers(keys.review))
    persisted = 0
    names = sorted(trade_nos)
    for start in range(0, len(names), batch):
        pipe = client.pipeline(transaction=False)
        for trade_no in names[start:start + batch]:
            for key in (keys.job(trade_no), keys.history(trade_no), keys.payload(trade_no), keys.orphan(trade_no)):
                pipe.persist(key)
        persisted += sum(1 for answer in pipe.execute() if answer)
    return persisted


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
