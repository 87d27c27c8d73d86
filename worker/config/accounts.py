"""Merchant accounts: who this deployment signs for at the gateway (README, "Accounts").

``VEXORA_ACCOUNTS_FILE`` names a TOML file (``tomllib``), one table per account::

    [accounts.shop-a]
    merchant_no = "M-0001"
    app_secret_env = "SHOP_A_APP_SECRET"          # the NAME of the variable holding the secret
    previous_app_secret_env = "SHOP_A_OLD_SECRET" # optional: still accepted on callbacks, never signs
    notify_url = "https://pay.example.jp/vexora/notify"   # optional: VEXORA_NOTIFY_URL
    channel_codes = ["EWALLET"]                    # optional: VEXORA_CHANNEL_CODES
    way_codes = ["PAYPAY"]                         # optional: VEXORA_WAY_CODES
    ip_limits = { enabled = true, daily_limit = 10, daily_success_limit = 3 }  # optional: VEXORA_IP_*

A secret never sits in the file: the file names the variable, the environment holds the value.
Without the file, today's variables (``VEXORA_MERCHANT_NO``, ``VEXORA_APP_SECRET``…) define the
one account ``default``.

``read_accounts`` returns the accounts and a list of problems, one line each, which
``Settings.from_env`` reports under ``VEXORA_ACCOUNTS_FILE`` with every other bad setting. A
line names the account, the key and the rule — never a value (a secret pasted into the wrong
key stays unprinted).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from worker.domain.access import ACCOUNT_ID

__all__ = ["Account", "IpLimitRules", "read_accounts", "ACCOUNT_KEYS"]


@dataclass(frozen=True)
class IpLimitRules:
    """The per-IP daily limits of one account (docs/gateway.md §Limits)."""

    enabled: bool = True
    daily: int = 10
    daily_successes: int = 3


@dataclass(frozen=True)
class Account:
    """One merchant account at the gateway; its jobs are signed and limited with these."""

    id: str
    merchant_no: str
    app_secret: str = ""
    previous_app_secret: str = ""  # accepted on callbacks during a rotation; never signs
    notify_url: str = ""
    channel_codes: tuple[str, ...] = ("EWALLET",)
    way_codes: tuple[str, ...] = ("PAYPAY",)
    ip_limits: IpLimitRules = IpLimitRules()

    def __repr__(self) -> str:  # never the secrets
        return f"Account(id={self.id!r}, merchant_no={self.merchant_no!r})"

    @property
    def callback_secrets(self) -> tuple[str, ...]:
        """The secrets a callback for this account's jobs may be signed with: the current one,
        and the previous one while a rotation keeps it."""
        return tuple(s for s in (self.app_secret, self.previous_app_secret) if s)


ACCOUNT_KEYS = frozenset({"merchant_no", "app_secret_env", "previous_app_secret_env", "notify_url",
                          "channel_codes", "way_codes", "ip_limits"})
_IP_KEYS = {"enabled": "daily limits on or off", "daily_limit": "transactions", "daily_success_limit": "successes"}
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _codes(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(v, str) and v.strip() and not any(c.isspace() for c in v) for v in value):
        return None
    return tuple(v.strip() for v in value)


def _url(value: object) -> bool:
    if not isinstance(value, str) or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def read_accounts(path: str, environ: Mapping[str, str], defaults: Account, *,
                  is_placeholder: Callable[[str], bool] | None = None) -> tuple[dict[str, Account], list[str]]:
    """The accounts the file at ``path`` defines, and its problems (one line each, no value).

    ``defaults`` carries what an account that does not say takes (today's variables);
    ``is_placeholder`` refuses stand-in secrets (outside the sandbox)."""
    problems: list[str] = []
    try:
        with open(path, "rb") as fh:
            document = tomllib.load(fh)
    except OSError as exc:  # the reason, not the path's content
        return {}, [f"cannot be read: {exc.strerror}"]
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message says where ("at line 3, column 7"), never a value
        return {}, [f"is not valid TOML: {str(exc).split('(', 1)[-1].rstrip(')') or 'syntax error'}"]
    for key in document:
        if key != "accounts":
            problems.append(f"unknown top-level key {key!r}: only [accounts.<id>] tables")
    tables = document.get("accounts", {})
    if not isinstance(tables, dict) or not tables:
        problems.append("defines no account: add at least one [accounts.<id>] table")
        return {}, problems
    accounts: dict[str, Account] = {}
    owners: dict[str, str] = {}
    for position, (account_id, table) in enumerate(tables.items(), start=1):
        if not ACCOUNT_ID.match(account_id):
            problems.append(f"account #{position}: its id must be 1 to 32 of a-z, 0-9 and '-'")
            continue
        where = f"accounts.{account_id}"
        if not isinstance(table, dict):
            problems.append(f"{where}: must be a table of keys")
            continue
        before = len(problems)
        for key in table:
            if key not in ACCOUNT_KEYS:
                hint = (": a secret never sits in the file, name its variable in app_secret_env"
                        if "secret" in key.lower() else "")
                problems.append(f"{where}: unknown key {key!r}{hint}")
        merchant_no = table.get("merchant_no")
        if not isinstance(merchant_no, str) or not merchant_no.strip():
            problems.append(f"{where}.merchant_no: required, the merchant number the gateway gave (text)")
        elif merchant_no in owners:
            problems.append(f"{where}.merchant_no: the same as accounts.{owners[merchant_no]}'s: "
                            "one merchant number belongs to one account")
        else:
            owners[merchant_no] = account_id
        secrets = {}
        for key, required in (("app_secret_env", True), ("previous_app_secret_env", False)):
            variable = table.get(key)
            if variable is None:
                if required:
                    problems.append(f"{where}.{key}: required, the name of the environment variable "
                                    "holding the app secret")
                continue
            if not isinstance(variable, str) or not _VARIABLE.match(variable):
                problems.append(f"{where}.{key}: must be the name of an environment variable")
                continue
            value = (environ.get(variable) or "").strip()
            if not value:
                problems.append(f"{where}.{key}: the variable {variable} is not set")
            elif is_placeholder is not None and is_placeholder(value):
                problems.append(f"{where}.{key}: the variable {variable} holds a placeholder, not a "
                                "secret: refused outside the sandbox (VEXORA_ENV=sandbox)")
            else:
                secrets[key] = value
        if secrets.get("app_secret_env") and secrets.get("app_secret_env") == secrets.get("previous_app_secret_env"):
            problems.append(f"{where}.previous_app_secret_env: holds the same secret as app_secret_env")
        notify_url = table.get("notify_url", defaults.notify_url)
        if "notify_url" in table and not _url(notify_url):
            problems.append(f"{where}.notify_url: must be an absolute http:// or https:// URL")
        codes = {}
        for key in ("channel_codes", "way_codes"):
            if key in table:
                found = _codes(table[key])
                if found is None:
                    problems.append(f"{where}.{key}: must be a list of at least one code (text, no spaces)")
                codes[key] = found
            else:
                codes[key] = getattr(defaults, key)
        limits = defaults.ip_limits
        if "ip_limits" in table:
            raw = table["ip_limits"]
            if not isinstance(raw, dict):
                problems.append(f"{where}.ip_limits: must be a table "
                                "{ enabled = true, daily_limit = 10, daily_success_limit = 3 }")
            else:
                for key in raw:
                    if key not in _IP_KEYS:
                        problems.append(f"{where}.ip_limits: unknown key {key!r}")
                enabled = raw.get("enabled", limits.enabled)
                daily = raw.get("daily_limit", limits.daily)
                successes = raw.get("daily_success_limit", limits.daily_successes)
                if not isinstance(enabled, bool):
                    problems.append(f"{where}.ip_limits.enabled: must be true or false")
                for key, number in (("daily_limit", daily), ("daily_success_limit", successes)):
                    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                        problems.append(f"{where}.ip_limits.{key}: must be a whole number >= 1")
                limits = IpLimitRules(enabled is True, daily, successes) if len(problems) == before else limits
        if len(problems) == before:
            accounts[account_id] = Account(
                id=account_id, merchant_no=merchant_no, app_secret=secrets["app_secret_env"],
                previous_app_secret=secrets.get("previous_app_secret_env", ""), notify_url=notify_url or "",
                channel_codes=codes["channel_codes"], way_codes=codes["way_codes"], ip_limits=limits)
    return accounts, problems

