"""The per-process bundle of clients (Redis, store, gateway, schema), built on first use.

Nothing is connected at import time: a process builds its runtime the first time a task or a
producer needs it, and rebuilds it after a fork (Celery's prefork pool), so no connection is
ever shared between processes.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property

from redis import Redis

from schemas import CheckoutRequestSchema
from worker.config.accounts import Account
from worker.config.settings import Settings
from worker.domain.access import DEFAULT_ACCOUNT
from worker.domain.errors import ConfigurationError
from worker.store.connection import Replication, make_client
from worker.store.keys import Keys

__all__ = ["Runtime", "get_runtime", "reset_runtime", "checkout_schema"]


def checkout_schema(settings: Settings, account: Account | None = None) -> CheckoutRequestSchema:
    """The job-payload schema configured by the settings and the job's account (its channel and
    way codes, its ``notifyUrl``); the ``default`` account's without one (built once per runtime)."""
    account = account or settings.account(DEFAULT_ACCOUNT) or next(iter(settings.accounts.values()))
    try:
        return CheckoutRequestSchema(
            amount_max=settings.amount_max, channel_codes=account.channel_codes,
            way_codes=account.way_codes, allow_private_ip=settings.allow_private_ip,
            remark_max_length=settings.remark_max_length, notify_url_default=account.notify_url,
        )
    except ValueError as exc:
        raise ConfigurationError(f"checkout rules: {exc}") from None


class _JobAccountGateway:
    """The gateway client for callers that name a tradeNo only (the review queue's query): each
    query is made for the job's own account (one HGET first; a person's query, not a hot path)."""

    def __init__(self, gateway, store):
        self._gateway, self._store = gateway, store
        self.not_found_messages = gateway.not_found_messages

    def query(self, trade_no: str, account: str | None = None):
        if account is None:
            _exists, account = self._store.account_of(trade_no)
        return self._gateway.query(trade_no, account)


