"""Deployment-wide metrics: counted by every process, kept in Redis, read by ``GET /metrics``.

Two kinds of numbers:
- What the store knows, read when Prometheus scrapes: jobs per open state and the oldest one's
  age (``p:entered:<state>``), the review queue (``p:review``), the last reconciler pass, and the
  state changes, counted by the move script itself in the step that makes them
  (``p:metrics:transitions``) — exact, and free for the worker.
- What a process sees (gateway requests and their latency, callbacks, reconciler results):
  counted in memory (``Meter``) and added to one Redis hash (``p:metrics:counters``) by a
  background thread every ``FLUSH_SECONDS`` in one round trip, so a request costs a few
  microseconds, not a round trip. A process that dies loses at most its last interval's counts.

The streams' readers, read when Prometheus scrapes (``worker.store.streams.readers``): for each
consumer group of the webhook outbox (the dispatcher's) and of ``p:events`` (apps' event
consumers), how many entries it has not read or not acknowledged and the age of the oldest —
the outbox's lag, which the trim pass never drops (``VexoraWebhookOutboxLagging``). And the
webhook endpoints by state (``vexora_webhook_endpoints{state}``, ``VexoraWebhookEndpointDisabled``).

``collect`` turns both into Prometheus metric families (``prometheus_client``), labelled only by
state, operation, outcome or result, and the merchant ``account`` (accounts are few) — never a
tradeNo, an IP or a payer value. Per account: ``vexora_jobs{state,account}`` (the open jobs of
accounts other than ``default`` are counted by the scripts in ``p:metrics:open``; ``default``'s
are the rest, so jobs from before accounts count there), ``vexora_transitions_total{from,to,account}``
and ``vexora_callbacks_total{result,account}`` (empty where the account is not known: a callback
refused before its job was found).
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from worker.domain.access import DEFAULT_ACCOUNT
from worker.logs import event
from worker.store.jobs import JobStore
from worker.store.streams import readers

__all__ = ["Meter", "StoreCollector", "BUCKETS", "FLUSH_SECONDS"]

log = logging.getLogger("vexora.metrics")

FLUSH_SECONDS = 5.0
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_SEP = "|"


def _field(name: str, labels: Iterable[tuple[str, str]]) -> str:
    return name + _SEP + ",".join(f"{k}={v}" for k, v in labels)


def _parse(field: str) -> tuple[str, dict[str, str]]:
    name, _, rest = field.partition(_SEP)
    labels = dict(pair.split("=", 1) for pair in rest.split(",") if pair)
    return name, labels


class Meter:
    """In-memory counters of one process, added to Redis in the background; thread-safe."""

    def __init__(self, store: JobStore, *, flush_seconds: float = FLUSH_SECONDS):
        self.store = store  # the counters are kept with the store (``JobStore.add_counters``)
        self.flush_seconds = flush_seconds
        self._counts: Counter = Counter()
        self._fields: dict[tuple, object] = {}  # field names built once per label set
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        field = self._fields.get((name, *labels.items()))
        if field is None:
            field = self._fields[(name, *labels.items())] = _field(name, sorted(labels.items()))
        with self._lock:
            self._counts[field] += amount
            self._ensure_flushing()

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        """A histogram observation: cumulative buckets, sum and count, as Prometheus keeps them."""
        key = ("histogram", name, *labels.items())
        fields = self._fields.get(key)
        if fields is None:
            base = sorted(labels.items())
            fields = self._fields[key] = (
                [_field(f"{name}_bucket", base + [("le", repr(le))]) for le in BUCKETS],
                _field(f"{name}_bucket", base + [("le", "+Inf")]),
                _field(f"{name}_sum", base), _field(f"{name}_count", base))
        buckets, inf, total, count = fields
        with self._lock:
            counts = self._counts
            for le, field in zip(BUCKETS, buckets):
                if seconds <= le:
                    counts[field] += 1
            counts[inf] += 1
            counts[total] += seconds
            counts[count] += 1
            self._ensure_flushing()

    def _ensure_flushing(self) -> None:
        # (under the lock)
        if self._thread is None or not self._thread.is_alive():
            # started on first use: after a fork (gunicorn, prefork), in the process that counts
            if self._thread is None:
                atexit.register(self.flush)  # the last interval's counts, on a clean exit
            self._thread = threading.Thread(target=self._run, name="vexora-metrics", daemon=True)
            self._thread.start()

    def flush(self) -> None:
        """Add what was counted since the last flush to Redis (one round trip)."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
        if not counts:
            return
        try:
            self.store.add_counters(counts)
        except _REDIS_DOWN as exc:
            with self._lock:
                self._counts.update(counts)  # kept for the next flush
            event(log, logging.WARNING, "metrics_not_flushed", error=type(exc).__name__, detail=str(exc))

    def _run(self) -> None:
        while True:
            time.sleep(self.flush_seconds)
            self.flush()


