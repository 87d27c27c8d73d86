"""Settings from the environment: every variable parsed and checked, every problem reported at
once with its variable's name and never its value, placeholder secrets refused outside the
sandbox, Celery's own broker variables refused, the shipped defaults unchanged."""

from __future__ import annotations

import pytest

from worker.config.settings import Settings, looks_like_placeholder
from worker.domain.errors import ConfigurationError

SANDBOX = {"VEXORA_BASE_URL": "http://127.0.0.1:8900"}
PRODUCTION = {"VEXORA_BASE_URL": "https://gateway.example.jp"}
REAL_SECRET = "k3N9-q7Tz-W2vx-8LmP"  # nothing like a placeholder


def problems(environ: dict, **overrides) -> dict[str, list[str]]:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(environ, **overrides)
    error = caught.value
    # the message is the problems, one "VAR: problem" line each
    lines = str(error).splitlines()[1:]
    assert lines == [f"  {var}: {why}" for var, reasons in error.problems.items() for why in reasons]
    return error.problems


# -- defaults ------------------------------------------------------------------------------------
# The shipped values, written out: a changed default must be a decision, not a side effect.
DEFAULTS = {
    "redis_url": "redis://127.0.0.1:6379/0", "broker_url": "", "redis_sentinel_master": "",
    "redis_sentinel_password": "", "redis_min_replicas": -1, "redis_wait_timeout": 2.0, "base_url": "", "environment": "",
    "merchant_no": "", "app_secret": "", "notify_url": "", "accounts_file": "", "api_token": "", "key_prefix": "vexora",
    "task_events": True,
    "log_tasks": False, "log_format": "logfmt", "job_ttl_seconds": 2_592_000,
    "payload_retention_seconds": 0, "events_maxlen": 100_000, "connect_timeout": 3.05,
    "read_timeout": 10.0, "retry_max_attempts": 5, "retry_max_seconds": 30.0, "retry_base_delay": 0.5,
    "retry_max_delay": 8.0, "retry_after_cap": 30.0, "lease_seconds": 20.0, "lease_renew_seconds": 0.0,
    "request_deadline": 0.0, "visibility_timeout": 0.0, "broker_delivery_limit": 10, "amount_max": 1_000_000,
    "channel_codes": ("EWALLET",), "way_codes": ("PAYPAY",), "allow_private_ip": False,
    "remark_max_length": 256, "callback_max_bytes": 65_536, "callback_allowed_ips": (),
    "trusted_proxies": 0, "ip_limits_enabled": True, "ip_daily_limit": 10, "ip_daily_success_limit": 3,
    "metrics": True, "metrics_token": "", "flower_url": "", "flower_basic_auth": "", "webhook_url": "",
    "webhook_secret": "", "webhook_retry_schedule": (5, 300, 1800, 7200, 18000, 36000, 36000),
    "webhook_allow_private": False, "webhook_timeout": 10.0, "webhook_dispatch_interval": 1.0,
    "webhook_claim_seconds": 60.0, "webhook_rotation_grace": 86_400.0, "webhook_disable_after": 432_000.0,
    "reconcile_interval": 10.0, "reconcile_batch": 200, "paying_query_after": 900.0,
    "queued_redrive_after": 300.0, "reconcile_backoff_base": 30.0, "reconcile_backoff_max": 3600.0,
    "reconcile_horizon": 86_400.0, "query_not_found_messages": (), "refused_review_after": 3,
    "audit_retention_days": 400, "ops_auth_header": "", "ops_auth_proxies": (), "ops_session_seconds": 28_800,
    "ops_login_failures": 5, "ops_login_address_failures": 20, "ops_login_window": 900, "display_tz": "Asia/Tokyo",
}


def test_defaults_are_unchanged_and_an_empty_environment_gives_them():
    assert set(DEFAULTS) == set(Settings.ENV), "a setting without a pinned default (or a stale one)"
    for settings in (Settings(), Settings.from_env({})):
        assert {name: getattr(settings, name) for name in DEFAULTS} == DEFAULTS