class Runtime:
    """Lazily built clients for one process and one ``Settings``."""

    def __init__(self, settings: Settings):
        self.settings = settings

    @cached_property
    def redis(self) -> Redis:
        """The job store's Redis: the one server, or the master the Sentinels name (worker.store.connection)."""
        s = self.settings
        return make_client(s.redis_url, master=s.redis_sentinel_master, sentinel_password=s.redis_sentinel_password,
                           health_check_interval=30, socket_connect_timeout=5, socket_timeout=10,
                           retry_on_timeout=True)

    @cached_property
    def replication(self) -> Replication:
        """Acknowledgements that wait for ``Settings.min_replicas`` replicas (off at 0)."""
        s = self.settings
        # keep socket_timeout above the WAIT timeout: WAIT blocks its connection that long
        return Replication(self.redis, min_replicas=s.min_replicas, timeout=min(s.redis_wait_timeout, 9.0),
                           marker_key=Keys(s.key_prefix).replication_marker)

    def confirm_queued(self) -> None:
        """After a broker message is published: return only once it is on the replicas too, when
        the broker is the job store's Redis (a RabbitMQ broker confirms its own publishes)."""
        if self.settings.celery_broker_url == self.settings.redis_url:
            self.replication.confirm()

    @cached_property
    def store(self):
        from worker.store.jobs import JobStore
        s = self.settings
        store = JobStore(self.redis, prefix=s.key_prefix, ttl_seconds=s.job_ttl_seconds,
                         events_maxlen=s.events_maxlen, payload_retention=s.payload_retention_seconds,
                         replication=self.replication)
        if s.webhook_url:
            # the default endpoint exists before the first change is recorded: the store's move
            # script records webhook events only when an endpoint does
            self.webhook_endpoints.sync_default(s.webhook_url, s.webhook_secret)
        return store

    @cached_property
    def audit(self):
        """The audit log (``worker.store.audit``): every operator and admin action."""
        from worker.store.audit import AuditLog
        return AuditLog(self.redis, self.store.keys, retention_days=self.settings.audit_retention_days)

    @cached_property
    def webhook_endpoints(self):
        from worker.webhooks.endpoints import Endpoints
        s = self.settings
        return Endpoints(self.redis, s.key_prefix, allow_private=s.webhook_allow_private,
                         rotation_grace=s.webhook_rotation_grace)

    @cached_property
    def webhook_dispatcher(self):
        from worker.celery import WEBHOOK_QUEUE
        from worker.store.keys import broker_queue
        from worker.webhooks.outbox import REPLAY_MARGIN_S, Dispatcher
        messages = self.task_messages  # None: the broker is not this Redis (send_task instead)
        return Dispatcher(self.redis, self.settings.key_prefix, self.webhook_endpoints,
                          lambda members: self.send("vexora.webhooks.deliver", members),
                          deliver_message=None if messages is None else (
                              lambda members: messages.build("vexora.webhooks.deliver", [members],
                                                             queue=WEBHOOK_QUEUE)),
                          broker_list="" if messages is None else broker_queue(WEBHOOK_QUEUE),
                          claim_seconds=self.settings.webhook_claim_seconds,
                          events_maxlen=self.settings.events_maxlen,
                          replay_seconds=sum(self.settings.webhook_retry_schedule) + REPLAY_MARGIN_S)

    @cached_property
    def webhook_deliverer(self):
        from worker.webhooks.delivery import Deliverer
        s = self.settings
        return Deliverer(self.webhook_dispatcher, self.webhook_endpoints, schedule=s.webhook_retry_schedule,
                         timeout=s.webhook_timeout, disable_after=s.webhook_disable_after,
                         allow_private=s.webhook_allow_private, meter=self.meter if s.metrics else None)

    @cached_property
    def celery(self):
        """The Celery app to send with: the process's own when it uses the same broker."""
        from worker.celery import app, create_app
        return app if app.conf.broker_url == self.settings.celery_broker_url else create_app(self.settings)

    def send(self, task_name: str, *args, **options) -> None:
        """Put a task message on the broker; no result is ever awaited (the store has the outcome).

        ``ignore_result`` also keeps the producer off the result backend, whose lost
        connection would otherwise break every later send of this process.
        """
        self.celery.send_task(task_name, args=list(args), ignore_result=True, **options)

    @cached_property
    def task_messages(self):
        """Task messages to write into the broker's list within our own Redis steps
        (``worker.runtime.messages``), or None when the broker is not the store's Redis (RabbitMQ,
        another server): then messages go through ``send``."""
        s = self.settings
        if s.broker_is_rabbitmq or s.celery_broker_url != s.redis_url:
            return None
        from worker.runtime.messages import TaskMessages
        return TaskMessages(reply_to=self.celery.thread_oid)

    @cached_property
    def schema(self) -> CheckoutRequestSchema:
        return checkout_schema(self.settings)

    @cached_property
    def schemas(self) -> dict[str, CheckoutRequestSchema]:
        """Each account's payload schema (its codes and ``notifyUrl``)."""
        return {account.id: checkout_schema(self.settings, account) for account in self.settings.accounts.values()}

    @cached_property
    def meter(self):
        from worker.ops.metrics import Meter
        return Meter(self.store)

    @cached_property
    def gateway(self):
        from worker.gateway.client import GatewayClient
        return GatewayClient(self.settings, meter=self.meter if self.settings.metrics else None)

    @cached_property
    def limits(self):
        """The limits the settler counts successes with: on when any account's are (a job's
        ``ipHash`` names its account's counters)."""
        from worker.store.limits import IpLimits
        s = self.settings
        return IpLimits(self.redis, prefix=s.key_prefix, daily=s.ip_daily_limit,
                        daily_successes=s.ip_daily_success_limit,
                        enabled=any(a.ip_limits.enabled for a in s.accounts.values()))

    @cached_property
    def account_limits(self):
        """Each account's per-IP daily limits (taken before a job's first send)."""
        from worker.store.limits import IpLimits
        return {a.id: IpLimits(self.redis, prefix=self.settings.key_prefix, daily=a.ip_limits.daily,
                               daily_successes=a.ip_limits.daily_successes, enabled=a.ip_limits.enabled)
                for a in self.settings.accounts.values()}

    @cached_property
    def leases(self):
        from worker.flows.lease import LeaseKeeper
        return LeaseKeeper(self.store, lease_seconds=self.settings.lease,
                           renew_every=self.settings.lease_renew_every)

    @cached_property
    def submitter(self):
        from worker.flows.submit import Submitter
        return Submitter(self.settings, self.store, self.gateway, self.schema, self.limits,
                         self.settler, self.leases, schemas=self.schemas, account_limits=self.account_limits)

    @cached_property
    def callbacks(self):
        from worker.flows.callbacks import CallbackProcessor
        return CallbackProcessor(self.store, self.settler, meter=self.meter if self.settings.metrics else None)

    @cached_property
    def reconciler(self):
        from worker.flows.reconcile import Reconciler
        return Reconciler(self.settings, self.store, self.gateway,
                          lambda trade_no: self.send("vexora.checkout.submit", trade_no),
                          self.settler, meter=self.meter if self.settings.metrics else None)

    @cached_property
    def settler(self):
        from worker.flows.settle import Settler
        return Settler(self.store, self.limits)

    @cached_property
    def review(self):
        from worker.flows.review import ReviewQueue
        return ReviewQueue(self.store, self.settler, lambda: _JobAccountGateway(self.gateway, self.store))


_lock = threading.Lock()
_current: tuple[int, Runtime] | None = None


_pid = os.getpid()  # this process's, kept: every task and every request asks for the runtime


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def get_runtime() -> Runtime:
    """This process's runtime, built from the environment on first use (again after a fork)."""
    global _current
    current = _current
    if current is not None and current[0] == _pid:
        return current[1]
    with _lock:
        if _current is None or _current[0] != _pid:
            _current = (_pid, Runtime(Settings.from_env()))
        return _current[1]


def reset_runtime(settings: Settings | None = None) -> Runtime:
    """Replace this process's runtime (tests, the CLI after parsing its options)."""
    global _current
    with _lock:
        _current = (_pid, Runtime(settings or Settings.from_env()))
        return _current[1]