class StoreCollector:
    """A ``prometheus_client`` collector that reads the deployment's numbers from Redis."""

    def __init__(self, store, *, clock=time.time):
        self.store = store
        self.clock = clock

    def collect(self):
        stats = self.store.stats()
        now = self.clock()

        jobs = GaugeMetricFamily("vexora_jobs", "Jobs now in each open state, by merchant account.",
                                 labels=["state", "account"])
        oldest = GaugeMetricFamily("vexora_oldest_job_age_seconds",
                                   "Age in its state of the oldest job in each open state.", labels=["state"])
        by_account: dict[str, dict[str, int]] = {}
        for field, value in stats.get("open_by_account", {}).items():
            state, _, account = field.partition("|")
            by_account.setdefault(state, {})[account] = max(0, value)
        for state, (count, oldest_ms) in stats["open"].items():
            others = by_account.get(state, {})
            jobs.add_metric([state, DEFAULT_ACCOUNT], max(0, count - sum(others.values())))
            for account, value in sorted(others.items()):
                jobs.add_metric([state, account], value)
            oldest.add_metric([state], max(0.0, now - oldest_ms / 1000) if oldest_ms is not None else 0.0)
        yield jobs
        yield oldest
        yield GaugeMetricFamily("vexora_jobs_needing_review", "Jobs flagged for a person.", value=stats["review"])

        moves = CounterMetricFamily("vexora_transitions", "State changes of jobs, by merchant account.",
                                    labels=["from", "to", "account"])
        for field, value in sorted(stats["transitions"].items()):
            source, _, rest = field.partition(">")
            target, _, account = rest.partition(">")
            moves.add_metric([source, target, account or DEFAULT_ACCOUNT], value)
        yield moves
        last_pass = stats["last_pass"]
        yield GaugeMetricFamily("vexora_reconcile_last_pass_timestamp_seconds",
                                "Unix time of the last completed reconciler pass (0: none yet).",
                                value=last_pass / 1000 if last_pass else 0)
        yield from _process_counters(stats["counters"])
        yield from self._streams(now)
        yield self._endpoints()

    def _endpoints(self):
        """``vexora_webhook_endpoints{state}``: the webhook endpoints by health, read from their
        hash at each scrape (one HVALS; no job's path touches it). ``failing``: enabled, its last
        delivery failed; ``disabled``: turned off by the dispatcher (410 Gone, or failing for
        ``VEXORA_WEBHOOK_DISABLE_AFTER``); ``disabled_by_operator``: turned off on purpose."""
        family = GaugeMetricFamily("vexora_webhook_endpoints",
                                   "Webhook endpoints by state: enabled, failing (enabled, deliveries failing), "
                                   "disabled (by the dispatcher: 410 Gone or failing too long), "
                                   "disabled_by_operator.", labels=["state"])
        counts = dict.fromkeys(ENDPOINT_STATES, 0)
        for raw in self.store.redis.hvals(self.store.keys.webhook_endpoints):
            counts[endpoint_state(json.loads(raw))] += 1
        for state, count in counts.items():
            family.add_metric([state], count)
        return family

    def _streams(self, now: float):
        unread = GaugeMetricFamily("vexora_stream_unread_entries",
                                   "Entries of a stream a consumer group has not read or not acknowledged "
                                   "(stream: webhooks = the webhook outbox, events = the job events).",
                                   labels=["stream", "group"])
        age = GaugeMetricFamily("vexora_stream_oldest_unread_age_seconds",
                                "Age of the oldest entry a consumer group has not read or not acknowledged "
                                "(0: none).", labels=["stream", "group"])
        keys = self.store.keys
        for stream, key in (("webhooks", keys.webhook_outbox), ("events", keys.events)):
            for group in readers(self.store.redis, key):
                unread.add_metric([stream, group["group"]], group["unread"])
                oldest = group["oldestUnreadMs"]
                age.add_metric([stream, group["group"]], max(0.0, now - oldest / 1000) if oldest else 0.0)
        yield unread
        yield age


