"""The operator's webhook endpoints: where events go, signed with which secrets, which types.

One Redis hash, ``p:webhooks:endpoints``, id -> JSON record ``{id, account, url, secrets: [{secret,
expiresAt}], types, enabled, disabledReason, failingSince, createdAt}``. An endpoint belongs to
one account (``account``; a record written before accounts has none and is ``default``'s): it
receives only that account's jobs' events, and only that account's keys see or change it. Endpoints are set by
the operator (CLI, HTTP API, ``VEXORA_WEBHOOK_URL``/``VEXORA_WEBHOOK_SECRET`` for the endpoint
``default``, which belongs to the account ``default``), never by a job payload. A URL must be http(s) and resolve only to public
addresses, unless ``VEXORA_WEBHOOK_ALLOW_PRIVATE`` (the sandbox and tests): a webhook must not
become a way into the operator's own network. The hash existing is also what tells the store's
move script to record webhook events at all.
"""

from __future__ import annotations

import ipaddress
import json
import secrets as random
import socket
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import redis

from worker.domain.access import ACCOUNT_ID, DEFAULT_ACCOUNT
from worker.domain.errors import InvalidError
from worker.store.keys import Keys
from worker.webhooks.signing import new_secret, secret_bytes

__all__ = ["Endpoints", "EVENT_TYPES", "check_url", "resolve_url", "account_of"]

EVENT_TYPES = ("checkout.paying", "checkout.succeeded", "checkout.partially_paid", "checkout.failed",
               "checkout.declined", "checkout.rejected", "checkout.unknown", "checkout.needs_review",
               "webhook.endpoint_disabled")


def account_of(record: dict) -> str:
    """The account an endpoint belongs to (a record from before accounts: ``default``)."""
    return record.get("account") or DEFAULT_ACCOUNT


def check_url(url: object, *, allow_private: bool,
              resolve: Callable[[str], Iterable[str]] | None = None) -> str | None:
    """Why ``url`` may not receive webhooks, or None. Every address its host resolves to counts."""
    return resolve_url(url, allow_private=allow_private, resolve=resolve)[0]


def resolve_url(url: object, *, allow_private: bool,
                resolve: Callable[[str], Iterable[str]] | None = None) -> tuple[str | None, str | None]:
    """(why ``url`` may not receive webhooks or None, the address to connect to): the host is
    resolved once, every address it resolves to is checked, and the first one is the address a
    POST connects to (pinned: asking the resolver again when connecting could get another answer).
    The address is None for a refused URL."""
    if not isinstance(url, str) or len(url) > 2048:
        return "must be an http(s) URL of at most 2048 characters", None
    parts = urlsplit(url)
    try:
        host = parts.hostname
        parts.port  # noqa: B018 - a port that is not a number is refused here, not when connecting
    except ValueError:
        return "must be an absolute http(s) URL with a host", None
    if parts.scheme not in ("http", "https") or not host:
        return "must be an absolute http(s) URL with a host", None
    try:
        addresses = list((resolve or _resolve)(host))
    except (OSError, UnicodeError):
        return "its host does not resolve", None
    if not addresses:
        return "its host does not resolve", None
    if not allow_private:
        for text in addresses:
            address = ipaddress.ip_address(text.split("%")[0])
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            if not address.is_global or address.is_multicast:
                return ("resolves to a loopback, private or link-local address "
                        "(set VEXORA_WEBHOOK_ALLOW_PRIVATE=true for a local receiver)"), None
    return None, addresses[0]


def _resolve(host: str) -> list[str]:
    try:  # an address already: no lookup
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    return sorted({info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})


