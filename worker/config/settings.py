"""One frozen ``Settings`` object built from the environment and passed to whoever needs it.

Layering follows flower's ``options.py``: defaults here, then environment variables, then the
command line (the CLI passes overrides to ``Settings.from_env``). Nothing reads ``os.environ``
outside this module.

Every variable is parsed and checked when the settings are built — environs reads each one with a
marshmallow field and validators — and every problem is reported at once: one
``ConfigurationError`` with a ``VAR: problem`` line each, so a process refuses to start instead
of failing on its first job (``VEXORA_JOB_TTL_SECONDS=0`` used to pass here, then every create
failed because Redis refuses ``EX 0``). A line says what the variable must be, never what it
was: the value may be a secret pasted into the wrong variable.

Outside the sandbox (``Settings.sandbox``: ``VEXORA_ENV=sandbox``, and nothing else) a placeholder
such as the ``.env.example`` ones is refused as an app secret, the API token and Flower's password.

The merchant accounts (``Settings.accounts``, ``worker.config.accounts``) come from
``VEXORA_ACCOUNTS_FILE`` when it is set, else from today's variables as the one account
``default``; the file's problems are reported here too, one line each.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import urlsplit

import marshmallow as ma
from environs import Env, EnvValidationError

from worker.config.accounts import Account, IpLimitRules, read_accounts
from worker.config.redis_url import is_sentinel, parse_sentinel_url
from worker.domain.access import DEFAULT_ACCOUNT
from worker.domain.errors import ConfigurationError
from worker.domain.webhook_secret import secret_bytes

__all__ = ["Settings", "DEFAULT_REDIS_URL", "Parse", "looks_like_placeholder", "unknown_variables"]

log = logging.getLogger(__name__)
# VEXORA_* variables read outside ``Settings.ENV``: by a component of their own (the console's
# time zone), by the test and deploy tooling. Anything else starting VEXORA_ is a typo.
_OTHER_VARIABLES = frozenset({
    "VEXORA_APP_SECRET_FILE", "VEXORA_ACCOUNTS_FILE", "VEXORA_TEST_WORKERS",
    "VEXORA_TEST_PORT_SLOT", "VEXORA_FREE_PORTS", "VEXORA_RELIABILITY_FULL", "VEXORA_DEPLOY_TEST_RUN",
    "VEXORA_DEMO_TEST_MARKER", "VEXORA_ENQUEUE_TIMEOUT"})

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


# -- reading ---------------------------------------------------------------------------------------
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class _Switch(ma.fields.Field):
    """A boolean written true/false, yes/no, on/off or 1/0 in any case, and nothing else:
    marshmallow's own Boolean also takes ``t``, ``y`` and ``n``, too loose for a setting."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ma.ValidationError("not a boolean")


class _Word(ma.fields.String):
    """A word from a fixed set, in any case: stored in lower case."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).strip().lower()


class _Items(ma.fields.Field):
    """A comma-separated list: items stripped of spaces, empty ones dropped."""

    def _deserialize(self, value, attr, data, **kwargs):
        return tuple(part.strip() for part in str(value).split(",") if part.strip())


class _Numbers(_Items):
    """A comma-separated list of finite numbers."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            numbers = tuple(float(part) for part in super()._deserialize(value, attr, data, **kwargs))
        except ValueError:
            raise ma.ValidationError("not a list of numbers") from None
        if not all(math.isfinite(n) for n in numbers):
            raise ma.ValidationError("not a list of finite numbers")
        return numbers


class _Reader(Env):
    """environs' ``Env`` reading a given mapping instead of ``os.environ``: ``from_env`` takes one
    (the demo and the tests build the settings of other processes). An empty value counts as
    unset, as it always has here."""

    def __init__(self, environ: Mapping[str, str]):
        super().__init__(eager=False)  # collect every problem; seal() raises them together
        self._source = environ
        for name, field_class in (("switch", _Switch), ("word", _Word), ("items", _Items),
                                  ("numbers", _Numbers)):
            self.add_parser_from_field(name, field_class)

    # The one lookup every environs parser goes through (the same in environs 14 and 15). No
    # ${VAR} expansion: a value is taken as written.
    def _get_from_environ(self, key, default, *, proxied=False):
        value = self._source.get(key)
        return key, (default if value is None or value == "" else value), None


