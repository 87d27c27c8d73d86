"""API keys end to end (issue 21): the real `vexora-checkout keys` CLI, the web app under gunicorn, a
real worker and the sandbox. Keys created, listed and revoked; scopes; accounts kept apart (404,
the same answer as a job that does not exist); who resolved is the key; the audit log; keys
stored as hashes only; the deprecated VEXORA_API_TOKEN."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys

import pytest

from worker.domain import states
from worker.domain.masking import mask_contact
from worker.store.apikeys import ApiKeys, parse_key
from worker.waiting import wait_until
from tests.support.stack import MERCHANT_NO, Stack, payload

pytestmark = pytest.mark.integration

TOKEN = "legacy-api-token-for-tests"
ALL = ("checkouts:write", "checkouts:read", "review:write", "webhooks:admin", "audit:read")


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("keys")
    accounts = log_dir / "accounts.toml"  # two accounts: default and b (README "Accounts")
    accounts.write_text(f'[accounts.default]\nmerchant_no = "{MERCHANT_NO}"\napp_secret_env = "VEXORA_APP_SECRET"\n\n'
                        '[accounts.b]\nmerchant_no = "M-KEYS-0002"\napp_secret_env = "ACCOUNT_B_SECRET"\n',
                        encoding="utf-8")
    s = Stack(redis_url, log_dir, VEXORA_API_TOKEN=TOKEN, VEXORA_WEBHOOK_ALLOW_PRIVATE="true",
              VEXORA_ACCOUNTS_FILE=str(accounts), VEXORA_MERCHANT_NO="",
              ACCOUNT_B_SECRET="b-secret-for-the-keys-test").start(web=True)
    try:
        yield s
    finally:
        s.stop()


def cli(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], env=stack.env, capture_output=True,
                          text=True, timeout=60)


def create_key(stack, account: str, *scopes: str, name: str = "test key") -> str:
    done = cli(stack, "keys", "create", "--account", account, *(a for s in scopes for a in ("--scope", s)),
               "--name", name)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]  # scripts read it with `tail -1`


def key_of(stack, account: str, *scopes: str) -> str:
    """A key made through the store, as the CLI makes it."""
    _record, text = ApiKeys(stack.runtime.redis, stack.runtime.store.keys).create("other shop", account, scopes)
    return text


def call(stack, method: str, path: str, key: str | None, **kwargs):
    headers = dict(kwargs.pop("headers", {}))
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return stack.http.request(method, stack.web_url + path, headers=headers, timeout=15, **kwargs)


def job_of(stack, account: str, *, flagged: bool = True) -> str:
    """A job of ``account`` in the store (as enqueue_checkout(account=…) stores it), flagged for review."""
    job = payload()
    stack.runtime.store.create(job["tradeNo"], job, contact=mask_contact(job), amount=job["amount"],
                               account=account)
    if flagged:
        stack.runtime.store.flag(job["tradeNo"], "test: needs a person")
    return job["tradeNo"]


def audit(stack, action: str, target: str) -> list[dict]:
    return [e for e in stack.runtime.audit.read(limit=1000) if e["action"] == action and e["target"] == target]


def test_keys_are_created_listed_and_revoked_through_the_cli(stack):
    key = create_key(stack, "default", "checkouts:write", "checkouts:read", name="shop backend")
    key_id = parse_key(key)
    assert key_id, key
    job = payload()
    assert call(stack, "POST", "/v1/checkouts", key, json=job).status_code == 202
    stack.wait_state(job["tradeNo"], states.PAYING)
    assert call(stack, "GET", f"/v1/checkouts/{job['tradeNo']}", key).status_code == 200

    listed = cli(stack, "keys", "list")
    assert listed.returncode == 0 and key_id in listed.stdout and "shop backend" in listed.stdout
    assert "account=default" in listed.stdout and "checkouts:write,checkouts:read" in listed.stdout
    as_json = cli(stack, "keys", "list", "--json")
    [record] = [r for r in json.loads(as_json.stdout) if r["id"] == key_id]
    assert record["lastUsedAt"] and record["createdAt"] and record["revokedAt"] is None
    secret = key.rsplit("_", 1)[1]
    for out in (listed.stdout, as_json.stdout):
        assert key not in out and secret not in out and "sha256" not in out

    revoked = cli(stack, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    answer = call(stack, "GET", f"/v1/checkouts/{job['tradeNo']}", key)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert "REVOKED" in cli(stack, "keys", "list").stdout

    who = f"cli:{getpass.getuser()}"
    [created] = audit(stack, "key.create", key_id)
    [gone] = audit(stack, "key.revoke", key_id)
    assert created["actor"] == gone["actor"] == who and created["account"] == "default"
    assert created["after"]["scopes"] == ["checkouts:write", "checkouts:read"]
    assert gone["before"]["revokedAt"] is None and gone["after"]["revokedAt"]
    assert secret not in json.dumps([created, gone])


@pytest.mark.parametrize("args, field", [
    (("--account", "nope", "--scope", "checkouts:read"), "account"),
    (("--account", "default", "--scope", "checkouts:delete"), "scope"),
])
def test_an_unknown_account_or_scope_is_refused_in_one_line(stack, args, field):
    done = cli(stack, "keys", "create", *args, "--name", "x")
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and f"{field}:" in done.stderr, done.stderr


def test_keys_are_stored_as_hashes_only(stack):
    key = create_key(stack, "*", *ALL)
    assert call(stack, "GET", "/v1/review", key).status_code == 200
    secret = key.rsplit("_", 1)[1]
    redis = stack.runtime.redis
    seen = []
    for name in redis.scan_iter(count=1000):
        kind = redis.type(name).decode()
        value = {"string": lambda: redis.get(name), "hash": lambda: redis.hgetall(name),
                 "list": lambda: redis.lrange(name, 0, -1), "set": lambda: redis.smembers(name),
                 "zset": lambda: redis.zrange(name, 0, -1), "stream": lambda: redis.xrange(name)}[kind]()
        seen.append(repr(name) + repr(value))
    everything = "\n".join(seen)
    assert parse_key(key) in everything  # its record is there, under its id
    assert secret not in everything and key not in everything


def test_another_accounts_job_is_404_byte_for_byte_like_a_missing_one(stack):
    theirs = job_of(stack, "b")
    key = create_key(stack, "default", *ALL)
    everyone = create_key(stack, "*", *ALL)
    version = call(stack, "GET", f"/v1/checkouts/{theirs}", everyone).headers["ETag"]
    missing = "T" + "0" * 20
    for method, path, body in [
        ("GET", "/v1/checkouts/{}", None),
        ("GET", "/v1/checkouts/{}/webhooks", None),
        ("POST", "/v1/checkouts/{}/query", None),
        ("POST", "/v1/checkouts/{}/resolve", {"state": "succeeded", "amount": "300", "reason": "paid"}),
    ]:
        answers = [call(stack, method, path.format(t), key, json=body, headers={"If-Match": version})
                   for t in (theirs, missing)]
        mine, none = answers
        assert mine.status_code == none.status_code == 404, (path, mine.text)
        assert mine.headers["Content-Type"] == none.headers["Content-Type"] == "application/problem+json"
        assert mine.content == none.content.replace(missing.encode(), theirs.encode()), (path, mine.text)
    assert theirs not in json.dumps(call(stack, "GET", "/v1/review", key).json())
    assert theirs in json.dumps(call(stack, "GET", "/v1/review", everyone).json())
    record = stack.record(theirs)
    assert record["needsReview"] and record["state"] == states.QUEUED and "resolvedBy" not in record
    assert stack.sent(theirs)["received"] == 0  # not even queried
    # the account's own key sees it
    assert call(stack, "GET", f"/v1/checkouts/{theirs}", key_of(stack, "b", "checkouts:read")).status_code == 200


def test_a_key_without_the_routes_scope_gets_403_naming_it(stack):
    writer = create_key(stack, "default", "checkouts:write")
    trade_no = job_of(stack, "default")
    answer = call(stack, "POST", f"/v1/checkouts/{trade_no}/resolve", writer, headers={"If-Match": '"2"'},
                  json={"state": "failed", "reason": "no money"})
    assert answer.status_code == 403 and answer.headers["Content-Type"] == "application/problem+json"
    body = answer.json()
    assert body["scope"] == "review:write" and "review:write" in body["detail"], body
    for method, path, scope in [("GET", f"/v1/checkouts/{trade_no}", "checkouts:read"),
                                ("GET", "/v1/review", "checkouts:read"),
                                ("POST", f"/v1/checkouts/{trade_no}/query", "review:write"),
                                ("GET", "/v1/webhooks/endpoints", "webhooks:admin"),
                                ("POST", "/v1/webhooks/replay", "webhooks:admin")]:
        answer = call(stack, method, path, writer, json={})
        assert (answer.status_code, answer.json()["scope"]) == (403, scope), (path, answer.text)
    assert stack.record(trade_no)["needsReview"]
    assert call(stack, "GET", "/v1/openapi.json", None).status_code == 200  # still public


def test_resolve_records_the_key_not_the_bodys_operator_and_the_audit_log_has_it(stack):
    key = create_key(stack, "default", "checkouts:read", "review:write")
    key_id = parse_key(key)
    trade_no = stack.unsettled()
    queried = call(stack, "POST", f"/v1/checkouts/{trade_no}/query", key)
    assert queried.status_code == 200, queried.text
    seen = call(stack, "GET", f"/v1/checkouts/{trade_no}", key)
    answer = call(stack, "POST", f"/v1/checkouts/{trade_no}/resolve", key, headers={"If-Match": seen.headers["ETag"]},
                  json={"state": "failed", "reason": "refused at the gateway", "operator": "someone-else"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["resolvedBy"] == f"key:{key_id}" and stack.record(trade_no)["resolvedBy"] == f"key:{key_id}"
    [resolved] = audit(stack, "review.resolve", trade_no)
    assert (resolved["actor"], resolved["actorKind"], resolved["address"]) == (f"key:{key_id}", "key", "127.0.0.1")
    assert resolved["before"]["state"] == seen.json()["state"] and resolved["before"]["needsReview"] is True
    assert resolved["before"]["version"] == seen.json()["version"]
    assert resolved["after"]["state"] == states.FAILED and resolved["after"]["resolvedBy"] == f"key:{key_id}"
    assert "someone-else" not in json.dumps(resolved)
    [query] = audit(stack, "review.query", trade_no)
    assert query["actor"] == f"key:{key_id}" and query["address"] == "127.0.0.1" and query["account"] == "default"


def test_the_account_comes_from_the_key_and_a_key_for_every_account_names_it(stack):
    job = payload()
    assert call(stack, "POST", "/v1/checkouts", key_of(stack, "b", "checkouts:write"), json=job).status_code == 202
    assert stack.runtime.redis.hget(stack.runtime.store.keys.job(job["tradeNo"]), "account") == b"b"
    # the same tradeNo and payload from another account is not its job
    again = call(stack, "POST", "/v1/checkouts", create_key(stack, "default", "checkouts:write"), json=job)
    assert again.status_code == 409
    everyone = create_key(stack, "*", "checkouts:write")
    unnamed = call(stack, "POST", "/v1/checkouts", everyone, json=payload())
    assert unnamed.status_code == 422 and "Vexora-Account" in unnamed.json()["errors"]
    unknown = call(stack, "POST", "/v1/checkouts", everyone, json=payload(), headers={"Vexora-Account": "zz"})
    assert unknown.status_code == 422
    named = payload()
    answer = call(stack, "POST", "/v1/checkouts", everyone, json=named, headers={"Vexora-Account": "default"})
    assert answer.status_code == 202
    assert stack.runtime.redis.hget(stack.runtime.store.keys.job(named["tradeNo"]), "account") == b"default"


def test_webhook_endpoints_belong_to_the_keys_account(stack):
    ours, theirs = create_key(stack, "default", "webhooks:admin"), key_of(stack, "b", "webhooks:admin")
    added = call(stack, "POST", "/v1/webhooks/endpoints", ours, json={"url": "http://127.0.0.1:9/hooks"})
    assert added.status_code == 201 and added.json()["account"] == "default"
    endpoint, secret = added.json()["id"], added.json()["secret"]
    assert endpoint not in [e["id"] for e in call(stack, "GET", "/v1/webhooks/endpoints", theirs).json()]
    assert endpoint in [e["id"] for e in call(stack, "GET", "/v1/webhooks/endpoints", ours).json()]
    foreign = call(stack, "POST", f"/v1/webhooks/endpoints/{endpoint}/disable", theirs)
    none = call(stack, "POST", "/v1/webhooks/endpoints/ep_000000000000/disable", theirs)
    assert foreign.status_code == none.status_code == 404
    assert foreign.content == none.content.replace(b"ep_000000000000", endpoint.encode())
    assert stack.runtime.webhook_endpoints.get(endpoint)["enabled"]
    assert call(stack, "POST", f"/v1/webhooks/endpoints/{endpoint}/rotate", ours).status_code == 200
    assert call(stack, "POST", "/v1/webhooks/replay", theirs, json={"since": 0, "endpoint": endpoint}).status_code == 404
    assert call(stack, "POST", f"/v1/webhooks/endpoints/{endpoint}/disable", ours).status_code == 200
    entries = [e for e in stack.runtime.audit.read(limit=1000) if e["target"] == endpoint]
    assert [e["action"] for e in entries] == ["endpoint.disable", "endpoint.rotate", "endpoint.add"]
    assert all(e["address"] == "127.0.0.1" and e["account"] == "default" for e in entries)
    assert secret not in json.dumps(entries) and "whsec_" not in json.dumps(entries)


def test_the_legacy_token_still_works_with_one_deprecation_line_a_process(stack):
    job = payload()
    assert call(stack, "POST", "/v1/checkouts", TOKEN, json=job).status_code == 202
    for _ in range(12):
        assert call(stack, "GET", f"/v1/checkouts/{job['tradeNo']}", TOKEN).status_code == 200
    web = next(p for p in stack.processes if p.name == "web")
    lines = wait_until(lambda: [line for line in web.log().splitlines() if "api_token_deprecated" in line],
                       timeout=10, what="the deprecation line")
    assert 1 <= len(lines) <= 2, lines  # at most one for each of the 2 gunicorn processes
    assert TOKEN not in web.log()
    record = stack.runtime.redis.hget(stack.runtime.store.keys.job(job["tradeNo"]), "account")
    assert record == b"default"


def test_replay_sends_a_keys_account_events_only_to_that_accounts_endpoints(stack):
    ours, theirs = create_key(stack, "default", "webhooks:admin"), key_of(stack, "b", "webhooks:admin")
    mine = call(stack, "POST", "/v1/webhooks/endpoints", ours, json={"url": "http://127.0.0.1:9/a"}).json()["id"]
    other = call(stack, "POST", "/v1/webhooks/endpoints", theirs, json={"url": "http://127.0.0.1:9/b"}).json()["id"]
    trade_no = job_of(stack, "b")  # flagged: a checkout.needs_review event of account b in the outbox
    redis, keys = stack.runtime.redis, stack.runtime.store.keys
    [event_id] = [i.decode() for i, f in redis.xrange(keys.webhook_outbox) if f[b"tradeNo"] == trade_no.encode()]
    assert call(stack, "POST", "/v1/webhooks/replay", ours, json={"since": 0, "all": True}).status_code == 200
    assert not redis.exists(keys.webhook_delivery(event_id, mine))  # b's event never goes to default's endpoint
    assert call(stack, "POST", "/v1/webhooks/replay", theirs, json={"since": 0, "all": True}).status_code == 200
    assert redis.hget(keys.webhook_delivery(event_id, other), "status") == b"pending"
    assert not redis.exists(keys.webhook_delivery(event_id, mine))
    [entry] = [e for e in stack.runtime.audit.read(limit=1000)
               if e["action"] == "webhooks.replay" and e["actor"].startswith("key:") and e["account"] == "b"]
    assert entry["detail"]["scheduled"] >= 1 and entry["address"] == "127.0.0.1"