def test_an_empty_value_is_the_default():
    settings = Settings.from_env({var: "" for var, _ in Settings.ENV.values()})
    assert settings == Settings()


def test_the_mapping_given_is_read_not_the_process_environment(monkeypatch):
    monkeypatch.setenv("VEXORA_JOB_TTL_SECONDS", "0")
    assert Settings.from_env({"VEXORA_JOB_TTL_SECONDS": "60"}).job_ttl_seconds == 60
    monkeypatch.setenv("VEXORA_JOB_TTL_SECONDS", "61")
    assert Settings.from_env().job_ttl_seconds == 61


# -- one bad variable at a time ------------------------------------------------------------------
# (variable, refused values, accepted value -> field value). Every checked variable is here.
CASES = [
    ("REDIS_URL", ["localhost:6379", "http://127.0.0.1:6379/0", "redis://127.0.0.1:port/0", "redis:///0",
                   "sentinel://:pw@s1:port;sentinel://s2:26379", "sentinel://s1:26379;redis://s2:26379",
                   "sentinel://s1:26379/zero", "sentinel://;"],
     ("rediss://cache.internal:6380/2", "rediss://cache.internal:6380/2")),
    ("VEXORA_REDIS_SENTINEL_MASTER", ["my master"], ("mymaster", "mymaster")),
    ("VEXORA_REDIS_MIN_REPLICAS", ["-1", "one"], ("2", 2)),
    ("VEXORA_REDIS_WAIT_TIMEOUT", ["0", "-1", "soon"], ("0.5", 0.5)),
    ("VEXORA_BROKER_URL", ["127.0.0.1:6379", "amqp:///vhost", "amqp://rabbit:port//", "http://rabbit:5672/",
                           "pyamqp://rabbit//"], ("redis://broker:6379/1", "redis://broker:6379/1")),
    ("VEXORA_BASE_URL", ["gateway.example.jp", "ftp://gateway.example.jp", "https://"],
     ("https://gateway.example.jp", "https://gateway.example.jp")),
    ("VEXORA_ENV", ["prod", "staging"], ("Production", "production")),
    ("VEXORA_NOTIFY_URL", ["/vexora/notify", "https://shop example/notify"],
     ("https://shop.example/vexora/notify", "https://shop.example/vexora/notify")),
    ("VEXORA_KEY_PREFIX", ["my prefix"], ("shop-1", "shop-1")),
    ("VEXORA_TASK_EVENTS", ["maybe", "t", "2"], ("OFF", False)),
    ("VEXORA_LOG_TASKS", ["maybe", "t", "2"], ("on", True)),
    ("VEXORA_LOG_FORMAT", ["text", "structlog"], ("JSON", "json")),
    ("VEXORA_JOB_TTL_SECONDS", ["0", "-5", "1.5", "ten"], ("1", 1)),
    ("VEXORA_PAYLOAD_RETENTION_SECONDS", ["-1", "x"], ("0", 0)),
    ("VEXORA_EVENTS_MAXLEN", ["0"], ("1000", 1000)),
    ("VEXORA_CONNECT_TIMEOUT", ["0", "-1", "nan", "inf", "3s"], ("0.5", 0.5)),
    ("VEXORA_READ_TIMEOUT", ["0"], ("2", 2.0)),
    ("VEXORA_RETRY_MAX_ATTEMPTS", ["0"], ("1", 1)),
    ("VEXORA_RETRY_MAX_SECONDS", ["0"], ("5", 5.0)),
    ("VEXORA_RETRY_BASE_DELAY", ["-0.1"], ("0", 0.0)),
    ("VEXORA_RETRY_MAX_DELAY", ["-1"], ("0", 0.0)),
    ("VEXORA_RETRY_AFTER_CAP", ["-1"], ("0", 0.0)),
    ("VEXORA_LEASE_SECONDS", ["0", "-20"], ("40", 40.0)),
    ("VEXORA_LEASE_RENEW_SECONDS", ["-1", "20", "25"], ("19.5", 19.5)),  # shorter than the 20 s lease
    ("VEXORA_REQUEST_DEADLINE", ["-1"], ("0", 0.0)),
    ("VEXORA_VISIBILITY_TIMEOUT", ["-1"], ("45", 45.0)),
    ("VEXORA_BROKER_DELIVERY_LIMIT", ["0", "ten"], ("5", 5)),
    ("VEXORA_AMOUNT_MAX", ["0", "1e6"], ("5000", 5000)),
    ("VEXORA_CHANNEL_CODES", [",", " , ,"], ("EWALLET, BANK", ("EWALLET", "BANK"))),
    ("VEXORA_WAY_CODES", [","], ("PAYPAY,LINEPAY", ("PAYPAY", "LINEPAY"))),
    ("VEXORA_ALLOW_PRIVATE_IP", ["y", "enabled"], ("Yes", True)),
    ("VEXORA_REMARK_MAX_LENGTH", ["0"], ("64", 64)),
    ("VEXORA_CALLBACK_MAX_BYTES", ["0", "64k"], ("1024", 1024)),
    ("VEXORA_CALLBACK_ALLOWED_IPS", ["10.0.0.0/8,300.1.1.0/24", "10.0.0.0/33", "gateway.example.jp"],
     ("203.0.113.0/24, 2001:db8::/32,198.51.100.7", ("203.0.113.0/24", "2001:db8::/32", "198.51.100.7"))),
    ("VEXORA_TRUSTED_PROXIES", ["-1", "one"], ("2", 2)),
    ("VEXORA_IP_LIMITS", ["maybe", "n"], ("off", False)),
    ("VEXORA_IP_DAILY_LIMIT", ["0"], ("1", 1)),
    ("VEXORA_IP_DAILY_SUCCESS_LIMIT", ["0"], ("1", 1)),
    ("VEXORA_METRICS", ["disabled"], ("0", False)),
    ("VEXORA_FLOWER_URL", ["flower:5555"], ("http://flower:5555", "http://flower:5555")),
    ("FLOWER_BASIC_AUTH", ["admin", ":pw-7Hq2", "admin:"], ("ops:" + REAL_SECRET, "ops:" + REAL_SECRET)),
    ("VEXORA_WEBHOOK_URL", ["hooks.example/in"], ("https://hooks.example/in", "https://hooks.example/in")),
    ("VEXORA_WEBHOOK_SECRET", ["not-whsec", "whsec_c2hvcnQ="],
     ("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3", "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3")),
    ("VEXORA_WEBHOOK_RETRY_SCHEDULE", ["5,-1", "5,x", ",", "5,inf"], ("0, 1.5,60", (0.0, 1.5, 60.0))),
    ("VEXORA_WEBHOOK_ALLOW_PRIVATE", ["sure"], ("TRUE", True)),
    ("VEXORA_WEBHOOK_TIMEOUT", ["0"], ("3", 3.0)),
    ("VEXORA_WEBHOOK_DISPATCH_INTERVAL", ["0"], ("0.2", 0.2)),
    ("VEXORA_WEBHOOK_CLAIM_SECONDS", ["0"], ("30", 30.0)),
    ("VEXORA_WEBHOOK_ROTATION_GRACE", ["-1"], ("0", 0.0)),
    ("VEXORA_WEBHOOK_DISABLE_AFTER", ["0"], ("3600", 3600.0)),
    ("VEXORA_RECONCILE_INTERVAL", ["0"], ("2", 2.0)),
    ("VEXORA_RECONCILE_BATCH", ["0"], ("50", 50)),
    ("VEXORA_PAYING_QUERY_AFTER", ["-1"], ("0", 0.0)),
    ("VEXORA_QUEUED_REDRIVE_AFTER", ["0"], ("60", 60.0)),
    ("VEXORA_RECONCILE_BACKOFF_BASE", ["0"], ("1", 1.0)),
    ("VEXORA_RECONCILE_BACKOFF_MAX", ["0"], ("60", 60.0)),
    ("VEXORA_RECONCILE_HORIZON", ["0"], ("3600", 3600.0)),
    ("VEXORA_REFUSED_REVIEW_AFTER", ["0", "three"], ("5", 5)),
    ("VEXORA_AUDIT_RETENTION_DAYS", ["0", "a year"], ("30", 30)),
    ("VEXORA_OPS_AUTH_HEADER", ["X Forwarded User", "X-User:"], ("X-Forwarded-User", "X-Forwarded-User")),
    ("VEXORA_OPS_AUTH_PROXIES", ["10.0.0.300/32", "proxy"], ("10.0.0.5/32,fd00::/64", ("10.0.0.5/32", "fd00::/64"))),
    ("VEXORA_OPS_SESSION_SECONDS", ["59", "a day"], ("3600", 3600)),
    ("VEXORA_OPS_LOGIN_FAILURES", ["0"], ("10", 10)),
    ("VEXORA_OPS_LOGIN_ADDRESS_FAILURES", ["0"], ("50", 50)),
    ("VEXORA_OPS_LOGIN_WINDOW", ["0"], ("60", 60)),
    ("VEXORA_DISPLAY_TZ", ["Mars/Olympus", "JST+9"], ("UTC", "UTC")),
]
FREE_TEXT = {"VEXORA_ACCOUNTS_FILE", "VEXORA_MERCHANT_NO", "VEXORA_APP_SECRET", "VEXORA_API_TOKEN", "VEXORA_METRICS_TOKEN",
             "VEXORA_REDIS_SENTINEL_PASSWORD", "VEXORA_QUERY_NOT_FOUND_MESSAGES"}