@dataclass(frozen=True)
class Parse:
    """How one variable is read: an environs parser, what a valid value is (its error line says
    so), and the validators that hold a value to that — command-line overrides too."""

    method: str
    rule: str
    validators: tuple[Callable[[Any], Any], ...] = ()

    def __call__(self, env: Env, var: str, default: Any) -> Any:
        return getattr(env, self.method)(var, default, validate=list(self.validators))

    @property
    def problem(self) -> str:
        return f"must be {self.rule}"

    def accepts(self, value: Any) -> bool:
        try:
            for check in self.validators:
                check(value)
        except (ma.ValidationError, TypeError, ValueError):
            return False
        return True


def _fail(why: str) -> NoReturn:
    raise ma.ValidationError(why)


def _url(*schemes: str) -> Callable[[str], None]:
    def check(text: str) -> None:
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 — a port that is not a number raises here
        except ValueError:
            _fail("not a URL")
        if any(c.isspace() for c in text) or parts.scheme not in schemes:
            _fail("not a URL of the right scheme")
        if not (parts.hostname or (parts.scheme == "unix" and parts.path)):
            _fail("a URL without a host")
    return check


def _redis_or_sentinel(text: str) -> None:
    if not is_sentinel(text):
        _url("redis", "rediss", "unix")(text)
        return
    try:
        parse_sentinel_url(text)
    except ValueError as exc:  # its messages never carry the password
        _fail(str(exc))


def _not_empty(items: tuple) -> None:
    if not items:
        _fail("empty")


def _each(check: Callable[[Any], Any]) -> Callable[[tuple], None]:
    def check_all(items: tuple) -> None:
        for item in items:
            check(item)
    return check_all


def _network(text: str) -> None:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        _fail("not an IP network")


def _no_spaces(text: str) -> None:
    if not text or any(c.isspace() for c in text):
        _fail("spaces")


def _credentials(text: str) -> None:
    for pair in text.split(","):
        user, colon, password = pair.partition(":")
        if not (user.strip() and colon and password):
            _fail("not user:password")


def _webhook_secret(text: str) -> None:
    try:
        secret_bytes(text)  # its messages never carry the secret, but the rule says enough
    except ValueError:
        _fail("not a webhook secret")


