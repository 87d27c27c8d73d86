"""Issue 21 (operators and audit), end to end: the real CLI adds, lists and disables operators; they
sign in to /ops under gunicorn, resolve as themselves whatever the form says, are held to their
role and account; an SSO proxy's header is believed only from the proxy's own address; failed
logins are limited per name and per address and audited; the audit log is read through the CLI,
``GET /v1/audit`` and the /ops page. In-process (the same app against the real Redis): scrypt runs
once per login, not per page, and the session cookie's attributes."""

from __future__ import annotations

import getpass
import hashlib
import json
import re
import subprocess
import sys

import pytest
import requests
from requests.adapters import HTTPAdapter

from worker.domain import states
from worker.runtime.wiring import Runtime
from worker.store.operators import Operators
from worker.waiting import wait_until
from worker.web import create_app
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration

TOKEN = "ops-token-for-tests-9d2f"
PASSWORD = "correct horse battery staple"
PROXY = "127.0.0.2"  # the SSO proxy's address: this test connects from it to be the proxy
SHELL = f"cli:{getpass.getuser()}"


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    s = Stack(redis_url, tmp_path_factory.mktemp("operators"), VEXORA_API_TOKEN=TOKEN,
              VEXORA_OPS_AUTH_HEADER="X-Forwarded-User", VEXORA_OPS_AUTH_PROXIES=f"{PROXY}/32",
              VEXORA_TRUSTED_PROXIES="1",  # X-Forwarded-For names the client (tests pick addresses)
              VEXORA_OPS_LOGIN_FAILURES="3", VEXORA_OPS_LOGIN_ADDRESS_FAILURES="6",
              VEXORA_OPS_LOGIN_WINDOW="600").start(workers=1, web=True)
    try:
        yield s
    finally:
        s.stop()


def cli(stack, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], env=stack.env, input=stdin,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def people(stack):
    """Operators added through the real CLI: one of each role, one limited to an account."""
    for name, role, extra in (("alice", "operator", ()), ("vic", "viewer", ()), ("ada", "admin", ()),
                              ("sam", "operator", ("--account", "shop-b")), ("dora", "operator", ())):
        done = cli(stack, "operators", "add", name, "--role", role, *extra, stdin=PASSWORD + "\n")
        assert done.returncode == 0, done.stderr
    return stack


def address(n: int) -> dict:
    """The client address the (trusted, one hop) proxy reports."""
    return {"X-Forwarded-For": f"198.51.100.{n}"}


def login(stack, name: str, password: str = PASSWORD, client: int = 1) -> requests.Session:
    s = requests.Session()
    answer = s.post(stack.web_url + "/ops/login", data={"name": name, "password": password},
                    headers=address(client), allow_redirects=False, timeout=30)
    assert answer.status_code == 303, (answer.status_code, answer.text[:300])
    return s


def get(session, stack, path: str, **kwargs):
    return session.get(stack.web_url + path, allow_redirects=False, timeout=30, **kwargs)


def post(session, stack, path: str, **kwargs):
    return session.post(stack.web_url + path, allow_redirects=False, timeout=30, **kwargs)


def form_fields(page_text: str) -> dict:
    return dict(re.findall(r'name="(csrf|version)" value="([^"]*)"', page_text))


def flagged(stack) -> str:
    """A paying job flagged by a callback with a status nobody documented (still open)."""
    trade_no = stack.enqueue(payload())
    stack.wait_state(trade_no, states.PAYING)
    stack.drop_callbacks(trade_no)
    assert stack.notify(stack.callback(trade_no, "00032")).status_code == 200
    wait_until(lambda: (stack.record(trade_no) or {}).get("needsReview"), timeout=20, what="the flag")
    return trade_no


def audit_entries(stack, action: str | None = None) -> list[dict]:
    return [e for e in stack.runtime.audit.read(limit=1000) if action is None or e["action"] == action]


class Source(HTTPAdapter):
    """Connect from a chosen loopback address (the SSO proxy's, here)."""

    def __init__(self, ip: str):
        self.ip = ip
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.ip, 0)
        super().init_poolmanager(*args, **kwargs)