FIELD = {var: name for name, (var, _) in Settings.ENV.items()}


def test_every_checked_variable_has_a_case():
    assert {var for var, _, _ in CASES} | FREE_TEXT == set(FIELD)


@pytest.mark.parametrize("var,value", [(var, value) for var, bad, _ in CASES for value in bad])
def test_a_bad_value_is_reported_under_its_variable(var, value):
    found = problems({**SANDBOX, var: value})
    assert list(found) == [var]
    assert found[var] and all(why.startswith("must be") for why in found[var])


@pytest.mark.parametrize("var,value,expected", [(var, *good) for var, _, good in CASES])
def test_a_good_value_is_parsed(var, value, expected):
    assert getattr(Settings.from_env({**SANDBOX, var: value}), FIELD[var]) == expected


def test_the_new_settings():
    settings = Settings.from_env({"VEXORA_TRUSTED_PROXIES": "1", "VEXORA_LOG_FORMAT": "json"})
    assert (settings.trusted_proxies, settings.log_format) == (1, "json")
    assert problems({"VEXORA_TRUSTED_PROXIES": "-1", "VEXORA_LOG_FORMAT": "xml"}) == {
        "VEXORA_TRUSTED_PROXIES": ["must be a whole number >= 0"],
        "VEXORA_LOG_FORMAT": ["must be one of: logfmt, json"]}