class Endpoints:
    """Adds, lists, disables, enables and rotates endpoints; safe to share between threads."""

    def __init__(self, client: redis.Redis, prefix: str, *, allow_private: bool,
                 rotation_grace: float, clock: Callable[[], float] = time.time,
                 resolve: Callable[[str], Iterable[str]] | None = None):
        self.redis = client
        self.key = Keys(prefix).webhook_endpoints  # the store's move script checks it exists
        self.allow_private = allow_private
        self.rotation_grace = rotation_grace
        self.clock = clock
        self.resolve = resolve

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _save(self, record: dict) -> dict:
        self.redis.hset(self.key, record["id"], json.dumps(record))
        return record

    def get(self, endpoint_id: str) -> dict | None:
        raw = self.redis.hget(self.key, endpoint_id)
        return json.loads(raw) if raw else None

    def all(self, account: str | None = None) -> list[dict]:
        """The endpoints, oldest first: of one ``account``, or (None) of every account."""
        records = (json.loads(v) for v in self.redis.hvals(self.key))
        return sorted((r for r in records if account is None or account_of(r) == account),
                      key=lambda r: r["createdAt"])

    def add(self, url: str, *, types: Iterable[str] = (), secret: str | None = None,
            account: str = DEFAULT_ACCOUNT, endpoint_id: str | None = None) -> dict:
        """A new endpoint of ``account`` (its secret generated unless given); InvalidError names
        the field."""
        errors = {}
        if not isinstance(account, str) or not ACCOUNT_ID.match(account):
            errors["account"] = ["an account id: [a-z0-9-]{1,32}"]
        why = check_url(url, allow_private=self.allow_private, resolve=self.resolve)
        if why:
            errors["url"] = [why]
        types = list(types or [])
        unknown = [t for t in types if t not in EVENT_TYPES]
        if unknown:
            errors["types"] = [f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}"]
        secret = secret or new_secret()
        try:
            secret_bytes(secret)
        except ValueError as exc:
            errors["secret"] = [str(exc)]
        if errors:
            raise InvalidError("the endpoint is not valid", errors=errors)
        record = {"id": endpoint_id or "ep_" + random.token_hex(6), "account": account, "url": url,
                  "secrets": [{"secret": secret, "expiresAt": None}], "types": types, "enabled": True,
                  "disabledReason": None, "failingSince": None, "createdAt": self._now_ms()}
        return self._save(record)

    def sync_default(self, url: str, secret: str) -> dict | None:
        """The endpoint ``default`` from the settings; a changed secret is a rotation."""
        if not url:
            return None
        current = self.get("default")
        if current is None:
            return self.add(url, secret=secret or None, account=DEFAULT_ACCOUNT, endpoint_id="default")
        if current["url"] != url:
            why = check_url(url, allow_private=self.allow_private, resolve=self.resolve)
            if why:
                raise InvalidError("VEXORA_WEBHOOK_URL is not valid", errors={"url": [why]})
            current["url"] = url
        if secret and secret != current["secrets"][0]["secret"]:
            return self.rotate("default", secret, record=current)
        return self._save(current)

    def rotate(self, endpoint_id: str, secret: str | None = None, *, record: dict | None = None) -> dict:
        """A new secret signs from now on; the old ones also sign for the grace period."""
        record = record or self._require(endpoint_id)
        secret = secret or new_secret()
        try:
            secret_bytes(secret)
        except ValueError as exc:
            raise InvalidError("the secret is not valid", errors={"secret": [str(exc)]}) from None
        until = self._now_ms() + int(self.rotation_grace * 1000)
        old = [{"secret": s["secret"], "expiresAt": min(s["expiresAt"] or until, until)}
               for s in record["secrets"] if s["secret"] != secret]
        record["secrets"] = [{"secret": secret, "expiresAt": None}, *old]
        return self._save(record)

    def set_enabled(self, endpoint_id: str, enabled: bool, reason: str | None = None) -> dict:
        record = self._require(endpoint_id)
        record.update(enabled=enabled, disabledReason=None if enabled else (reason or "disabled by the operator"),
                      disabledAt=None if enabled else self._now_ms())
        if enabled:
            record["failingSince"] = None
        return self._save(record)

    def failing(self, endpoint_id: str, failing: bool) -> dict | None:
        """Note a failed or a good delivery; the record, with ``failingSince`` kept or cleared."""
        record = self.get(endpoint_id)
        if record is None:
            return None
        if failing and not record.get("failingSince"):
            record["failingSince"] = self._now_ms()
        elif not failing and record.get("failingSince"):
            record["failingSince"] = None
        else:
            return record
        return self._save(record)

    def signing_secrets(self, record: dict) -> list[str]:
        now = self._now_ms()
        return [s["secret"] for s in record["secrets"] if not s["expiresAt"] or s["expiresAt"] > now]

    def _require(self, endpoint_id: str) -> dict:
        record = self.get(endpoint_id)
        if record is None:
            raise KeyError(endpoint_id)
        return record

    @staticmethod
    def public(record: dict) -> dict:
        """A record as listed: the secrets' tails only (the full secret is shown once, at creation)."""
        shown = {k: v for k, v in record.items() if k != "secrets"}
        shown["account"] = account_of(record)
        shown["secrets"] = [{"secretEnd": s["secret"][-4:], "expiresAt": s["expiresAt"]} for s in record["secrets"]]
        return shown
