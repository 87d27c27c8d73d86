"""Operators of the /ops page: who they are, their passwords, their sessions, their failed logins
(docs/design.md §Access).

An operator has a name, a role (``viewer``, ``operator``, ``admin``: ``worker.domain.access.ROLES``),
an account (one id, or ``*``) and a password, stored only as a ``hashlib.scrypt`` hash: memory-hard,
a random 16-byte salt per operator, its parameters stored with it (``scrypt$<n>$<r>$<p>$<salt>$<hash>``,
base64) so that they can be raised for new passwords without breaking the old ones; compared in
constant time. A password is checked only when someone logs in (``verify``); a logged-in person
then holds a session (``Sessions``): a random id in a cookie, kept in Redis under its SHA-256 with
a TTL, so neither the KDF nor the password runs per page.

Failed logins are counted per name and per address (``LoginLimits``: counters under hashed names,
each living one window from its first failure); at the limit a login is refused before any
password is checked, until the window ends. A success clears the name's counter.

Keys: ``p:ops:operators`` (name -> JSON record), ``p:ops:last_login``, ``p:ops:session:<hash>``,
``p:ops:fail:<name|addr>:<hash>`` (``worker.store.keys``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable

import redis

from worker.config.settings import looks_like_placeholder
from worker.domain.access import ACCOUNT_ID, ALL_ACCOUNTS, ROLES, Principal, role_scopes
from worker.domain.errors import InvalidError
from worker.store.keys import Keys

__all__ = ["Operators", "Sessions", "LoginLimits", "hash_password", "check_password", "password_problem",
           "normalized_name", "NAME", "PASSWORD_MIN", "SCRYPT_PARAMS"]

NAME = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,63}$")  # lower case; an SSO proxy's e-mail address fits
PASSWORD_MIN = 12
PASSWORD_MAX = 1024
# 2**14 x 8 x 128 bytes = 16 MiB and ~50 ms a check on one core: OWASP's scrypt minimum is
# N=2**17 at r=8 (128 MiB); ours is raised by changing these (stored hashes keep their own).
SCRYPT_PARAMS = {"n": 2 ** 14, "r": 8, "p": 1}
_DKLEN = 32


def normalized_name(name: object) -> str:
    return str(name or "").strip().lower()


def password_problem(password: str) -> str | None:
    """Why ``password`` is refused (too short, too long, a placeholder), or None."""
    if len(password) < PASSWORD_MIN:
        return f"a password needs at least {PASSWORD_MIN} characters"
    if len(password) > PASSWORD_MAX:
        return f"a password has at most {PASSWORD_MAX} characters"
    if looks_like_placeholder(password):
        return "a placeholder is not a password"
    return None


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_DKLEN,
                          maxmem=max(64 * 1024 * 1024, 2 * 128 * r * n * p + 1024 * 1024))


def hash_password(password: str, *, n: int | None = None, r: int | None = None, p: int | None = None) -> str:
    """``scrypt$<n>$<r>$<p>$<salt>$<hash>``: a new random salt each time."""
    n, r, p = n or SCRYPT_PARAMS["n"], r or SCRYPT_PARAMS["r"], p or SCRYPT_PARAMS["p"]
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, r, p)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` hashes, with the parameters stored with it."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        given = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(given, expected)


# checked against when the name does not exist, so an unknown name costs what a known one does
_DUMMY = hash_password(secrets.token_hex(16))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Operators:
    """The operator records (``p:ops:operators``)."""

    def __init__(self, client: redis.Redis, keys: Keys, *, clock: Callable[[], float] = time.time):
        self.redis = client
        self.keys = keys
        self.clock = clock

    def add(self, name: str, password: str, role: str, account: str = ALL_ACCOUNTS) -> dict:
        """A new operator; its public record. ``InvalidError`` for a bad name, role, account or
        password, or a name that exists (disabled ones too: names are never reused)."""
        name = normalized_name(name)
        errors = {}
        if not NAME.match(name):
            errors["name"] = ["1 to 64 of a-z 0-9 . _ @ + -, starting with a letter or digit"]
        if role not in ROLES:
            errors["role"] = ["one of: " + ", ".join(ROLES)]
        if account != ALL_ACCOUNTS and not ACCOUNT_ID.match(account or ""):
            errors["account"] = ["an account id ([a-z0-9-]{1,32}) or *"]
        problem = password_problem(password)
        if problem:
            errors["password"] = [problem]
        if errors:
            raise InvalidError("invalid operator", errors=errors)
        record = {"name": name, "role": role, "account": account, "createdAt": int(self.clock() * 1000),
                  "disabled": False, "password": hash_password(password)}
        if not self.redis.hsetnx(self.keys.operators, name, json.dumps(record, sort_keys=True)):
            raise InvalidError("invalid operator", errors={"name": [f"an operator {name!r} exists"]})
        return self.public(record)

    def get(self, name: str) -> dict | None:
        """The stored record (with its hash: never shown), or None."""
        raw = self.redis.hget(self.keys.operators, normalized_name(name))
        return json.loads(raw) if raw else None

    def exist(self) -> bool:
        """Whether any operator was ever added (the deprecated token login ends then)."""
        return bool(self.redis.hlen(self.keys.operators))

    def all(self) -> list[dict]:
        records = [json.loads(raw) for raw in self.redis.hvals(self.keys.operators)]
        last = {_text(k): int(v) for k, v in self.redis.hgetall(self.keys.operators_last_login).items()}
        return [{**self.public(r), **({"lastLoginAt": last[r["name"]]} if r["name"] in last else {})}
                for r in sorted(records, key=lambda r: r["name"])]

    def disable(self, name: str) -> tuple[dict, dict]:
        """Disable ``name`` (``KeyError`` if there is none): its public record before and after.
        Its sessions end at their next request (each request reads the record)."""
        name = normalized_name(name)
        key = self.keys.operators
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.hget(key, name)
                    if raw is None:
                        raise KeyError(name)
                    before = json.loads(raw)
                    after = {**before, "disabled": True, "disabledAt": int(self.clock() * 1000)}
                    pipe.multi()
                    pipe.hset(key, name, json.dumps(after, sort_keys=True))
                    pipe.execute()
                    return self.public(before), self.public(after)
                except redis.WatchError:
                    continue

    def verify(self, name: str, password: str) -> dict | None:
        """The operator's record when ``password`` is theirs and they are not disabled, else None.
        The KDF runs once either way (an unknown name takes as long as a wrong password)."""
        record = self.get(name) if NAME.match(normalized_name(name)) else None
        ok = check_password(password, record["password"] if record else _DUMMY)
        if not ok or record is None or record.get("disabled"):
            return None
        return record

    def logged_in(self, name: str) -> None:
        self.redis.hset(self.keys.operators_last_login, normalized_name(name), int(self.clock() * 1000))

    @staticmethod
    def public(record: dict) -> dict:
        """The record without its hash."""
        return {k: v for k, v in record.items() if k != "password"}

    @staticmethod
    def principal(record: dict) -> Principal:
        return Principal("operator", record["name"], record["account"], role_scopes(record["role"]),
                         record["role"])


class Sessions:
    """Logged-in operators: a random id (the cookie) -> ``{name, at}``, kept under its SHA-256."""

    def __init__(self, client: redis.Redis, keys: Keys, *, ttl_seconds: int,
                 clock: Callable[[], float] = time.time):
        self.redis = client
        self.keys = keys
        self.ttl = int(ttl_seconds)
        self.clock = clock

    def create(self, name: str) -> str:
        session_id = secrets.token_urlsafe(32)
        self.redis.set(self.keys.ops_session(_sha(session_id)),
                       json.dumps({"name": normalized_name(name), "at": int(self.clock() * 1000)}), ex=self.ttl)
        return session_id

    def name(self, session_id: str) -> str | None:
        if not session_id or len(session_id) > 128:
            return None
        raw = self.redis.get(self.keys.ops_session(_sha(session_id)))
        return json.loads(raw)["name"] if raw else None

    def end(self, session_id: str) -> None:
        if session_id and len(session_id) <= 128:
            self.redis.delete(self.keys.ops_session(_sha(session_id)))


class LoginLimits:
    """Failed logins per name and per address, each counted for ``window`` seconds from its first
    failure; at ``per_name`` (or ``per_address``) failures a login is refused until it ends."""

    def __init__(self, client: redis.Redis, keys: Keys, *, per_name: int, per_address: int, window: int):
        self.redis = client
        self.keys = keys
        self.per_name = per_name
        self.per_address = per_address
        self.window = int(window)

    def _keys(self, name: str | None, address: str | None) -> list[tuple[str, int]]:
        """The counters (and their limits) of ``address`` and ``name``, each unless None."""
        keys = []
        if address is not None:
            keys.append((self.keys.ops_failures("addr", _sha(address)), self.per_address))
        if name is not None:
            keys.append((self.keys.ops_failures("name", _sha(normalized_name(name))), self.per_name))
        return keys

    def retry_after(self, name: str | None, address: str | None) -> int:
        """Seconds until a login for ``name`` from ``address`` may be tried again (None: not
        counted that way); 0: now."""
        keys = self._keys(name, address)
        with self.redis.pipeline(transaction=False) as pipe:
            for key, _ in keys:
                pipe.get(key).ttl(key)
            found = pipe.execute()
        waits = [0]
        for i, (_, limit) in enumerate(keys):
            count, ttl = found[2 * i], found[2 * i + 1]
            if int(count or 0) >= limit:
                waits.append(max(1, int(ttl)))
        return max(waits)

    def failed(self, name: str | None, address: str | None) -> None:
        with self.redis.pipeline(transaction=True) as pipe:
            for key, _ in self._keys(name, address):
                pipe.set(key, 0, ex=self.window, nx=True)  # the window starts at the first failure
                pipe.incr(key)
            pipe.execute()

    def succeeded(self, name: str) -> None:
        self.redis.delete(self._keys(name, None)[0][0])


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