def test_every_problem_is_reported_at_once():
    environ = {**SANDBOX, "VEXORA_JOB_TTL_SECONDS": "0", "VEXORA_IP_LIMITS": "maybe",
               "VEXORA_CONNECT_TIMEOUT": "-1", "VEXORA_WEBHOOK_RETRY_SCHEDULE": "5,-1",
               "VEXORA_CALLBACK_ALLOWED_IPS": "10.0.0.0/8,not-a-network", "VEXORA_BASE_URL": "gateway",
               "VEXORA_API_TOKEN": "change-me", "CELERY_RESULT_BACKEND": "redis://elsewhere:6379/0",
               "VEXORA_APP_SECRET_FILE": "/nonexistent/vexora-secret"}
    assert set(problems(environ)) == {
        "VEXORA_JOB_TTL_SECONDS", "VEXORA_IP_LIMITS", "VEXORA_CONNECT_TIMEOUT",
        "VEXORA_WEBHOOK_RETRY_SCHEDULE", "VEXORA_CALLBACK_ALLOWED_IPS", "VEXORA_BASE_URL",
        # a base URL that is not a URL is not the sandbox's: the placeholder is refused too
        "VEXORA_API_TOKEN", "CELERY_RESULT_BACKEND", "VEXORA_APP_SECRET_FILE"}


