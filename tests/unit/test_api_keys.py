"""API keys' pure rules (worker/store/apikeys.py) and the per-account filters of endpoints, the
review queue and replay. End to end, through the CLI and gunicorn: tests/integration/test_api_keys.py."""

from __future__ import annotations

import hashlib
import json

import pytest

from worker.domain import access
from worker.domain.errors import InvalidError
from worker.flows.review import _belongs
from worker.store.apikeys import ApiKeys, key_errors, key_hash, parse_key, principal_of
from worker.store.keys import Keys
from worker.webhooks.endpoints import Endpoints, account_of
from worker.webhooks.outbox import _event_account


class _Hashes:
    """Just the hash commands ApiKeys uses, counting the writes (the store's logic is under test,
    not Redis: the real thing is tests/integration/test_api_keys.py)."""

    def __init__(self):
        self.data: dict[str, dict[str, str]] = {}
        self.writes: list[tuple[str, str]] = []

    def hsetnx(self, key, field, value):
        if field in self.data.setdefault(key, {}):
            return 0
        self.data[key][field] = value
        return 1

    def hset(self, key, field, value):
        self.writes.append((key, field))
        self.data.setdefault(key, {})[field] = str(value)

    def hget(self, key, field):
        return self.data.get(key, {}).get(field)


def test_a_keys_text_names_its_record_and_only_its_sha256_is_kept():
    now = [1000.0]
    store = ApiKeys(_Hashes(), Keys("t"), clock=lambda: now[0])
    record, text = store.create("backend", "shop-a", [access.CHECKOUTS_READ])
    assert parse_key(text) == record["id"] and record["id"].startswith("key_")
    assert record["sha256"] == hashlib.sha256(text.encode()).hexdigest() == key_hash(text)
    secret = text.rsplit("_", 1)[1]
    assert len(bytes.fromhex(secret)) * 8 >= 128  # at least 128 bits: a fast hash is enough
    assert text not in json.dumps(record) and secret not in json.dumps(record)
    assert "sha256" not in store.public(record)
    assert store.authenticate(text)["id"] == record["id"]
    assert store.authenticate(text[:-1] + ("0" if text[-1] != "0" else "1")) is None  # same id, wrong secret
    assert store.authenticate("vxk_key_000000000000_" + "0" * 64) is None  # no such record
    for junk in ("", "Bearer x", text + "x", text.upper(), "vxk_" + record["id"]):
        assert parse_key(junk) is None and store.authenticate(junk) is None
    store.revoke(record["id"])
    assert store.authenticate(text) is None
    with pytest.raises(KeyError):
        store.revoke("key_ffffffffffff")


def test_last_used_is_written_at_most_once_a_minute_per_key():
    now = [1000.0]
    redis = _Hashes()
    store = ApiKeys(redis, Keys("t"), clock=lambda: now[0])
    (_, one), (_, two) = (store.create(n, "default", [access.CHECKOUTS_READ]) for n in ("one", "two"))
    used = [w for w in redis.writes if w[0] == "t:apikeys:used"]
    assert used == []
    for _ in range(50):
        store.authenticate(one)
    store.authenticate(two)
    assert len([w for w in redis.writes if w[0] == "t:apikeys:used"]) == 2  # one per key
    now[0] += 59
    store.authenticate(one)
    assert len([w for w in redis.writes if w[0] == "t:apikeys:used"]) == 2
    now[0] += 2
    store.authenticate(one)
    assert len([w for w in redis.writes if w[0] == "t:apikeys:used"]) == 3


def test_a_key_is_refused_for_an_unknown_account_or_scope_with_a_reason():
    assert key_errors("default", [access.CHECKOUTS_READ], "x", {"default"}) == {}
    assert key_errors("*", list(access.SCOPES), "x", {"default"}) == {}
    assert "account" in key_errors("shop-b", [access.CHECKOUTS_READ], "x", {"default"})
    assert "account" in key_errors("Shop B", [access.CHECKOUTS_READ], "x", None)
    assert "scope" in key_errors("default", ["checkouts:delete"], "x", {"default"})
    assert "scope" in key_errors("default", [], "x", {"default"})
    assert "scope" in key_errors("default", [access.ADMIN], "x", {"default"})  # no key manages keys
    assert "name" in key_errors("default", [access.CHECKOUTS_READ], " ", {"default"})
    with pytest.raises(InvalidError) as refused:
        ApiKeys(_Hashes(), Keys("t")).create("x", "nope", ["checkouts:read"], known_accounts={"default"})
    assert "unknown account 'nope'" in refused.value.errors["account"][0]


def test_a_keys_principal_is_its_id_account_and_scopes():
    principal = principal_of({"id": "key_0123456789ab", "account": "shop-a",
                              "scopes": [access.CHECKOUTS_READ, access.REVIEW_WRITE]})
    assert principal.label == "key:key_0123456789ab"
    assert principal.can(access.REVIEW_WRITE) and not principal.can(access.CHECKOUTS_WRITE)
    assert principal.sees("shop-a") and not principal.sees("default")


def test_endpoints_review_items_and_events_belong_to_an_account_default_when_unsaid():
    assert account_of({"id": "ep_1"}) == "default" and account_of({"account": "shop-b"}) == "shop-b"
    legacy = {"id": "ep_1", "url": "https://x.example", "secrets": [{"secret": "whsec_abcd", "expiresAt": None}]}
    assert Endpoints.public(legacy)["account"] == "default"
    assert _belongs("shop-a", None) and _belongs("shop-a", "*") and _belongs("shop-a", "shop-a")
    assert not _belongs("shop-a", "shop-b")
    assert _event_account({"record": json.dumps(["tradeNo", "T1", "account", "shop-b"])}) == "shop-b"
    assert _event_account({"record": json.dumps(["tradeNo", "T1"])}) == "default"
    assert _event_account({"record": json.dumps({"endpoint": "ep_1"})}) == "default"
