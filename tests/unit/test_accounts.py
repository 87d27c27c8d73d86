"""Merchant accounts (issue 21): the accounts file, one line per problem and never a secret; the
one account ``default`` without it; what is per account in the pure parts (IP hashes, the
webhook fan-out's choice, the metrics' labels)."""

from __future__ import annotations

import json

import pytest
from prometheus_client.core import GaugeMetricFamily

from worker.config.accounts import Account, IpLimitRules
from worker.config.settings import Settings
from worker.domain.errors import ConfigurationError
from worker.ops.metrics import StoreCollector
from worker.store.limits import ip_hash
from worker.webhooks.outbox import endpoint_account, event_account

MARK = "Sx7MARKq2"  # in every secret: never in an error line
PRODUCTION = {"VEXORA_BASE_URL": "https://gateway.example.jp"}


def write(tmp_path, text: str) -> str:
    path = tmp_path / "accounts.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def problems(environ) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(environ)
    shown = str(caught.value) + repr(caught.value.problems)
    assert MARK not in shown
    assert "Traceback" not in shown
    return caught.value.problems.get("VEXORA_ACCOUNTS_FILE", [])


GOOD = """
[accounts.default]
merchant_no = "M-1"
app_secret_env = "A_SECRET"

[accounts.shop-b]
merchant_no = "M-2"
app_secret_env = "B_SECRET"
previous_app_secret_env = "B_OLD"
notify_url = "https://b.example/vexora/notify"
channel_codes = ["EWALLET", "BANK"]
way_codes = ["PAYPAY"]
ip_limits = { enabled = true, daily_limit = 4, daily_success_limit = 2 }
"""
SECRETS = {"A_SECRET": f"a-{MARK}-1", "B_SECRET": f"b-{MARK}-2", "B_OLD": f"old-{MARK}-3"}


def test_the_file_defines_the_accounts(tmp_path):
    settings = Settings.from_env({**PRODUCTION, **SECRETS, "VEXORA_ACCOUNTS_FILE": write(tmp_path, GOOD),
                                  "VEXORA_NOTIFY_URL": "https://a.example/vexora/notify"})
    assert set(settings.accounts) == {"default", "shop-b"}
    a, b = settings.account("default"), settings.account("shop-b")
    assert (a.merchant_no, a.app_secret, a.previous_app_secret) == ("M-1", SECRETS["A_SECRET"], "")
    assert a.notify_url == "https://a.example/vexora/notify"  # what it does not say: the variables'
    assert (a.channel_codes, a.way_codes, a.ip_limits) == (("EWALLET",), ("PAYPAY",), IpLimitRules(True, 10, 3))
    assert b.callback_secrets == (SECRETS["B_SECRET"], SECRETS["B_OLD"])
    assert (b.notify_url, b.channel_codes, b.ip_limits) == (
        "https://b.example/vexora/notify", ("EWALLET", "BANK"), IpLimitRules(True, 4, 2))
    assert settings.account(None) is a and settings.account("nope") is None
    assert MARK not in repr(settings) + repr(b)
    settings.require_gateway()  # no VEXORA_MERCHANT_NO needed with a file


def test_without_a_file_the_variables_are_the_one_account_default():
    settings = Settings.from_env({**PRODUCTION, "VEXORA_MERCHANT_NO": "M-9", "VEXORA_APP_SECRET": f"s-{MARK}",
                                  "VEXORA_IP_DAILY_LIMIT": "7", "VEXORA_WAY_CODES": "PAYPAY,LINEPAY"})
    assert list(settings.accounts) == ["default"]
    account = settings.account("default")
    assert (account.merchant_no, account.app_secret, account.way_codes, account.ip_limits.daily) == (
        "M-9", f"s-{MARK}", ("PAYPAY", "LINEPAY"), 7)


def test_every_problem_of_the_file_is_one_line_without_a_value(tmp_path):
    bad = f"""
[accounts.default]
merchant_no = "M-1"
app_secret_env = "A_SECRET"
app_secret = "{MARK}"
colour = "blue"

[accounts.shop-b]
merchant_no = "M-1"
app_secret_env = "UNSET_SECRET"
channel_codes = []
ip_limits = {{ daily_limit = 0 }}

[accounts.Shop_C]
merchant_no = "M-3"
app_secret_env = "A_SECRET"

[accounts.shop-d]
app_secret_env = "not a variable"
notify_url = "ftp://{MARK}"
"""
    lines = problems({**PRODUCTION, **SECRETS, "VEXORA_ACCOUNTS_FILE": write(tmp_path, bad)})
    assert lines == [
        "accounts.default: unknown key 'app_secret': a secret never sits in the file, name its variable "
        "in app_secret_env",
        "accounts.default: unknown key 'colour'",
        "accounts.shop-b.merchant_no: the same as accounts.default's: one merchant number belongs to one account",
        "accounts.shop-b.app_secret_env: the variable UNSET_SECRET is not set",
        "accounts.shop-b.channel_codes: must be a list of at least one code (text, no spaces)",
        "accounts.shop-b.ip_limits.daily_limit: must be a whole number >= 1",
        "account #3: its id must be 1 to 32 of a-z, 0-9 and '-'",
        "accounts.shop-d.merchant_no: required, the merchant number the gateway gave (text)",
        "accounts.shop-d.app_secret_env: must be the name of an environment variable",
        "accounts.shop-d.notify_url: must be an absolute http:// or https:// URL",
    ]