def test_a_rabbitmq_broker_url_is_accepted_and_known_as_rabbitmq():
    for url in ("amqp://vexora:s3cret-pass@rabbit:5672/vexora", "amqps://vexora:s3cret-pass@rabbit/vexora"):
        settings = Settings.from_env({"VEXORA_BROKER_URL": url})
        assert settings.celery_broker_url == url and settings.broker_is_rabbitmq
    assert not Settings.from_env({}).broker_is_rabbitmq
    assert not Settings.from_env({"VEXORA_BROKER_URL": "redis://broker:6379/1"}).broker_is_rabbitmq


# -- secrets never shown -------------------------------------------------------------------------
MARK = "Zq8MARKv2"
SECRET_CARRIERS = {
    "VEXORA_APP_SECRET": f"change-me-{MARK}",  # a placeholder (change-me...), in production
    "VEXORA_API_TOKEN": f"your-token-{MARK}",
    "FLOWER_BASIC_AUTH": f"admin{MARK}",  # no colon: not user:password
    "VEXORA_WEBHOOK_SECRET": f"whsec{MARK}",
    "REDIS_URL": f"redis://:{MARK}@cache:port/0",
    "VEXORA_BROKER_URL": f"amqp://user:{MARK}@rabbit:port//",
    "CELERY_BROKER_URL": f"redis://:{MARK}@elsewhere:6379/0",
    "VEXORA_KEY_PREFIX": f"a {MARK}",
}


@pytest.mark.parametrize("carriers", [
    {var: value for var, value in SECRET_CARRIERS.items() if var != "CELERY_BROKER_URL"},
    # Celery's variables are compared only with Redis URLs that parsed
    {"CELERY_BROKER_URL": SECRET_CARRIERS["CELERY_BROKER_URL"]}], ids=["variables", "celery"])
def test_no_value_ever_appears_in_the_error(carriers):
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({**PRODUCTION, **carriers})
    assert set(caught.value.problems) == set(carriers)
    shown = str(caught.value) + repr(caught.value.problems) + repr(caught.value.args)
    assert MARK not in shown


def test_secrets_are_not_in_the_repr():
    settings = Settings.from_env({**PRODUCTION, "VEXORA_APP_SECRET": REAL_SECRET, "VEXORA_API_TOKEN": REAL_SECRET,
                                  "FLOWER_BASIC_AUTH": f"ops:{REAL_SECRET}", "VEXORA_METRICS_TOKEN": REAL_SECRET})
    assert settings.flower_basic_auth == f"ops:{REAL_SECRET}"
    assert REAL_SECRET not in repr(settings)


# -- placeholders --------------------------------------------------------------------------------
PLACEHOLDERS = ["change-me", "changeme", "CHANGE_ME", "<change me>", "secret", "password", "xxx",
                "XXXXXXXX", "todo", "TODO", " ", "''", '""', "***", "your-api-token-here", "replace_me"]
