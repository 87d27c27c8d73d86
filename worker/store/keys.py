"""Every Redis key name this product uses, in one place (``p`` is ``Settings.key_prefix``).

A job's own keys share the hash tag ``{<tradeNo>}``, so they sit in one Redis Cluster slot and one
script may touch them all (docs/redis-cluster.md); every key a script touches is passed in its
``KEYS``, never built inside Lua. Before the hash tags a job's keys were ``p:job:<tradeNo>`` etc.;
``worker.store.migrate`` renames them.

    p:job:{<tradeNo>}                    hash    the record (no payer data but the masked ``contact``)
    p:job:{<tradeNo>}:history            list    JSON entries {at, from, to, detail}
    p:job:{<tradeNo>}:payload            string  the merchant's payload (payer data) while the job needs it
    p:job:{<tradeNo>}:retained           string  the same, once purged, for ``payload_retention`` seconds
    p:orphan:{<tradeNo>}                 hash    money reported for a tradeNo with no job, for a person
    p:events                             stream  {tradeNo, from, to, at, detail}
    p:index:<state>                      zset    tradeNos of open states, scored by when the reconciler is due
    p:entered:<state>                    zset    tradeNos of open states, scored by entry time (metrics)
    p:review                             set     tradeNos flagged for a person (jobs and orphans), until resolved
    p:metrics:transitions                hash    ``from>to`` (account default) or ``from>to>account`` -> count of state changes
    p:metrics:open                       hash    ``state|account`` -> open jobs, accounts other than default (metrics)
    p:metrics:counters                   hash    deployment-wide counters (``worker.ops.metrics``)
    p:ip:<JST day>:<hashed IP>           hash    per-IP daily counts of account default (``worker.store.limits``)
    p:ip:<JST day>:<account>:<hashed IP> hash    the same for another account (its ``ipHash`` names it)
    p:reconcile:lock                     string  one reconciler pass at a time
    p:reconcile:last_pass                string  when the last pass ended (ms)
    p:replication:marker                 string  written before a ``WAIT`` (``worker.store.connection``)
    p:webhooks:endpoints                 hash    endpoint id -> record (``worker.webhooks.endpoints``)
    p:webhooks:outbox                    stream  events, written by the store's scripts with the change
    p:webhooks:due                       zset    delivery member -> when it is due (ms)
    p:webhooks:body:<event>              string  an event's JSON body
    p:webhooks:delivery:<event>:<ep>     hash    one delivery's status and attempts
    p:webhooks:attempts:{<tradeNo>}      list    the attempts of a job's deliveries
    p:webhooks:dispatch:lock             string  one dispatcher pass at a time
    p:audit                              stream  operator and admin actions (``worker.store.audit``)
    p:ops:operators                      hash    operator name -> JSON record with its scrypt hash (``worker.store.operators``)
    p:ops:last_login                     hash    operator name -> when they last logged in (ms)
    p:ops:secret                         string  a random key, made once: the /ops form tokens of SSO requests
    p:ops:session:<sha256 of id>         string  a logged-in operator's /ops session (JSON), with a TTL
    p:ops:fail:name:<sha256 of name>     string  failed /ops logins for a name, with a TTL (the window)
    p:ops:fail:addr:<sha256 of address>  string  failed /ops logins from an address, with a TTL
    p:apikeys                            hash    API key id -> record: name, account, scopes, SHA-256 of the key (``worker.store.apikeys``)
    p:apikeys:used                       hash    API key id -> when it was last used (ms), written at most once a minute
    p:jobs:created                       zset    every job's tradeNo by its createdAt (ms), trimmed past the TTL (/ops lists)
    p:jobs:names                         zset    every job's tradeNo, score 0 (/ops prefix search, by lex)
    p:jobs:platform                      zset    ``<platFormTradeNo> <tradeNo>``, score 0 (/ops search by the gateway's id)
    p:jobs:platform_of                   hash    tradeNo -> its ``p:jobs:platform`` member (to trim it with the job)
    p:daily:<JST day>                    hash    ``<account>|created``, ``<account>|<state>`` (moves into it), ``<account>|paid`` (/ops totals)

Not ours, but written by our scripts: kombu's Redis list of a broker queue at priority 0 is the
queue's own name (``broker_queue``), unprefixed; the create script pushes a job's first task
message there when the broker is the store's Redis (``worker.runtime.messages``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keys", "broker_queue"]


def broker_queue(queue: str) -> str:
    """kombu's Redis list holding ``queue``'s messages of priority 0 (Celery's default)."""
    return queue


@dataclass(frozen=True)
class Keys:
    """The key names under one prefix."""

    prefix: str = "vexora"

    # -- a job's own keys (hash tag {tradeNo}) ----------------------------------------------
    def job(self, trade_no: str) -> str:
        return f"{self.prefix}:job:{{{trade_no}}}"

    def history(self, trade_no: str) -> str:
        return f"{self.job(trade_no)}:history"

    def payload(self, trade_no: str) -> str:
        return f"{self.job(trade_no)}:payload"

    def retained(self, trade_no: str) -> str:
        return f"{self.job(trade_no)}:retained"

    def orphan(self, trade_no: str) -> str:
        """A paid report for a tradeNo with no job (same hash tag as the job it would be)."""
        return f"{self.prefix}:orphan:{{{trade_no}}}"

    # -- the deployment's keys --------------------------------------------------------------
    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    def index(self, state: str) -> str:
        """Open jobs of ``state``, scored by when the reconciler is next due to look."""
        return f"{self.prefix}:index:{state}"

    def entered(self, state: str) -> str:
        """Open jobs of ``state`` by the time they entered it (for metrics; never rescheduled)."""
        return f"{self.prefix}:entered:{state}"

    @property
    def review(self) -> str:
        """The set of tradeNos flagged for a person and not yet resolved."""
        return f"{self.prefix}:review"

    @property
    def transitions(self) -> str:
        """Hash ``from>to`` -> count of every state change (and ``new>queued``), for metrics."""
        return f"{self.prefix}:metrics:transitions"

    @property
    def counters(self) -> str:
        return f"{self.prefix}:metrics:counters"

    @property
    def open_by_account(self) -> str:
        """Hash ``<state>|<account>`` -> jobs now in that open state, for every account but
        ``default`` (whose count is the rest of ``entered``'s): ``vexora_jobs{account}``."""
        return f"{self.prefix}:metrics:open"

    def ip_day(self, day: str, hashed_ip: str) -> str:
        return f"{self.prefix}:ip:{day}:{hashed_ip}"

    @property
    def reconcile_lock(self) -> str:
        return f"{self.prefix}:reconcile:lock"

    @property
    def reconcile_last_pass(self) -> str:
        return f"{self.prefix}:reconcile:last_pass"

    @property
    def replication_marker(self) -> str:
        return f"{self.prefix}:replication:marker"

    # -- webhooks ---------------------------------------------------------------------------
    @property
    def webhook_endpoints(self) -> str:
        """A move records a webhook event only when this hash exists."""
        return f"{self.prefix}:webhooks:endpoints"

    @property
    def webhook_outbox(self) -> str:
        return f"{self.prefix}:webhooks:outbox"

    @property
    def webhook_due(self) -> str:
        return f"{self.prefix}:webhooks:due"

    @property
    def webhook_dispatch_lock(self) -> str:
        return f"{self.prefix}:webhooks:dispatch:lock"

    def webhook_body(self, event_id: str) -> str:
        return f"{self.prefix}:webhooks:body:{event_id}"

    def webhook_delivery(self, event_id: str, endpoint_id: str) -> str:
        return f"{self.prefix}:webhooks:delivery:{event_id}:{endpoint_id}"

    def webhook_attempts(self, trade_no: str) -> str:
        """Per job, under the job's hash tag."""
        return f"{self.prefix}:webhooks:attempts:{{{trade_no}}}"

    @property
    def audit(self) -> str:
        """Every operator and admin action, kept ``VEXORA_AUDIT_RETENTION_DAYS``."""
        return f"{self.prefix}:audit"

    # -- operators (/ops) -------------------------------------------------------------------
    @property
    def operators(self) -> str:
        return f"{self.prefix}:ops:operators"

    @property
    def operators_last_login(self) -> str:
        return f"{self.prefix}:ops:last_login"

    @property
    def ops_secret(self) -> str:
        return f"{self.prefix}:ops:secret"

    def ops_session(self, hashed_id: str) -> str:
        """A session by the SHA-256 of its id: a reader of Redis cannot take the cookie's value."""
        return f"{self.prefix}:ops:session:{hashed_id}"

    def ops_failures(self, kind: str, hashed: str) -> str:
        """Failed logins for a name (``kind="name"``) or an address (``"addr"``), hashed."""
        return f"{self.prefix}:ops:fail:{kind}:{hashed}"

    # -- access -----------------------------------------------------------------------------
    @property
    def api_keys(self) -> str:
        """API key id -> JSON record (the key itself never: only its SHA-256)."""
        return f"{self.prefix}:apikeys"

    @property
    def api_keys_used(self) -> str:
        """API key id -> when it was last used (ms)."""
        return f"{self.prefix}:apikeys:used"

    # -- the console's indexes (/ops; written by create.lua and move.lua in the job's step) ------
    @property
    def jobs_created(self) -> str:
        """Every job's tradeNo scored by its ``createdAt`` (ms): /ops lists, newest first."""
        return f"{self.prefix}:jobs:created"

    @property
    def jobs_names(self) -> str:
        """Every job's tradeNo at score 0: /ops finds a tradeNo by its prefix (``ZRANGEBYLEX``)."""
        return f"{self.prefix}:jobs:names"

    @property
    def jobs_platform(self) -> str:
        """``<platFormTradeNo> <tradeNo>`` at score 0: /ops finds a job by the gateway's id or its prefix."""
        return f"{self.prefix}:jobs:platform"

    @property
    def jobs_platform_of(self) -> str:
        """tradeNo -> its member of ``jobs_platform``: the trim of ``jobs_created`` removes it too."""
        return f"{self.prefix}:jobs:platform_of"

    def daily(self, day: str) -> str:
        """Per JST day (``YYYY-MM-DD``): ``<account>|created``, ``<account>|<state>``, ``<account>|paid``."""
        return f"{self.prefix}:daily:{day}"
