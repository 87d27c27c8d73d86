"""Per-IP daily limits (docs/gateway.md §Limits): each payer IP at most N transactions a Japan calendar
day, at most M of them successful.

Counters live in one Redis hash per IP, day and merchant account, ``p:ip:<yyyymmdd>:<ipHash>``
with fields ``tx`` and ``ok``. The IP itself is never a key: ``ip_hash`` is an HMAC under the
account's app secret of the address's canonical text (one payer, however the address is spelt),
so the counters outlive the purge of payer data without keeping the address. The gateway counts
per merchant, so the counters are per account: another account's ``ipHash`` starts with its id
(``shop-a:<hmac>``, its HMAC over the id and the address), so its counters are its own keys,
``p:ip:<yyyymmdd>:shop-a:<hmac>``; the ``default`` account's are named as before accounts. A transaction is counted before the first
send (``take``), once per job (the job records it in the same step, so a re-drive after a crash
does not count it again); a success is counted by the move to ``succeeded`` — whichever path
makes it: callback, query or create answer — in the same atomic step (``success_counter``), so
it counts exactly once.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import redis

from worker.domain.access import DEFAULT_ACCOUNT
from worker.store import scripts
from worker.store.keys import Keys

__all__ = ["IpLimits", "ip_hash", "canonical_ip", "japan_day"]

_JST = timezone(timedelta(hours=9))  # Japan has no daylight saving time
_TTL = 3 * 24 * 3600

def canonical_ip(ip: str) -> str:
    """One spelling per address: ``2400:AB00:0::1`` is ``2400:ab00::1``, ``::ffff:1.2.3.4`` is
    ``1.2.3.4``; text that is not an address is kept as it is (the schema refuses it first)."""
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.compressed


def ip_hash(ip: str, secret: str, account: str = DEFAULT_ACCOUNT) -> str:
    """A stable, non-reversible name for a payer IP within one merchant account (every spelling
    of one address alike); another account's starts with its id, so its counters are its own."""
    if account == DEFAULT_ACCOUNT:
        return hmac.new(secret.encode("utf-8"), canonical_ip(ip).encode("utf-8"), hashlib.sha256).hexdigest()[:32]
    text = f"{account}\n{canonical_ip(ip)}".encode("utf-8")
    return f"{account}:" + hmac.new(secret.encode("utf-8"), text, hashlib.sha256).hexdigest()[:32]


def japan_day(now: float) -> str:
    return datetime.fromtimestamp(now, _JST).strftime("%Y%m%d")


class IpLimits:
    """Counts and checks transactions and successes per payer IP and Japan day."""

    def __init__(self, client: redis.Redis, *, prefix: str, daily: int, daily_successes: int,
                 enabled: bool = True, clock: Callable[[], float] = time.time):
        self.redis = client
        self.prefix = prefix
        self.daily = daily
        self.daily_successes = daily_successes
        self.enabled = enabled
        self.clock = clock
        self.keys = Keys(prefix)
        self._take = scripts.register(client, "ip_take")

    def key(self, hashed_ip: str) -> str:
        return self.keys.ip_day(japan_day(self.clock()), hashed_ip)

    def take(self, hashed_ip: str, trade_no: str, job_key: str) -> str | None:
        """Count one transaction for the job at ``job_key``, once (a job already counted passes
        again without counting); or, if a limit is reached, count nothing and say why."""
        if not self.enabled:
            return None
        refused = self._take(keys=[self.key(hashed_ip), job_key],
                             args=[self.daily, self.daily_successes, _TTL, hashed_ip])
        if not refused:
            return None
        refused = refused.decode() if isinstance(refused, bytes) else refused
        if refused == "transactions":
            return f"daily limit reached: at most {self.daily} transactions per payer IP a day"
        return f"daily limit reached: at most {self.daily_successes} successful payments per payer IP a day"

    def success_counter(self, hashed_ip: str | None) -> list[tuple[str, str, int]]:
        """The counter a move to ``succeeded`` increments (for ``JobStore.move``)."""
        if not self.enabled or not hashed_ip:
            return []
        return [(self.key(hashed_ip), "ok", _TTL)]

    def counts(self, hashed_ip: str) -> dict[str, int]:
        raw = self.redis.hgetall(self.key(hashed_ip))
        return {k.decode(): int(v) for k, v in raw.items()}