def test_the_cli_adds_lists_and_disables_operators(people):
    stack = people
    for weak in ("short", "change-me-please", "xxxxxxxxxxxxxxxx"):
        refused = cli(stack, "operators", "add", "eve", "--role", "viewer", stdin=weak + "\n")
        assert refused.returncode == 1 and "password" in refused.stderr and weak not in refused.stderr
    again = cli(stack, "operators", "add", "alice", "--role", "admin", stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "exists" in again.stderr

    listed = cli(stack, "operators", "list")
    assert listed.returncode == 0 and "alice" in listed.stdout and "viewer" in listed.stdout
    as_json = json.loads(cli(stack, "operators", "list", "--json").stdout)
    assert {r["name"]: r["role"] for r in as_json}["sam"] == "operator"
    assert {r["name"]: r["account"] for r in as_json}["sam"] == "shop-b"
    for text in (listed.stdout, json.dumps(as_json)):
        assert "scrypt" not in text and "password" not in text and PASSWORD not in text
    stored = stack.runtime.redis.hget(stack.runtime.store.keys.operators, "alice").decode()
    assert PASSWORD not in stored and '"password": "scrypt$16384$8$1$' in stored

    login(stack, "dora").close()  # dora can sign in
    disabled = cli(stack, "operators", "disable", "dora")
    assert disabled.returncode == 0, disabled.stderr
    assert "DISABLED" in cli(stack, "operators", "list").stdout
    answer = requests.post(stack.web_url + "/ops/login", data={"name": "dora", "password": PASSWORD},
                           headers=address(2), allow_redirects=False, timeout=30)
    assert answer.status_code == 401 and "set-cookie" not in {k.lower() for k in answer.headers}
    assert cli(stack, "operators", "disable", "nobody").returncode == 1

    added = {e["target"]: e for e in audit_entries(stack, "operator.add")}
    assert set(added) >= {"alice", "vic", "ada", "sam", "dora"} and added["alice"]["actor"] == SHELL
    assert "password" not in json.dumps(added["alice"]["after"])
    gone = audit_entries(stack, "operator.disable")[0]
    assert gone["target"] == "dora" and gone["actor"] == SHELL and gone["after"]["disabled"] is True


def test_a_disabled_operators_session_ends_at_its_next_page(people):
    stack = people
    assert cli(stack, "operators", "add", "flo", "--role", "viewer", stdin=PASSWORD + "\n").returncode == 0
    flo = login(stack, "flo")
    assert get(flo, stack, "/ops").status_code == 200
    assert cli(stack, "operators", "disable", "flo").returncode == 0
    assert get(flo, stack, "/ops").status_code == 401


def test_an_operator_resolves_as_themselves_whatever_the_form_says(people):
    stack = people
    trade_no = flagged(stack)
    alice = login(stack, "alice")
    form = get(alice, stack, f"/ops/jobs/{trade_no}/resolve")
    assert form.status_code == 200 and "operator:alice" in form.text and 'name="operator"' not in form.text
    fields = {**form_fields(form.text), "state": "succeeded", "amount": "300", "reason": "paid per portal",
              "operator": "mallory"}  # a tampered form
    confirm = post(alice, stack, f"/ops/jobs/{trade_no}/resolve/confirm", data=fields)
    assert confirm.status_code == 200 and "mallory" not in confirm.text and "operator:alice" in confirm.text
    done = post(alice, stack, f"/ops/jobs/{trade_no}/resolve", data=fields, headers=address(7))
    assert done.status_code == 303, done.text
    record = stack.record(trade_no)
    assert record["state"] == states.SUCCEEDED and record["resolvedBy"] == "operator:alice"
    assert [h for h in record["history"] if h["to"] == states.SUCCEEDED][-1]["detail"]["operator"] == "operator:alice"

    entry = next(e for e in audit_entries(stack, "review.resolve") if e["target"] == trade_no)
    assert entry["actor"] == "operator:alice" and entry["actorKind"] == "operator"
    assert entry["address"] == "198.51.100.7" and entry["account"] == "default"
    assert entry["before"]["state"] == states.PAYING and entry["before"]["needsReview"] is True
    assert entry["after"]["state"] == states.SUCCEEDED and entry["after"]["resolvedBy"] == "operator:alice"
    assert entry["detail"] == {"state": "succeeded", "reason": "paid per portal"}
    assert any(e["target"] == "alice" and e["actor"] == "operator:alice" for e in audit_entries(stack, "login"))


def test_a_viewer_reads_but_cannot_act(people):
    stack = people
    trade_no = flagged(stack)
    vic = login(stack, "vic")
    index = get(vic, stack, "/ops")
    assert index.status_code == 200 and trade_no in index.text and "Query gateway now" not in index.text
    assert get(vic, stack, f"/ops/jobs/{trade_no}").status_code == 200
    csrf = form_fields(index.text)["csrf"]  # the sign-out form's: a valid token for this session
    version = str(stack.record(trade_no)["version"])
    data = {"csrf": csrf, "state": "failed", "reason": "viewer tries", "version": version}
    for path in (f"/ops/jobs/{trade_no}/resolve", f"/ops/jobs/{trade_no}/resolve/confirm",
                 f"/ops/jobs/{trade_no}/query"):
        answer = post(vic, stack, path, data=data)
        assert answer.status_code == 403 and "review:write" in answer.text, path
    assert get(vic, stack, f"/ops/jobs/{trade_no}/resolve").status_code == 403
    assert get(vic, stack, "/ops/audit").status_code == 403
    record = stack.record(trade_no)
    assert record["state"] == states.PAYING and record["needsReview"] is True and record["version"] == int(version)
    assert not [e for e in audit_entries(stack) if e["target"] == trade_no]


def test_an_operator_of_one_account_does_not_see_anothers_jobs(people):
    stack = people
    trade_no = flagged(stack)  # a job of the default account
    sam = login(stack, "sam")
    assert get(sam, stack, f"/ops/jobs/{trade_no}").status_code == 404
    assert get(sam, stack, f"/ops/jobs/{trade_no}/resolve").status_code == 404
    alice = login(stack, "alice")
    assert get(alice, stack, f"/ops/jobs/{trade_no}").status_code == 200


def test_the_sso_header_is_believed_only_from_the_proxy(people):
    stack = people
    direct = requests.Session()
    for headers in ({"X-Forwarded-User": "alice"},
                    {"X-Forwarded-User": "alice", "X-Forwarded-For": PROXY}):  # a forged hop
        answer = get(direct, stack, "/ops", headers=headers)
        assert answer.status_code == 401 and "signed in as" not in answer.text

    proxy = requests.Session()
    proxy.mount("http://", Source(PROXY))
    page = get(proxy, stack, "/ops", headers={"X-Forwarded-User": "Alice", **address(9)})
    assert page.status_code == 200 and "signed in as alice" in page.text
    viewer = get(proxy, stack, "/ops/audit", headers={"X-Forwarded-User": "vic"})
    assert viewer.status_code == 403  # the named operator's role applies
    stranger = get(proxy, stack, "/ops", headers={"X-Forwarded-User": "zed", **address(10)})
    assert stranger.status_code == 403
    assert get(proxy, stack, "/ops", headers={"X-Forwarded-User": "dora"}).status_code == 403  # disabled
    assert get(proxy, stack, "/ops").status_code == 401  # no header: not signed in
    failed = [e for e in audit_entries(stack, "login.failed") if e["target"] == "zed"]
    assert failed and failed[0]["detail"] == {"via": "sso"} and failed[0]["address"] == "198.51.100.10"


def test_failed_logins_are_limited_per_name_and_per_address_and_audited(people):
    stack = people
    Operators(stack.runtime.redis, stack.runtime.store.keys).add("carl", PASSWORD, "viewer")
    anon = requests.Session()

    def attempt(name: str, password: str, client: int):
        return post(anon, stack, "/ops/login", data={"name": name, "password": password}, headers=address(client))

    for i in range(3):  # the name's limit, from three addresses
        assert attempt("carl", f"wrong-password-{i}", 20 + i).status_code == 401
    blocked = attempt("carl", PASSWORD, 30)  # even the right password, from a fresh address
    assert blocked.status_code == 429 and 0 < int(blocked.headers["Retry-After"]) <= 600
    assert attempt("ada", PASSWORD, 30).status_code == 303  # another name is not held up

    for i in range(6):  # the address's limit, over several names
        assert attempt(f"nobody{i}", "wrong-password", 40).status_code == 401
    assert attempt("vic", PASSWORD, 40).status_code == 429
    assert attempt("vic", PASSWORD, 41).status_code == 303

    # a success clears the name's count
    for _ in range(2):
        assert attempt("ada", "wrong-password", 50).status_code == 401
    assert attempt("ada", PASSWORD, 50).status_code == 303
    for _ in range(2):
        assert attempt("ada", "wrong-password", 51).status_code == 401
    assert attempt("ada", PASSWORD, 52).status_code == 303

    failed = audit_entries(stack, "login.failed")
    tried = [e for e in failed if e["target"] == "carl" and e["address"].startswith("198.51.100.2")]
    assert len(tried) == 3 and all(e["actor"] == "anonymous" for e in tried)
    assert len([e for e in failed if e["address"] == "198.51.100.40"]) == 6
    assert not any("wrong-password" in json.dumps(e) or PASSWORD in json.dumps(e) for e in audit_entries(stack))


def test_the_audit_log_through_the_api_the_cli_and_the_page(people):
    stack = people
    trade_no = flagged(stack)
    alice = login(stack, "alice")
    query = post(alice, stack, f"/ops/jobs/{trade_no}/query", data={"csrf": form_fields(get(alice, stack, "/ops").text)["csrf"]})
    assert query.status_code == 200, query.text

    bearer = {"Authorization": f"Bearer {TOKEN}"}
    answer = requests.get(stack.web_url + "/v1/audit", headers=bearer, timeout=30)
    assert answer.status_code == 200, answer.text
    entries = answer.json()["entries"]
    assert entries[0]["action"] == "review.query" and entries[0]["target"] == trade_no
    assert entries[0]["actor"] == "operator:alice" and entries[0]["before"]["state"] == states.PAYING
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)
    first = requests.get(stack.web_url + "/v1/audit", params={"limit": 2}, headers=bearer, timeout=30).json()
    assert len(first["entries"]) == 2 and first["next"] == first["entries"][1]["id"]
    second = requests.get(stack.web_url + "/v1/audit", params={"limit": 2, "before": first["next"]},
                          headers=bearer, timeout=30).json()
    assert [e["id"] for e in second["entries"]] == [e["id"] for e in entries[2:4]]
    since = requests.get(stack.web_url + "/v1/audit", params={"since": str(entries[0]["at"])},
                         headers=bearer, timeout=30).json()["entries"]
    assert since and all(e["at"] >= entries[0]["at"] for e in since)
    for bad in ({"since": "yesterday"}, {"limit": "0"}, {"limit": "501"}, {"before": "x"}):
        assert requests.get(stack.web_url + "/v1/audit", params=bad, headers=bearer, timeout=30).status_code == 400
    assert requests.get(stack.web_url + "/v1/audit", timeout=30).status_code == 401

    printed = cli(stack, "audit", "--since", "1h")
    assert printed.returncode == 0, printed.stderr
    assert re.search(rf"operator:alice\s+review\.query\s+{trade_no}", printed.stdout)
    assert "operator.add" in printed.stdout and SHELL in printed.stdout
    lines = [json.loads(line) for line in cli(stack, "audit", "--since", "1h", "--json").stdout.splitlines()]
    assert lines[0]["action"] == "review.query"
    assert cli(stack, "audit", "--since", "2999-01-01T00:00:00Z").stdout.strip() == "no audit entries in this window"

    ada = login(stack, "ada")
    page = get(ada, stack, "/ops/audit")
    assert page.status_code == 200 and f'<td class="mono">{trade_no}</td>' in page.text
    assert page.text.index("review.query") < page.text.index("operator.add")  # newest first
    assert get(alice, stack, "/ops/audit").status_code == 403  # operators are not admins
    # a page link nobody made: the first page, never a server error
    for before in (f"{2 ** 64}-0", "0-0", "9" * 30 + "-1"):
        assert get(ada, stack, "/ops/audit", params={"before": before}).status_code == 200, before