ENDPOINT_STATES = ("enabled", "failing", "disabled", "disabled_by_operator")
OPERATOR_DISABLED = "disabled by the operator"


def endpoint_state(record: dict) -> str:
    """One endpoint record's state for ``vexora_webhook_endpoints`` (a record without a reason
    was disabled by the CLI, i.e. by an operator)."""
    if not record.get("enabled", True):
        reason = record.get("disabledReason")
        return "disabled_by_operator" if not reason or reason == OPERATOR_DISABLED else "disabled"
    return "failing" if record.get("failingSince") else "enabled"


_COUNTERS = {
    "gateway_requests_total": ("vexora_gateway_requests", "Requests to the gateway, by operation and outcome.",
                               ["op", "outcome"]),
    "callbacks_total": ("vexora_callbacks", "Gateway callbacks received by the web app, by result and "
                        "merchant account (empty: not known).", ["result", "account"]),
    "reconcile_total": ("vexora_reconcile", "Reconciler checks, by result.", ["result"]),
    "webhook_deliveries_total": ("vexora_webhook_deliveries", "Webhook delivery attempts, by result.",
                                 ["result"]),
}
_HISTOGRAMS = {
    "gateway_request_duration_seconds": ("vexora_gateway_request_duration_seconds",
                                         "Gateway request latency, connect to last byte.", ["op"]),
}


def _process_counters(counters: dict[str, float]):
    by_name: dict[str, list[tuple[dict, float]]] = {}
    for field, value in counters.items():
        name, labels = _parse(field)
        by_name.setdefault(name, []).append((labels, value))
    for key, (name, doc, label_names) in _COUNTERS.items():
        family = CounterMetricFamily(name, doc, labels=label_names)
        for labels, value in sorted(by_name.get(key, []), key=lambda x: sorted(x[0].items())):
            family.add_metric([labels.get(n, "") for n in label_names], value)
        yield family
    for key, (name, doc, label_names) in _HISTOGRAMS.items():
        family = HistogramMetricFamily(name, doc, labels=label_names)
        series: dict[tuple, dict] = {}
        for labels, value in by_name.get(f"{key}_bucket", []):
            le = labels.pop("le")
            series.setdefault(tuple(labels.get(n, "") for n in label_names), {"buckets": {}})["buckets"][le] = value
        for suffix in ("sum", "count"):
            for labels, value in by_name.get(f"{key}_{suffix}", []):
                series.setdefault(tuple(labels.get(n, "") for n in label_names), {"buckets": {}})[suffix] = value
        for label_values, data in sorted(series.items()):
            bounds = [repr(b) for b in BUCKETS] + ["+Inf"]
            buckets = [(b, data["buckets"].get(b, 0.0)) for b in bounds]
            family.add_metric(list(label_values), buckets, data.get("sum", 0.0))
        yield family