SECRETS = {"VEXORA_APP_SECRET": "{}", "VEXORA_API_TOKEN": "{}", "FLOWER_BASIC_AUTH": "admin:{}"}


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_placeholders_are_refused_outside_the_sandbox(placeholder):
    environ = {**PRODUCTION, **{var: shape.format(placeholder) for var, shape in SECRETS.items()}}
    assert set(problems(environ)) == set(SECRETS)
    # a deployment on loopback that says it is production is held to the same rule
    assert set(problems({**environ, **SANDBOX, "VEXORA_ENV": "production"})) == set(SECRETS)


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
@pytest.mark.parametrize("sandbox", [{**SANDBOX, "VEXORA_ENV": "sandbox"},
                                     {"VEXORA_BASE_URL": "http://sandbox:8900", "VEXORA_ENV": "sandbox"}],
                         ids=["loopback", "named host"])
def test_placeholders_are_accepted_in_the_sandbox(placeholder, sandbox):
    settings = Settings.from_env({**sandbox, **{var: shape.format(placeholder) for var, shape in SECRETS.items()}})
    assert settings.sandbox
    assert settings.api_token == placeholder


def test_the_env_example_placeholders_are_refused_in_production():
    found = problems({**PRODUCTION, "VEXORA_APP_SECRET": "change-me", "VEXORA_API_TOKEN": "change-me",
                      "FLOWER_BASIC_AUTH": "admin:change-me"})
    assert set(found) == {"VEXORA_APP_SECRET", "VEXORA_API_TOKEN", "FLOWER_BASIC_AUTH"}
    assert all("placeholder" in why for reasons in found.values() for why in reasons)


def test_real_secrets_and_unset_ones_pass_in_production():
    settings = Settings.from_env({**PRODUCTION, "VEXORA_APP_SECRET": REAL_SECRET, "VEXORA_API_TOKEN": REAL_SECRET,
                                  "FLOWER_BASIC_AUTH": f"ops:{REAL_SECRET},audit:{REAL_SECRET[::-1]}"})
    assert not settings.sandbox and settings.app_secret == REAL_SECRET
    # unset keeps its meaning (no API token: the API refuses everyone) and is no placeholder
    assert Settings.from_env(PRODUCTION).api_token == ""


def test_one_placeholder_password_among_several_flower_logins_is_refused():
    assert list(problems({**PRODUCTION, "FLOWER_BASIC_AUTH": f"ops:{REAL_SECRET},guest:password"})) == [
        "FLOWER_BASIC_AUTH"]


def test_what_counts_as_the_sandbox():
    """VEXORA_ENV=sandbox, and nothing else (issue 21): a loopback base URL may be a production
    deployment's local egress proxy."""
    assert not Settings.from_env({}).sandbox  # no gateway named: the strict rules
    assert not Settings.from_env(PRODUCTION).sandbox
    assert not Settings.from_env({"VEXORA_BASE_URL": "http://sandbox:8900"}).sandbox
    assert not Settings.from_env({"VEXORA_BASE_URL": "http://127.0.0.1.example.jp"}).sandbox
    for loopback in ("http://127.0.0.2:8900", "http://localhost:8900", "http://[::1]:8900"):
        assert not Settings.from_env({"VEXORA_BASE_URL": loopback}).sandbox
    assert Settings.from_env({**PRODUCTION, "VEXORA_ENV": "sandbox"}).sandbox


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8900", "http://localhost:8900", "http://[::1]:8900"])
def test_a_loopback_gateway_without_vexora_env_refuses_placeholders(base_url):
    found = problems({"VEXORA_BASE_URL": base_url, "VEXORA_MERCHANT_NO": "M-1",
                      "VEXORA_APP_SECRET": "change-me", "VEXORA_API_TOKEN": "change-me"})
    assert set(found) == {"VEXORA_APP_SECRET", "VEXORA_API_TOKEN"}
    assert all("VEXORA_ENV=sandbox" in why for reasons in found.values() for why in reasons)


