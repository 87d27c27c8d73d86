"""One frozen ``Settings`` object built from the environment and passed to whoever needs it.

Layering follows flower's ``options.py``: defaults here, then environment variables, then the
command line (the CLI passes overrides to ``Settings.from_env``). Nothing reads ``os.environ``
outside this module.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from worker.errors import ConfigurationError

__all__ = ["Settings", "DEFAULT_REDIS_URL"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigurationError(f"not a boolean: {text!r}")


def _tuple(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _seconds(text: str) -> tuple[float, ...]:
    values = tuple(float(part) for part in _tuple(text))
    if not values or any(v < 0 for v in values):
        raise ValueError("a comma-separated list of seconds >= 0")
    return values


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to know; immutable once built."""

    redis_url: str = DEFAULT_REDIS_URL
    broker_url: str = ""  # the Celery broker; empty: the same Redis as the job store
    base_url: str = ""
    merchant_no: str = ""
    app_secret: str = field(default="", repr=False)
    notify_url: str = ""
    api_token: str = field(default="", repr=False)

    key_prefix: str = "vexora"
    task_events: bool = True  # workers' task events, for Flower; off saves CPU where none watches
    job_ttl_seconds: int = 30 * 24 * 3600
    payload_retention_seconds: int = 0  # payer data kept after the checkout is created; 0: purged at once
    events_maxlen: int = 100_000

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

    amount_max: int = 1_000_000
    channel_codes: tuple[str, ...] = ("EWALLET",)
    way_codes: tuple[str, ...] = ("PAYPAY",)
    allow_private_ip: bool = False
    remark_max_length: int = 256

    callback_max_bytes: int = 64 * 1024
    callback_allowed_ips: tuple[str, ...] = ()  # CIDRs; empty: any source may post callbacks
    trusted_proxies: int = 0  # proxies in front of the web app whose X-Forwarded-* count; 0: none

    ip_limits_enabled: bool = True
    ip_daily_limit: int = 10
    ip_daily_success_limit: int = 3

    metrics: bool = True  # GET /metrics on the web app, and the counting behind it
    metrics_token: str = field(default="", repr=False)  # set: /metrics needs this bearer token
    flower_url: str = ""  # links from the /ops page to Flower

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

    ENV = {
        "redis_url": ("REDIS_URL", str),
        "broker_url": ("VEXORA_BROKER_URL", str),
        "base_url": ("VEXORA_BASE_URL", str),
        "merchant_no": ("VEXORA_MERCHANT_NO", str),
        "app_secret": ("VEXORA_APP_SECRET", str),
        "notify_url": ("VEXORA_NOTIFY_URL", str),
        "api_token": ("VEXORA_API_TOKEN", str),
        "key_prefix": ("VEXORA_KEY_PREFIX", str),
        "task_events": ("VEXORA_TASK_EVENTS", _bool),
        "job_ttl_seconds": ("VEXORA_JOB_TTL_SECONDS", int),
        "payload_retention_seconds": ("VEXORA_PAYLOAD_RETENTION_SECONDS", int),
        "events_maxlen": ("VEXORA_EVENTS_MAXLEN", int),
        "connect_timeout": ("VEXORA_CONNECT_TIMEOUT", float),
        "read_timeout": ("VEXORA_READ_TIMEOUT", float),
        "retry_max_attempts": ("VEXORA_RETRY_MAX_ATTEMPTS", int),
        "retry_max_seconds": ("VEXORA_RETRY_MAX_SECONDS", float),
        "retry_base_delay": ("VEXORA_RETRY_BASE_DELAY", float),
        "retry_max_delay": ("VEXORA_RETRY_MAX_DELAY", float),
        "retry_after_cap": ("VEXORA_RETRY_AFTER_CAP", float),
        "lease_seconds": ("VEXORA_LEASE_SECONDS", float),
        "lease_renew_seconds": ("VEXORA_LEASE_RENEW_SECONDS", float),
        "request_deadline": ("VEXORA_REQUEST_DEADLINE", float),
        "visibility_timeout": ("VEXORA_VISIBILITY_TIMEOUT", float),
        "amount_max": ("VEXORA_AMOUNT_MAX", int),
        "channel_codes": ("VEXORA_CHANNEL_CODES", _tuple),
        "way_codes": ("VEXORA_WAY_CODES", _tuple),
        "allow_private_ip": ("VEXORA_ALLOW_PRIVATE_IP", _bool),
        "remark_max_length": ("VEXORA_REMARK_MAX_LENGTH", int),
        "callback_max_bytes": ("VEXORA_CALLBACK_MAX_BYTES", int),
        "callback_allowed_ips": ("VEXORA_CALLBACK_ALLOWED_IPS", _tuple),
        "trusted_proxies": ("VEXORA_TRUSTED_PROXIES", int),
        "ip_limits_enabled": ("VEXORA_IP_LIMITS", _bool),
        "ip_daily_limit": ("VEXORA_IP_DAILY_LIMIT", int),
        "ip_daily_success_limit": ("VEXORA_IP_DAILY_SUCCESS_LIMIT", int),
        "metrics": ("VEXORA_METRICS", _bool),
        "metrics_token": ("VEXORA_METRICS_TOKEN", str),
        "flower_url": ("VEXORA_FLOWER_URL", str),
        "webhook_url": ("VEXORA_WEBHOOK_URL", str),
        "webhook_secret": ("VEXORA_WEBHOOK_SECRET", str),
        "webhook_retry_schedule": ("VEXORA_WEBHOOK_RETRY_SCHEDULE", _seconds),
        "webhook_allow_private": ("VEXORA_WEBHOOK_ALLOW_PRIVATE", _bool),
        "webhook_timeout": ("VEXORA_WEBHOOK_TIMEOUT", float),
        "webhook_dispatch_interval": ("VEXORA_WEBHOOK_DISPATCH_INTERVAL", float),
        "webhook_claim_seconds": ("VEXORA_WEBHOOK_CLAIM_SECONDS", float),
        "webhook_rotation_grace": ("VEXORA_WEBHOOK_ROTATION_GRACE", float),
        "webhook_disable_after": ("VEXORA_WEBHOOK_DISABLE_AFTER", float),
        "reconcile_interval": ("VEXORA_RECONCILE_INTERVAL", float),
        "reconcile_batch": ("VEXORA_RECONCILE_BATCH", int),
        "paying_query_after": ("VEXORA_PAYING_QUERY_AFTER", float),
        "queued_redrive_after": ("VEXORA_QUEUED_REDRIVE_AFTER", float),
        "reconcile_backoff_base": ("VEXORA_RECONCILE_BACKOFF_BASE", float),
        "reconcile_backoff_max": ("VEXORA_RECONCILE_BACKOFF_MAX", float),
        "reconcile_horizon": ("VEXORA_RECONCILE_HORIZON", float),
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Defaults, then the environment, then explicit overrides (e.g. from the CLI)."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, (var, parse) in cls.ENV.items():
            if environ.get(var) not in (None, ""):
                try:
                    values[name] = parse(environ[var])
                except ValueError as exc:
                    raise ConfigurationError(f"{var}: {exc}") from None
        secret_file = environ.get("VEXORA_APP_SECRET_FILE")
        if secret_file and "app_secret" not in values:
            try:
                with open(secret_file, encoding="utf-8") as fh:
                    values["app_secret"] = fh.read().strip()
            except OSError as exc:
                raise ConfigurationError(f"VEXORA_APP_SECRET_FILE: {exc.strerror}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def celery_broker_url(self) -> str:
        """Where Celery messages go: ``VEXORA_BROKER_URL``, else the job store's Redis."""
        return self.broker_url or self.redis_url

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
        """Seconds before the broker hands an unacknowledged message (its worker died) to another.

        One and a half leases: by then the dead worker's leases have run out, so its redelivered
        messages take its claimed jobs over, and its prefetched, unstarted ones (still ``queued``)
        are sent by someone else — all well within a minute. A message of a live worker that is
        redelivered anyway (a submit longer than this) finds the lease renewed and changes nothing.
        """
        return self.visibility_timeout if self.visibility_timeout > 0 else 1.5 * self.lease

    def require_gateway(self) -> None:
        """Fail loudly when the settings cannot talk to a gateway."""
        missing = [var for name, (var, _) in self.ENV.items()
                   if name in {"base_url", "merchant_no", "app_secret"} and not getattr(self, name)]
        if missing:
            raise ConfigurationError("missing configuration: " + ", ".join(missing))
        parts = urlsplit(self.base_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ConfigurationError("VEXORA_BASE_URL must be an absolute http(s) URL")