@pytest.mark.parametrize("text,line", [
    ("[accounts.a\nmerchant_no = 1", "is not valid TOML"),
    ("title = 'x'\n[accounts.a]\nmerchant_no = 'M'\napp_secret_env = 'A_SECRET'", "unknown top-level key 'title'"),
    ("", "defines no account"),
])
def test_a_file_that_is_not_an_accounts_file(tmp_path, text, line):
    found = problems({**PRODUCTION, **SECRETS, "VEXORA_ACCOUNTS_FILE": write(tmp_path, text)})
    assert len(found) == 1 and found[0].startswith(line)


def test_an_unreadable_file_says_why_not_what(tmp_path):
    assert problems({**PRODUCTION, "VEXORA_ACCOUNTS_FILE": str(tmp_path / "missing.toml")}) == [
        "cannot be read: No such file or directory"]


def test_a_placeholder_secret_is_refused_outside_the_sandbox_only(tmp_path):
    path = write(tmp_path, GOOD)
    environ = {**PRODUCTION, **SECRETS, "B_SECRET": "change-me", "VEXORA_ACCOUNTS_FILE": path}
    assert problems(environ) == ["accounts.shop-b.app_secret_env: the variable B_SECRET holds a placeholder, "
                                 "not a secret: refused outside the sandbox (VEXORA_ENV=sandbox)"]
    # a loopback gateway is not the sandbox; VEXORA_ENV=sandbox is
    assert problems({**environ, "VEXORA_BASE_URL": "http://127.0.0.1:8900"})
    assert Settings.from_env({**environ, "VEXORA_ENV": "sandbox"}).account("shop-b").app_secret == "change-me"


def test_the_file_and_vexora_merchant_no_together_are_refused(tmp_path):
    found = problems({**PRODUCTION, **SECRETS, "VEXORA_ACCOUNTS_FILE": write(tmp_path, GOOD),
                      "VEXORA_MERCHANT_NO": "M-1"})
    assert found == ["set together with VEXORA_MERCHANT_NO: with an accounts file every account, default "
                     "included, is in the file; unset VEXORA_MERCHANT_NO"]


def test_the_same_payer_ip_has_counters_of_its_own_in_each_account():
    default, other = ip_hash("203.0.113.5", "s"), ip_hash("203.0.113.5", "s", "shop-b")
    assert default == ip_hash("203.0.113.5", "s", "default")  # named as before accounts
    assert other.startswith("shop-b:") and other.removeprefix("shop-b:") != default
    assert ip_hash("::ffff:203.0.113.5", "s", "shop-b") == other  # one payer however spelt


def test_an_event_goes_to_the_endpoints_of_its_jobs_account():
    record = ["tradeNo", "T1", "state", "paying", "account", "shop-b"]
    assert event_account({"type": "checkout.paying", "record": json.dumps(record)}) == "shop-b"
    assert event_account({"type": "checkout.paying", "record": json.dumps(["tradeNo", "T1"])}) == "default"
    assert event_account({"type": "webhook.endpoint_disabled", "record": json.dumps({"id": "ep_1"})}) == "default"
    assert endpoint_account({"id": "ep_1"}) == "default"  # a record from before accounts
    assert endpoint_account({"id": "ep_2", "account": "shop-b"}) == "shop-b"


class _Stats:
    keys = None

    def stats(self):
        return {"open": {"queued": (5, None), "paying": (2, 1_000)}, "review": 0, "last_pass": None,
                "open_by_account": {"queued|shop-b": 3, "paying|shop-b": 0},
                "transitions": {"new>queued": 2, "new>queued>shop-b": 3, "queued>submitting>shop-b": 3},
                "counters": {"callbacks_total|account=shop-b,result=accepted": 4.0,
                             "callbacks_total|result=bad_signature": 1.0}}


def test_the_metrics_carry_the_account():
    collector = StoreCollector(_Stats(), clock=lambda: 2.0)
    collector._streams = lambda now: iter(())
    collector._endpoints = lambda: GaugeMetricFamily("vexora_webhook_endpoints", "", labels=["state"])
    families = {f.name: f for f in collector.collect()}
    jobs = {(s.labels["state"], s.labels["account"]): s.value for s in families["vexora_jobs"].samples}
    # default's are the rest of each state's count: jobs from before accounts are counted there
    assert jobs == {("queued", "default"): 2, ("queued", "shop-b"): 3, ("paying", "default"): 2,
                    ("paying", "shop-b"): 0}
    moves = {(s.labels["from"], s.labels["to"], s.labels["account"]): s.value
             for s in families["vexora_transitions"].samples}
    assert moves == {("new", "queued", "default"): 2, ("new", "queued", "shop-b"): 3,
                     ("queued", "submitting", "shop-b"): 3}
    callbacks = {(s.labels["result"], s.labels["account"]): s.value for s in families["vexora_callbacks"].samples}
    assert callbacks == {("accepted", "shop-b"): 4.0, ("bad_signature", ""): 1.0}


def test_an_account_never_shows_its_secrets():
    account = Account("shop-b", "M-2", app_secret=f"a{MARK}", previous_app_secret=f"b{MARK}")
    assert MARK not in repr(account) and MARK not in str(account)