@pytest.mark.parametrize("value", ["k3N9q7TzW2vx", "s3cr3t-for-shop-42", "passw0rd-Ze9-long-enough", "x1"])
def test_a_secret_that_merely_contains_a_word_is_no_placeholder(value):
    assert not looks_like_placeholder(value)


def test_a_placeholder_in_the_app_secret_file_is_refused_under_the_file_variable(tmp_path):
    path = tmp_path / "app_secret"
    path.write_text("change-me\n")
    assert list(problems({**PRODUCTION, "VEXORA_APP_SECRET_FILE": str(path)})) == ["VEXORA_APP_SECRET_FILE"]
    path.write_text(REAL_SECRET + "\n")
    assert Settings.from_env({**PRODUCTION, "VEXORA_APP_SECRET_FILE": str(path)}).app_secret == REAL_SECRET


def test_an_unreadable_app_secret_file_is_named_but_not_its_path(tmp_path):
    path = tmp_path / "missing-secret-file"
    found = problems({"VEXORA_APP_SECRET_FILE": str(path)})
    assert list(found) == ["VEXORA_APP_SECRET_FILE"]
    assert "No such file" in found["VEXORA_APP_SECRET_FILE"][0] and str(path) not in repr(found)


# -- Celery's own variables ----------------------------------------------------------------------
@pytest.mark.parametrize("var", ["CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL",
                                 "CELERY_RESULT_BACKEND"])
def test_celery_variables_pointing_elsewhere_are_refused(var):
    environ = {"REDIS_URL": "redis://store:6379/0", "VEXORA_BROKER_URL": "redis://broker:6379/0"}
    found = problems({**environ, var: "redis://elsewhere:6379/0"})
    assert list(found) == [var]
    hint = "REDIS_URL" if var == "CELERY_RESULT_BACKEND" else "VEXORA_BROKER_URL instead"
    assert hint in found[var][0]
    # the same URL as the settings give is harmless
    same = environ["REDIS_URL"] if var == "CELERY_RESULT_BACKEND" else environ["VEXORA_BROKER_URL"]
    Settings.from_env({**environ, var: same})


def test_create_app_refuses_a_celery_variable_the_settings_did_not_see(monkeypatch):
    from worker.celery import create_app

    settings = Settings.from_env({"REDIS_URL": "redis://store:6379/0"})
    create_app(settings)
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://elsewhere:6379/0")
    with pytest.raises(ConfigurationError) as caught:
        create_app(settings)
    assert "broker_url" in str(caught.value) and "elsewhere" not in str(caught.value)


# -- across variables, and overrides -------------------------------------------------------------
def test_the_renewal_must_be_shorter_than_the_lease():
    assert Settings.from_env({"VEXORA_LEASE_SECONDS": "60", "VEXORA_LEASE_RENEW_SECONDS": "30"}).lease_renew_every == 30
    assert list(problems({"VEXORA_LEASE_SECONDS": "10", "VEXORA_LEASE_RENEW_SECONDS": "10"})) == [
        "VEXORA_LEASE_RENEW_SECONDS"]
    # a lease that is itself bad is reported alone, not compared
    assert list(problems({"VEXORA_LEASE_SECONDS": "0", "VEXORA_LEASE_RENEW_SECONDS": "30"})) == ["VEXORA_LEASE_SECONDS"]


def test_overrides_win_and_are_checked_too():
    settings = Settings.from_env({"VEXORA_JOB_TTL_SECONDS": "60"}, job_ttl_seconds=120, read_timeout=None)
    assert (settings.job_ttl_seconds, settings.read_timeout) == (120, 10.0)
    assert list(problems({}, job_ttl_seconds=0)) == ["VEXORA_JOB_TTL_SECONDS (given as an option)"]


def test_a_placeholder_app_secret_given_as_an_option_is_named_so():
    assert list(problems(PRODUCTION, app_secret="change-me")) == ["VEXORA_APP_SECRET (given as an option)"]