def test_the_cli_resolves_as_the_shell_user(people):
    stack = people
    trade_no = flagged(stack)
    version = str(stack.record(trade_no)["version"])
    done = cli(stack, "review", "resolve", trade_no, "--version", version, "--state", "failed",
               "--reason", "never paid", "--operator", "mallory")
    assert done.returncode == 0, done.stderr
    assert "--operator is ignored" in done.stderr and SHELL in done.stdout
    record = stack.record(trade_no)
    assert record["state"] == states.FAILED and record["resolvedBy"] == SHELL
    entry = next(e for e in audit_entries(stack, "review.resolve") if e["target"] == trade_no)
    assert entry["actor"] == SHELL and entry["after"]["state"] == states.FAILED


def test_scrypt_runs_once_per_login_not_per_page(people, monkeypatch):
    stack = people
    runtime = Runtime(stack.settings)
    app = create_app(stack.settings, runtime=runtime)
    calls = []
    real = hashlib.scrypt
    monkeypatch.setattr(hashlib, "scrypt", lambda *a, **k: calls.append(1) or real(*a, **k))
    client = app.test_client()
    answer = client.post("/ops/login", data={"name": "ada", "password": PASSWORD}, base_url="https://ops.test")
    assert answer.status_code == 303 and len(calls) == 1
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie and "Path=/ops" in cookie
    for path in ("/ops", "/ops/audit", "/ops", "/ops/audit", "/ops"):
        assert client.get(path, base_url="https://ops.test").status_code == 200
    assert len(calls) == 1
    plain = app.test_client().post("/ops/login", data={"name": "ada", "password": PASSWORD})
    assert "Secure" not in plain.headers["Set-Cookie"]  # plain http (a test or a local port): no Secure


