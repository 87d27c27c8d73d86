"""API keys: created by an admin at the shell, shown once, stored as a hash only (docs/design.md §Access).

A key's text is ``vxk_<id>_<secret>``: ``id`` (``key_`` + 12 hex digits) names its record, so the
server finds it with one ``HGET`` and no scan; ``secret`` is 32 random bytes (256 bits, hex).
Only the SHA-256 of the whole text is kept: a key has far more entropy than any password, so a
fast hash cannot be brute-forced, and a slow KDF (scrypt, as for operators' passwords) would
only cost CPU on every API request.

Records live in the hash ``p:apikeys`` (id -> JSON ``{id, name, account, scopes, sha256,
createdAt, revokedAt}``); when each key was last used is the hash ``p:apikeys:used`` (id -> ms),
written at most once a minute per key and process (``touch_every``), never on every request.
A revoked key stays listed (who had what) and is refused from the moment it is revoked: nothing
is cached.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable

import redis

from worker.domain.access import ACCOUNT_ID, ALL_ACCOUNTS, SCOPES, Principal
from worker.domain.errors import InvalidError
from worker.store.keys import Keys

__all__ = ["ApiKeys", "KEY_TEXT", "parse_key", "key_hash", "principal_of"]

KEY_TEXT = re.compile(r"^vxk_(key_[0-9a-f]{12})_([0-9a-f]{64})$")
TOUCH_EVERY_S = 60.0


def parse_key(text: str) -> str | None:
    """The id a key's text names, or None when it is not a key's text."""
    match = KEY_TEXT.match(text or "")
    return match.group(1) if match else None


def key_hash(text: str) -> str:
    """What is stored of a key: the SHA-256 of its whole text (hex)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def principal_of(record: dict) -> Principal:
    """Who a key's record makes a request: ``key:<id>``, its account, its scopes."""
    return Principal("key", record["id"], record["account"], frozenset(record["scopes"]))


def key_errors(account: object, scopes: Iterable[str], name: object,
               known_accounts: Iterable[str] | None) -> dict[str, list[str]]:
    """Why a key cannot be created as asked (field -> messages); empty when it can."""
    errors: dict[str, list[str]] = {}
    known = set(known_accounts) if known_accounts is not None else None
    if not isinstance(account, str) or not (account == ALL_ACCOUNTS or ACCOUNT_ID.match(account)):
        errors["account"] = ["an account id ([a-z0-9-]{1,32}) or * (every account)"]
    elif known is not None and account != ALL_ACCOUNTS and account not in known:
        errors["account"] = [f"unknown account {account!r}; known: {', '.join(sorted(known))} or *"]
    scopes = list(scopes)
    unknown = [s for s in scopes if s not in SCOPES]
    if not scopes:
        errors["scope"] = [f"at least one scope: {', '.join(SCOPES)}"]
    elif unknown:
        errors["scope"] = [f"unknown scope {', '.join(map(repr, unknown))}; known: {', '.join(SCOPES)}"]
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        errors["name"] = ["a name of 1 to 100 characters (what the key is for)"]
    return errors


class ApiKeys:
    """Creates, lists, revokes and checks API keys; safe to share between threads."""

    def __init__(self, client: redis.Redis, keys: Keys, *, clock: Callable[[], float] = time.time,
                 touch_every: float = TOUCH_EVERY_S):
        self.redis = client
        self.key = keys.api_keys
        self.used_key = keys.api_keys_used
        self.clock = clock
        self.touch_every = touch_every
        self._touched: dict[str, float] = {}  # key id -> when this process last wrote lastUsed
        self._lock = threading.Lock()

    def create(self, name: str, account: str, scopes: Iterable[str], *,
               known_accounts: Iterable[str] | None = None) -> tuple[dict, str]:
        """A new key: (its record, its text). The text is returned here and nowhere else, ever."""
        scopes = list(dict.fromkeys(scopes))
        errors = key_errors(account, scopes, name, known_accounts)
        if errors:
            raise InvalidError("the key cannot be created", errors=errors)
        key_id = "key_" + secrets.token_hex(6)
        text = f"vxk_{key_id}_{secrets.token_hex(32)}"
        record = {"id": key_id, "name": name.strip(), "account": account,
                  "scopes": [s for s in SCOPES if s in scopes], "sha256": key_hash(text),
                  "createdAt": int(self.clock() * 1000), "revokedAt": None}
        if not self.redis.hsetnx(self.key, key_id, json.dumps(record)):
            raise RuntimeError("a key id was drawn twice")  # 48 random bits: never in practice
        return record, text

    def get(self, key_id: str) -> dict | None:
        raw = self.redis.hget(self.key, key_id)
        return json.loads(raw) if raw else None

    def all(self) -> list[dict]:
        """Every key (revoked ones too), oldest first, each with ``lastUsedAt`` (ms or None)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hvals(self.key)
        pipe.hgetall(self.used_key)
        raw, used = pipe.execute()
        used = {_text(k): int(v) for k, v in used.items()}
        records = [json.loads(v) for v in raw]
        for record in records:
            record["lastUsedAt"] = used.get(record["id"])
        return sorted(records, key=lambda r: (r["createdAt"], r["id"]))

    def revoke(self, key_id: str) -> dict:
        """Refuse the key from now on; its record (``KeyError`` for an unknown id)."""
        record = self.get(key_id)
        if record is None:
            raise KeyError(key_id)
        if not record.get("revokedAt"):
            record["revokedAt"] = int(self.clock() * 1000)
            self.redis.hset(self.key, key_id, json.dumps(record))
        return record

    def authenticate(self, text: str) -> dict | None:
        """The record of the live key whose text this is, or None (unknown, wrong, revoked).
        One ``HGET``; ``lastUsedAt`` written at most once a ``touch_every`` per key."""
        key_id = parse_key(text)
        if key_id is None:
            return None
        record = self.get(key_id)
        if record is None or record.get("revokedAt"):
            return None
        if not hmac.compare_digest(record.get("sha256", ""), key_hash(text)):
            return None
        self._touch(key_id)
        return record

    @staticmethod
    def public(record: dict) -> dict:
        """A record as listed: never the hash (and the key itself is nowhere to show)."""
        return {k: v for k, v in record.items() if k != "sha256"}

    def _touch(self, key_id: str) -> None:
        now = self.clock()
        with self._lock:
            last = self._touched.get(key_id)
            if last is not None and now - last < self.touch_every:
                return
            self._touched[key_id] = now
        self.redis.hset(self.used_key, key_id, int(now * 1000))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