def _time_zone(text: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        _fail("not a time zone this machine knows")


def _header_name(text: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", text):
        _fail("not an HTTP header name")


def _text() -> Parse:
    return Parse("str", "text")


def _web_url() -> Parse:
    return Parse("str", "an absolute http:// or https:// URL", (_url("http", "https"),))


def _redis_url(*schemes: str) -> Parse:
    names = [f"{scheme}://" for scheme in schemes]
    return Parse("str", f"a {', '.join(names[:-1])} or {names[-1]} URL with a host", (_url(*schemes),))


def _count(minimum: int) -> Parse:
    return Parse("int", f"a whole number >= {minimum}", (ma.validate.Range(min=minimum),))


def _seconds(minimum: float = 0, *, above: bool = False) -> Parse:
    return Parse("float", f"a number of seconds {'>' if above else '>='} {minimum:g}",
                 (ma.validate.Range(min=minimum, min_inclusive=not above),))


def _switch() -> Parse:
    return Parse("switch", "true or false (yes/no, on/off and 1/0 work too)")


def _choice(*options: str, rule: str | None = None) -> Parse:
    return Parse("word", rule or "one of: " + ", ".join(options), (ma.validate.OneOf(options),))


def _codes() -> Parse:
    return Parse("items", "a comma-separated list of at least one code", (_not_empty,))


# -- placeholders ----------------------------------------------------------------------------------
# Compared with letters and digits only, lower case: "Change-Me", "<change_me>" and "CHANGEME" are
# one placeholder. The .env.example ones are change-me and admin:change-me.
_PLACEHOLDERS = frozenset({
    "changeme", "changeit", "replaceme", "secret", "password", "passwd", "pass", "xxx", "todo",
    "fixme", "tbd", "placeholder", "example", "dummy", "default", "none", "null", "test", "demo",
    "admin", "token", "apitoken", "appsecret", "secretkey", "mysecret", "mypassword",
})
_PLACEHOLDER_STARTS = ("changeme", "replaceme", "your", "insert", "putyour", "enteryour")


def looks_like_placeholder(value: str) -> bool:
    """Whether ``value`` is a stand-in for a secret rather than one: empty-ish (blank, quotes,
    punctuation), one character repeated (``xxx``, ``****``), or a known stand-in word."""
    folded = re.sub(r"[^0-9a-z]", "", value.lower())
    return (len(set(folded)) <= 1 or folded in _PLACEHOLDERS or folded.startswith(_PLACEHOLDER_STARTS))


_PLACEHOLDER_PROBLEM = ("is a placeholder, not a secret: refused outside the sandbox "
                        "(VEXORA_ENV=sandbox)")

# Celery reads these from the environment ahead of its configuration (celery/app/utils.py), and
# `celery -b/--broker` and `--result-backend` set them: a value other than the settings' would
# connect that process to another Redis than the one every other process uses.
_BROKER_HINT = ("Celery would connect to it instead of the broker the settings give: set "
                "VEXORA_BROKER_URL instead (empty: REDIS_URL) and unset it")
_CELERY_ENV = {
    "CELERY_BROKER_URL": ("celery_broker_url", _BROKER_HINT),
    "CELERY_BROKER_READ_URL": ("celery_broker_url", _BROKER_HINT),
    "CELERY_BROKER_WRITE_URL": ("celery_broker_url", _BROKER_HINT),
    "CELERY_RESULT_BACKEND": ("redis_url", "the result backend is always REDIS_URL: unset it"),
}

_UNSET = object()


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to know; immutable once built."""

    redis_url: str = DEFAULT_REDIS_URL
    broker_url: str = ""  # the Celery broker; empty: the same Redis as the job store
    redis_sentinel_master: str = ""  # the master's name, when REDIS_URL lists Sentinels
    redis_sentinel_password: str = field(default="", repr=False)  # the Sentinels' own password, if any
    redis_min_replicas: int = -1  # acknowledged once on this many replicas; -1: see ``min_replicas``
    redis_wait_timeout: float = 2.0  # how long an acknowledgement waits for the replicas
    base_url: str = ""
    environment: str = ""  # "sandbox" or "production"; empty: production, see ``sandbox``
    merchant_no: str = ""  # the account ``default`` (without an accounts file)
    app_secret: str = field(default="", repr=False)
    notify_url: str = ""
    accounts_file: str = ""  # VEXORA_ACCOUNTS_FILE: the merchant accounts (worker.config.accounts)
    file_accounts: tuple[Account, ...] = field(default=(), repr=False)  # what the file defines
    api_token: str = field(default="", repr=False)

    key_prefix: str = "vexora"
    task_events: bool = True  # workers' task events, for Flower; off saves CPU where none watches
    log_tasks: bool = False  # Celery's own "received" / "succeeded" lines per task (INFO)
    log_format: str = "logfmt"  # or "json": one event per line either way
    job_ttl_seconds: int = 30 * 24 * 3600
    payload_retention_seconds: int = 0  # payer data kept after the checkout is created; 0: purged at once
    events_maxlen: int = 100_000  # entries a stream keeps at least; older ones go once every group read them
    audit_retention_days: int = 400  # the audit log's entries are kept this long
    # /ops operators (worker/web/ops.py): an SSO proxy's header naming the operator, trusted only
    # from a direct peer in ops_auth_proxies; sessions; failed-login limits per name and address
    ops_auth_header: str = ""
    ops_auth_proxies: tuple[str, ...] = ()
    ops_session_seconds: int = 8 * 3600
    ops_login_failures: int = 5  # failed logins per name within the window, then 429
    ops_login_address_failures: int = 20  # failed logins per address within the window, then 429
    ops_login_window: int = 15 * 60
    display_tz: str = "Asia/Tokyo"  # the one time zone /ops shows times in (UTC in each time's title)

    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    retry_max_attempts: int = 5
    retry_max_seconds: float = 30.0
    retry_base_delay: float = 0.5
    retry_max_delay: float = 8.0
    retry_after_cap: float = 30.0
    lease_seconds: float = 20.0  # renewed by the holder's heartbeat; see ``lease``
    lease_renew_seconds: float = 0.0  # 0: a quarter of the lease
    request_deadline: float = 0.0  # 0: derived, see ``gateway_deadline``
    visibility_timeout: float = 0.0  # 0: derived from the lease, see ``redelivery_after``
    # RabbitMQ only: deliveries of one message before its quorum queue dead-letters it
    broker_delivery_limit: int = 10

    amount_max: int = 1_000_000
    channel_codes: tuple[str, ...] = ("EWALLET",)
    way_codes: tuple[str, ...] = ("PAYPAY",)
    allow_private_ip: bool = False
    remark_max_length: int = 256

    callback_max_bytes: int = 64 * 1024
    callback_allowed_ips: tuple[str, ...] = ()  # CIDRs; empty: any source may post callbacks
    # proxies in front of the web app whose X-Forwarded-For/-Proto/-Host are believed; 0: none
    trusted_proxies: int = 0

    ip_limits_enabled: bool = True
    ip_daily_limit: int = 10
    ip_daily_success_limit: int = 3

    metrics: bool = True  # GET /metrics on the web app, and the counting behind it
    metrics_token: str = field(default="", repr=False)  # set: /metrics needs this bearer token
    flower_url: str = ""  # links from the /ops page to Flower
    # Flower's login, user:password[,user:password]: Flower reads FLOWER_BASIC_AUTH itself; read
    # here too so that every process refuses a placeholder password
    flower_basic_auth: str = field(default="", repr=False)

    webhook_url: str = ""  # the default endpoint for signed webhooks (more: `vexora-checkout webhooks add`)
    webhook_secret: str = field(default="", repr=False)  # its whsec_... secret
    webhook_retry_schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    webhook_allow_private: bool = False  # endpoints on loopback/private/link-local addresses
    webhook_timeout: float = 10.0
    webhook_dispatch_interval: float = 1.0
    webhook_claim_seconds: float = 60.0  # a delivery handed to a worker that died is handed out again after this
    webhook_rotation_grace: float = 24 * 3600.0  # an old secret still signs this long after a rotation
    webhook_disable_after: float = 5 * 24 * 3600.0  # an endpoint failing this long is disabled

    reconcile_interval: float = 10.0
    reconcile_batch: int = 200
    paying_query_after: float = 15 * 60.0
    queued_redrive_after: float = 5 * 60.0
    reconcile_backoff_base: float = 30.0
    reconcile_backoff_max: float = 3600.0
    reconcile_horizon: float = 24 * 3600.0
    # more query 8000 messages that say "no such order" (docs/gateway.md §Query); the built-in
    # ones (worker.gateway.answers.NOT_FOUND_MESSAGES) always apply
    query_not_found_messages: tuple[str, ...] = ()
    # reconciler checks after which a job the gateway keeps refusing (8000) is flagged for review
    refused_review_after: int = 3

    # field -> (variable, how it is read and what it must be)
    ENV = {
        "redis_url": ("REDIS_URL", Parse(
            "str", "a redis://, rediss:// or unix:// URL with a host, or a Sentinel list "
            "sentinel://[:password@]host:port;sentinel://host:port[/db]", (_redis_or_sentinel,))),
        "redis_sentinel_master": ("VEXORA_REDIS_SENTINEL_MASTER", Parse("str", "text without spaces", (_no_spaces,))),
        "redis_sentinel_password": ("VEXORA_REDIS_SENTINEL_PASSWORD", _text()),
        "redis_min_replicas": ("VEXORA_REDIS_MIN_REPLICAS", _count(0)),
        "redis_wait_timeout": ("VEXORA_REDIS_WAIT_TIMEOUT", _seconds(0, above=True)),
        "broker_url": ("VEXORA_BROKER_URL", _redis_url("redis", "rediss", "redis+socket", "amqp", "amqps")),
        "base_url": ("VEXORA_BASE_URL", _web_url()),
        "environment": ("VEXORA_ENV", _choice("sandbox", "production",
                                              rule="sandbox or production (empty: production)")),
        "merchant_no": ("VEXORA_MERCHANT_NO", _text()),
        "app_secret": ("VEXORA_APP_SECRET", _text()),
        "notify_url": ("VEXORA_NOTIFY_URL", _web_url()),
        "accounts_file": ("VEXORA_ACCOUNTS_FILE", _text()),
        "api_token": ("VEXORA_API_TOKEN", _text()),
        "key_prefix": ("VEXORA_KEY_PREFIX", Parse("str", "text without spaces", (_no_spaces,))),
        "task_events": ("VEXORA_TASK_EVENTS", _switch()),
        "log_tasks": ("VEXORA_LOG_TASKS", _switch()),
        "log_format": ("VEXORA_LOG_FORMAT", _choice("logfmt", "json")),
        # Redis refuses EX 0: a TTL of 0 would make every create fail
        "job_ttl_seconds": ("VEXORA_JOB_TTL_SECONDS", _count(1)),
        "payload_retention_seconds": ("VEXORA_PAYLOAD_RETENTION_SECONDS", _count(0)),
        "events_maxlen": ("VEXORA_EVENTS_MAXLEN", _count(1)),
        "audit_retention_days": ("VEXORA_AUDIT_RETENTION_DAYS", _count(1)),
        "ops_auth_header": ("VEXORA_OPS_AUTH_HEADER", Parse(
            "str", "an HTTP header name (e.g. X-Forwarded-User)", (_header_name,))),
        "ops_auth_proxies": ("VEXORA_OPS_AUTH_PROXIES", Parse(
            "items", "comma-separated IP networks in CIDR notation (the SSO proxy's addresses)",
            (_each(_network),))),
        "ops_session_seconds": ("VEXORA_OPS_SESSION_SECONDS", _count(60)),
        "display_tz": ("VEXORA_DISPLAY_TZ", Parse("str", "an IANA time zone name such as Asia/Tokyo or UTC",
                                                   (_time_zone,))),
        "ops_login_failures": ("VEXORA_OPS_LOGIN_FAILURES", _count(1)),
        "ops_login_address_failures": ("VEXORA_OPS_LOGIN_ADDRESS_FAILURES", _count(1)),
        "ops_login_window": ("VEXORA_OPS_LOGIN_WINDOW", _count(1)),
        "connect_timeout": ("VEXORA_CONNECT_TIMEOUT", _seconds(0, above=True)),
        "read_timeout": ("VEXORA_READ_TIMEOUT", _seconds(0, above=True)),
        "retry_max_attempts": ("VEXORA_RETRY_MAX_ATTEMPTS", _count(1)),
        "retry_max_seconds": ("VEXORA_RETRY_MAX_SECONDS", _seconds(0, above=True)),
        "retry_base_delay": ("VEXORA_RETRY_BASE_DELAY", _seconds(0)),
        "retry_max_delay": ("VEXORA_RETRY_MAX_DELAY", _seconds(0)),
        "retry_after_cap": ("VEXORA_RETRY_AFTER_CAP", _seconds(0)),
        "lease_seconds": ("VEXORA_LEASE_SECONDS", _seconds(0, above=True)),
        "lease_renew_seconds": ("VEXORA_LEASE_RENEW_SECONDS", _seconds(0)),  # 0: derived
        "request_deadline": ("VEXORA_REQUEST_DEADLINE", _seconds(0)),  # 0: derived
        "visibility_timeout": ("VEXORA_VISIBILITY_TIMEOUT", _seconds(0)),  # 0: derived
        "broker_delivery_limit": ("VEXORA_BROKER_DELIVERY_LIMIT", _count(1)),
        "amount_max": ("VEXORA_AMOUNT_MAX", _count(1)),
        "channel_codes": ("VEXORA_CHANNEL_CODES", _codes()),
        "way_codes": ("VEXORA_WAY_CODES", _codes()),
        "allow_private_ip": ("VEXORA_ALLOW_PRIVATE_IP", _switch()),
        "remark_max_length": ("VEXORA_REMARK_MAX_LENGTH", _count(1)),
        "callback_max_bytes": ("VEXORA_CALLBACK_MAX_BYTES", _count(1)),
        "callback_allowed_ips": ("VEXORA_CALLBACK_ALLOWED_IPS", Parse(
            "items", "comma-separated IP networks in CIDR notation (e.g. 203.0.113.0/24)", (_each(_network),))),
        "trusted_proxies": ("VEXORA_TRUSTED_PROXIES", _count(0)),
        "ip_limits_enabled": ("VEXORA_IP_LIMITS", _switch()),
        "ip_daily_limit": ("VEXORA_IP_DAILY_LIMIT", _count(1)),
        "ip_daily_success_limit": ("VEXORA_IP_DAILY_SUCCESS_LIMIT", _count(1)),
        "metrics": ("VEXORA_METRICS", _switch()),
        "metrics_token": ("VEXORA_METRICS_TOKEN", _text()),
        "flower_url": ("VEXORA_FLOWER_URL", _web_url()),
        "flower_basic_auth": ("FLOWER_BASIC_AUTH", Parse(
            "str", "user:password (several: comma-separated)", (_credentials,))),
        "webhook_url": ("VEXORA_WEBHOOK_URL", _web_url()),
        "webhook_secret": ("VEXORA_WEBHOOK_SECRET", Parse(
            "str", "whsec_ followed by the base64 of at least 16 bytes", (_webhook_secret,))),
        "webhook_retry_schedule": ("VEXORA_WEBHOOK_RETRY_SCHEDULE", Parse(
            "numbers", "a comma-separated list of seconds, each >= 0 (at least one)",
            (_not_empty, _each(ma.validate.Range(min=0))))),
        "webhook_allow_private": ("VEXORA_WEBHOOK_ALLOW_PRIVATE", _switch()),
        "webhook_timeout": ("VEXORA_WEBHOOK_TIMEOUT", _seconds(0, above=True)),
        "webhook_dispatch_interval": ("VEXORA_WEBHOOK_DISPATCH_INTERVAL", _seconds(0, above=True)),
        "webhook_claim_seconds": ("VEXORA_WEBHOOK_CLAIM_SECONDS", _seconds(0, above=True)),
        "webhook_rotation_grace": ("VEXORA_WEBHOOK_ROTATION_GRACE", _seconds(0)),
        "webhook_disable_after": ("VEXORA_WEBHOOK_DISABLE_AFTER", _seconds(0, above=True)),
        "reconcile_interval": ("VEXORA_RECONCILE_INTERVAL", _seconds(0, above=True)),
        "reconcile_batch": ("VEXORA_RECONCILE_BATCH", _count(1)),
        "paying_query_after": ("VEXORA_PAYING_QUERY_AFTER", _seconds(0)),
        "queued_redrive_after": ("VEXORA_QUEUED_REDRIVE_AFTER", _seconds(0, above=True)),
        "reconcile_backoff_base": ("VEXORA_RECONCILE_BACKOFF_BASE", _seconds(0, above=True)),
        "reconcile_backoff_max": ("VEXORA_RECONCILE_BACKOFF_MAX", _seconds(0, above=True)),
        "reconcile_horizon": ("VEXORA_RECONCILE_HORIZON", _seconds(0, above=True)),
        "query_not_found_messages": ("VEXORA_QUERY_NOT_FOUND_MESSAGES", Parse(
            "items", "a comma-separated list of gateway messages")),
        "refused_review_after": ("VEXORA_REFUSED_REVIEW_AFTER", _count(1)),
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Defaults, then the environment, then explicit overrides (e.g. from the CLI).

        Raises one ``ConfigurationError`` listing every problem, ``VAR: problem`` a line.
        """
        environ = os.environ if environ is None else environ
        reader = _Reader(environ)
        parsed = {name: parse(reader, var, _UNSET) for name, (var, parse) in cls.ENV.items()}
        problems: dict[str, list[str]] = {}
        try:
            reader.seal()
        except EnvValidationError as exc:
            # environs' own messages are replaced by the rule: the same line whatever was wrong
            problems.update({var: [parse.problem] for var, parse in cls.ENV.values()
                             if var in exc.error_messages})
        values = {name: value for name, value in parsed.items()
                  if value is not _UNSET and cls.ENV[name][0] not in problems}

        secret_file = environ.get("VEXORA_APP_SECRET_FILE")
        if secret_file and "app_secret" not in values:
            try:
                with open(secret_file, encoding="utf-8") as fh:
                    values["app_secret"] = fh.read().strip()
            except OSError as exc:  # the reason, not the path: e.g. "No such file or directory"
                problems["VEXORA_APP_SECRET_FILE"] = [f"cannot be read: {exc.strerror}"]
        for name, value in overrides.items():
            if value is None:
                continue
            var, parse = cls.ENV.get(name, (None, None))
            if parse is not None and not parse.accepts(value):
                problems[f"{var} (given as an option)"] = [parse.problem]
                continue
            values[name] = value

        settings = cls(**values)
        failed = set(problems)
        secret_var = ("VEXORA_APP_SECRET (given as an option)" if overrides.get("app_secret") is not None
                      else "VEXORA_APP_SECRET" if environ.get("VEXORA_APP_SECRET") else "VEXORA_APP_SECRET_FILE")
        for var, found in settings._consistency_problems(environ, failed, secret_var).items():
            problems.setdefault(var, []).extend(found)
        if settings.accounts_file:
            accounts, found = read_accounts(
                settings.accounts_file, environ, settings._variables_account(),
                is_placeholder=None if settings.sandbox else looks_like_placeholder)
            if environ.get("VEXORA_MERCHANT_NO"):
                found.append("set together with VEXORA_MERCHANT_NO: with an accounts file every "
                             "account, default included, is in the file; unset VEXORA_MERCHANT_NO")
            if found:
                problems.setdefault("VEXORA_ACCOUNTS_FILE", []).extend(found)
            else:
                settings = dataclasses.replace(settings, file_accounts=tuple(accounts.values()))
        if problems:
            lines = [f"  {var}: {why}" for var, reasons in problems.items() for why in reasons]
            raise ConfigurationError("invalid configuration:\n" + "\n".join(lines), problems=problems)
        _warn_unknown(tuple(sorted(unknown_variables(environ).items())))
        return settings

    def _consistency_problems(self, environ: Mapping[str, str], failed: set[str],
                              secret_var: str) -> dict[str, list[str]]:
        """What no single variable shows: placeholders outside the sandbox, a heartbeat slower than
        the lease, Celery's own variables pointing elsewhere. Variables that failed to parse are
        left out: their value here is the default, not what was given. ``secret_var`` is where
        the app secret came from."""
        problems: dict[str, list[str]] = {}
        if not self.sandbox:
            for var, value in ((secret_var, self.app_secret), ("VEXORA_API_TOKEN", self.api_token)):
                if var == secret_var and self.accounts_file:
                    continue  # with a file, its accounts' secrets are checked (worker.config.accounts)
                if value and looks_like_placeholder(value):  # empty: unset, which has its own meaning
                    problems[var] = [_PLACEHOLDER_PROBLEM]
            passwords = [pair.partition(":")[2] for pair in self.flower_basic_auth.split(",")]
            if self.flower_basic_auth and any(looks_like_placeholder(p) for p in passwords):
                problems["FLOWER_BASIC_AUTH"] = ["its password " + _PLACEHOLDER_PROBLEM]
        if ({"VEXORA_LEASE_SECONDS", "VEXORA_LEASE_RENEW_SECONDS"}.isdisjoint(failed)
                and self.lease_renew_seconds >= self.lease):
            problems["VEXORA_LEASE_RENEW_SECONDS"] = [
                "must be shorter than the lease (VEXORA_LEASE_SECONDS), or 0 for a quarter of it: "
                "a lease must not run out between two renewals"]
        if "REDIS_URL" not in failed and is_sentinel(self.redis_url) and not self.redis_sentinel_master:
            problems["VEXORA_REDIS_SENTINEL_MASTER"] = [
                "must name the master (as the Sentinels know it) when REDIS_URL lists Sentinels"]
        if {"REDIS_URL", "VEXORA_BROKER_URL"}.isdisjoint(failed):
            for var, (wanted, why) in _CELERY_ENV.items():
                given = environ.get(var)
                if given and given != getattr(self, wanted):
                    problems[var] = [why]
        return problems

    @property
    def sandbox(self) -> bool:
        """Whether this deployment talks to the sandbox gateway, where placeholder secrets are
        fine: only when ``VEXORA_ENV=sandbox`` says so. Where the gateway is reached (a loopback
        ``VEXORA_BASE_URL`` may be a production egress proxy) decides nothing."""
        return self.environment == "sandbox"

    def _variables_account(self) -> Account:
        """The account today's variables define (``default``): also what an account in the
        file takes for what it does not say."""
        return Account(id=DEFAULT_ACCOUNT, merchant_no=self.merchant_no, app_secret=self.app_secret,
                       notify_url=self.notify_url, channel_codes=tuple(self.channel_codes),
                       way_codes=tuple(self.way_codes),
                       ip_limits=IpLimitRules(self.ip_limits_enabled, self.ip_daily_limit,
                                              self.ip_daily_success_limit))

    @functools.cached_property
    def accounts(self) -> dict[str, Account]:
        """The merchant accounts by id: the file's, or exactly ``{"default": …}`` from today's
        variables without one. Never empty."""
        if self.file_accounts:
            return {account.id: account for account in self.file_accounts}
        return {DEFAULT_ACCOUNT: self._variables_account()}

    def account(self, account_id: str | None) -> Account | None:
        """The account ``account_id`` (None or empty: ``default``), or None if there is none."""
        return self.accounts.get(account_id or DEFAULT_ACCOUNT)

    @property
    def sentinel(self) -> bool:
        """Whether REDIS_URL lists Sentinels (the job store follows their master)."""
        return is_sentinel(self.redis_url)

    @property
    def min_replicas(self) -> int:
        """Replicas a producer's or the gateway's acknowledgement waits for (``WAIT``):
        ``VEXORA_REDIS_MIN_REPLICAS``, else 1 with Sentinel (there are replicas to lose a write
        to) and 0 without."""
        if self.redis_min_replicas >= 0:
            return self.redis_min_replicas
        return 1 if self.sentinel else 0

    @property
    def celery_broker_url(self) -> str:
        """Where Celery messages go: ``VEXORA_BROKER_URL``, else the job store's Redis."""
        return self.broker_url or self.redis_url

    @property
    def broker_is_rabbitmq(self) -> bool:
        """Whether the broker is RabbitMQ (``amqp://``, ``amqps://``) rather than Redis."""
        return self.celery_broker_url.startswith(("amqp://", "amqps://"))

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    @property
    def lease(self) -> float:
        """How long a submit's lease lasts without a renewal (Redis's clock).

        Short, because the holder's heartbeat renews it while it works (``lease_renew_every``): a
        dead or frozen worker's jobs may be taken over one lease after its last heartbeat.
        """
        return self.lease_seconds if self.lease_seconds > 0 else 20.0

    @property
    def lease_renew_every(self) -> float:
        """Seconds between heartbeats: four per lease, so three may be missed before it runs out."""
        return self.lease_renew_seconds if self.lease_renew_seconds > 0 else self.lease / 4

    @property
    def gateway_deadline(self) -> float:
        """The total time one gateway request may take, connect to last byte: at most half the
        lease, so a slowly trickling answer cannot outlive a lease (per-read timeouts alone can)."""
        if self.request_deadline > 0:
            return self.request_deadline
        return min(self.connect_timeout + self.read_timeout, self.lease / 2)

    @property
    def redelivery_after(self) -> float:
        """Seconds before the Redis broker hands an unacknowledged message (its worker died) to another.
        (RabbitMQ redelivers as soon as the worker's connection is gone: no timeout.)

        One and a half leases: by then the dead worker's leases have run out, so its redelivered
        messages take its claimed jobs over, and its prefetched, unstarted ones (still ``queued``)
        are sent by someone else — all well within a minute. A message of a live worker that is
        redelivered anyway (a submit longer than this) finds the lease renewed and changes nothing.
        """
        return self.visibility_timeout if self.visibility_timeout > 0 else 1.5 * self.lease

    def require_gateway(self) -> None:
        """Fail loudly, naming each missing variable, when the settings cannot talk to a gateway
        (a command that needs one calls this before doing anything)."""
        needed = {"base_url"} if self.file_accounts else {"base_url", "merchant_no", "app_secret"}
        missing = [var for name, (var, _) in self.ENV.items() if name in needed and not getattr(self, name)]
        if "VEXORA_APP_SECRET" in missing:
            missing[missing.index("VEXORA_APP_SECRET")] = "VEXORA_APP_SECRET (or VEXORA_APP_SECRET_FILE)"
        if missing:
            problems = {var: ["not set: needed to talk to the gateway"] for var in missing}
            raise ConfigurationError(
                "missing gateway settings (set them, or VEXORA_ACCOUNTS_FILE for the merchant numbers "
                "and secrets):\n" + "\n".join(f"  {var}: not set" for var in missing), problems=problems)
        parts = urlsplit(self.base_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ConfigurationError("VEXORA_BASE_URL must be an absolute http(s) URL")


def known_variables() -> frozenset[str]:
    """Every ``VEXORA_*`` variable something of this project reads."""
    return frozenset(var for var, _ in Settings.ENV.values()) | _OTHER_VARIABLES


def unknown_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """``VEXORA_*`` variables nothing reads (typos), each with the closest known name ('' if none)."""
    known = known_variables()
    out = {}
    for var in environ:
        if var.startswith("VEXORA_") and var not in known:
            # compared without the shared prefix, which would make any two names look alike
            close = difflib.get_close_matches(var[7:], sorted(k[7:] for k in known), n=1, cutoff=0.6)
            out[var] = "VEXORA_" + close[0] if close else ""
    return out


@functools.lru_cache(maxsize=32)
def _warn_unknown(unknown: tuple[tuple[str, str], ...]) -> None:
    """One warning a variable, once a process (settings are read many times)."""
    for var, close in unknown:
        hint = f"; did you mean {close}?" if close else ""
        log.warning("%s is set but no setting has that name: it is ignored%s", var, hint)