def test_the_token_login_works_only_until_an_operator_exists(people):
    stack = people
    settings = stack.settings.replace(key_prefix="legacy-ops")
    runtime = Runtime(settings)
    client = create_app(settings, runtime=runtime).test_client()
    page = client.get("/ops", auth=("anyone", TOKEN))
    assert page.status_code == 200 and "signed in as default (operator" in page.text
    assert client.get("/ops/audit", auth=("anyone", TOKEN)).status_code == 403
    Operators(runtime.redis, runtime.store.keys).add("root", PASSWORD, "admin")
    answer = client.get("/ops", auth=("anyone", TOKEN))
    assert answer.status_code == 401 and "WWW-Authenticate" not in answer.headers
    for key in runtime.redis.scan_iter("legacy-ops:*"):
        runtime.redis.delete(key)


def test_webhook_endpoint_changes_from_the_cli_are_audited_without_their_secret(stack):
    user = getpass.getuser()
    # an address literal: nothing to resolve on a machine without DNS; no event is ever sent to it
    added = cli(stack, "webhooks", "add", "https://93.184.216.34/vexora", "--account", "default")
    assert added.returncode == 0, added.stderr
    endpoint_id = added.stdout.split()[0]
    secret = next(line.split(": ", 1)[1] for line in added.stdout.splitlines() if line.startswith("secret: "))
    for action in ("disable", "enable", "rotate"):
        done = cli(stack, "webhooks", action, endpoint_id)
        assert done.returncode == 0, done.stderr
    replay = cli(stack, "webhooks", "replay", "--since", "0", "--account", "default")
    assert replay.returncode == 0, replay.stderr
    entries = [e for e in audit_entries(stack) if e["target"] in (endpoint_id, "")
               and e["action"].startswith(("endpoint.", "webhooks."))]
    assert {e["action"] for e in entries} >= {"endpoint.add", "endpoint.disable", "endpoint.enable",
                                              "endpoint.rotate", "webhooks.replay"}, entries
    assert all(e["actor"] == f"cli:{user}" and e["account"] == "default" for e in entries), entries
    assert secret not in json.dumps(entries) and secret[-12:] not in json.dumps(entries)
