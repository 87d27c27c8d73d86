"""One webhook delivery: sign, POST, record the attempt, and decide what comes next.

2xx: delivered. Connection errors, timeouts, 429 and 5xx: again after the next step of the
retry schedule (``VEXORA_WEBHOOK_RETRY_SCHEDULE``; a ``Retry-After`` wins), until it runs out.
410 Gone: the endpoint is disabled at once. Any other answer: failed (the receiver refused it;
replay it once fixed). An endpoint failing for ``VEXORA_WEBHOOK_DISABLE_AFTER`` is disabled too;
both emit ``webhook.endpoint_disabled`` to the other endpoints. Every attempt is recorded: time,
endpoint, status, latency, the first 200 characters of the answer.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import urllib3
from urllib3.exceptions import HTTPError

from worker.webhooks.endpoints import Endpoints, check_url
from worker.webhooks.outbox import Dispatcher
from worker.webhooks.signing import signature_header

__all__ = ["Deliverer"]

log = logging.getLogger("vexora.webhooks")

_SNIPPET = 200
_RETRY_AFTER_MAX = 24 * 3600.0


class Deliverer:
    """Sends deliveries handed out by the dispatcher; safe to share between threads."""

    def __init__(self, dispatcher: Dispatcher, endpoints: Endpoints, *, schedule: tuple[float, ...],
                 timeout: float, disable_after: float, allow_private: bool, meter=None,
                 clock: Callable[[], float] = time.time):
        self.dispatcher = dispatcher
        self.redis = dispatcher.redis
        self.endpoints = endpoints
        self.schedule = schedule
        self.disable_after = disable_after
        self.allow_private = allow_private
        self.meter = meter
        self.clock = clock
        self._checked: dict[str, tuple[str | None, float]] = {}
        self.http = urllib3.PoolManager(num_pools=16, maxsize=64, block=False, retries=False)  # > a worker's threads
        self.timeout = urllib3.Timeout(connect=min(3.0, timeout), read=timeout, total=timeout + 3)

    def deliver(self, members: list[str]) -> dict[str, int]:
        done: dict[str, int] = {}
        endpoints: dict[str, dict | None] = {}  # read once per task: a batch is one endpoint's
        for member in members:
            endpoint_id = member.split("|", 1)[1]
            if endpoint_id not in endpoints:
                endpoints[endpoint_id] = self.endpoints.get(endpoint_id)
            result = self.deliver_one(member, endpoints[endpoint_id])
            done[result] = done.get(result, 0) + 1
        return done

    def deliver_one(self, member: str, endpoint: dict | None = None) -> str:
        """One delivery: two Redis round trips (read and claim; record and reschedule) and a POST."""
        event_id, endpoint_id = member.split("|", 1)
        d = self.dispatcher
        key = d.delivery_key(event_id, endpoint_id)
        endpoint = endpoint if endpoint is not None else self.endpoints.get(endpoint_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(key)
        pipe.get(d.body_key(event_id))
        # claimed again for this request's own length: only a dead worker's delivery comes back
        pipe.zadd(d.due_key, {member: int((self.clock() + self.timeout.total + 5) * 1000)}, xx=True)
        raw, body, _ = pipe.execute()
        delivery = {_t(k): _t(v) for k, v in raw.items()}
        if not delivery or body is None or endpoint is None:
            self.redis.zrem(d.due_key, member)
            return "expired"
        if delivery.get("status") in ("delivered", "failed"):
            self.redis.zrem(d.due_key, member)
            return "already_done"
        if not endpoint["enabled"]:
            self._settle(member, key, delivery, endpoint_id, event_id, None, {"status": "skipped"})
            return "skipped"
        attempt = int(delivery.get("attempts") or 0) + 1
        status, retry_after, snippet, latency_ms = self._post(endpoint, event_id, body)
        entry = self._attempt(delivery, endpoint_id, event_id, attempt, status, latency_ms, snippet)
        if isinstance(status, int) and 200 <= status < 300:
            self._settle(member, key, delivery, endpoint_id, event_id, entry,
                         {"status": "delivered", "attempts": attempt})
            if endpoint.get("failingSince"):
                endpoint.update(self.endpoints.failing(endpoint_id, False) or {})
            return self._count("delivered" if attempt == 1 else "delivered_after_retry")
        if status == 410:
            self._settle(member, key, delivery, endpoint_id, event_id, entry,
                         {"status": "failed", "attempts": attempt, "last": status})
            self._disable(endpoint, "the receiver answered 410 Gone")
            return self._count("gone")
        retryable = not isinstance(status, int) or status == 429 or status >= 500
        if not endpoint.get("failingSince"):
            endpoint.update(self.endpoints.failing(endpoint_id, True) or {})
        if retryable and attempt <= len(self.schedule):
            wait = retry_after if retry_after is not None else self.schedule[attempt - 1]
            due = int((self.clock() + min(wait, _RETRY_AFTER_MAX)) * 1000)
            self._settle(member, key, delivery, endpoint_id, event_id, entry,
                         {"attempts": attempt, "status": "retrying", "nextAt": due, "last": str(status)}, due=due)
            result = "retry"
        else:
            self._settle(member, key, delivery, endpoint_id, event_id, entry,
                         {"status": "failed", "attempts": attempt, "last": str(status)})
            result = "failed"
        since = endpoint.get("failingSince")
        if since and self.clock() * 1000 - since > self.disable_after * 1000:
            self._disable(endpoint, f"failing for more than {self.disable_after / 86400:g} days")
        return self._count(result)

    def _post(self, endpoint: dict, event_id: str, body: bytes) -> tuple[object, float | None, str, int]:
        why = self._url_problem(endpoint["url"])
        if why:  # checked again now: a name may resolve elsewhere than when it was added
            return "refused_url", None, why, 0
        timestamp = int(self.clock())
        msg_id = f"msg_{event_id}"
        headers = {"content-type": "application/json", "user-agent": "vexora-checkout-webhooks",
                   "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                   "webhook-signature": signature_header(msg_id, timestamp, body,
                                                          self.endpoints.signing_secrets(endpoint))}
        started = time.monotonic()
        try:
            response = self.http.request("POST", endpoint["url"], body=body, headers=headers,
                                         timeout=self.timeout, redirect=False, preload_content=True)
        except (HTTPError, OSError) as exc:
            kind = "timeout" if "timed out" in str(exc).lower() or "timeout" in type(exc).__name__.lower() else "connection"
            return kind, None, type(exc).__name__, int((time.monotonic() - started) * 1000)
        latency = int((time.monotonic() - started) * 1000)
        snippet = response.data[:_SNIPPET].decode("utf-8", "replace")
        return response.status, _retry_after(response.headers.get("Retry-After")), snippet, latency

    def _url_problem(self, url: str) -> str | None:
        """``check_url``, its answer kept a minute (a DNS lookup per delivery is not needed)."""
        now = self.clock()
        cached = self._checked.get(url)
        if cached and cached[1] > now:
            return cached[0]
        why = check_url(url, allow_private=self.allow_private)
        self._checked[url] = (why, now + 60)
        return why

    def _attempt(self, delivery: dict, endpoint_id: str, event_id: str, attempt: int, status,
                 latency_ms: int, snippet: str) -> dict:
        return {"at": int(self.clock() * 1000), "endpoint": endpoint_id, "webhookId": f"msg_{event_id}",
                "type": delivery.get("type"), "sequence": int(delivery.get("sequence") or 0),
                "attempt": attempt, "status": status, "latencyMs": latency_ms, "response": snippet}

    def _settle(self, member: str, key: str, delivery: dict, endpoint_id: str, event_id: str,
                entry: dict | None, mapping: dict, *, due: int | None = None) -> None:
        """The attempt recorded and the delivery's next step, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        if entry is not None:
            attempts = self.dispatcher.attempts_key(delivery.get("tradeNo") or f"_endpoint_{endpoint_id}")
            pipe.rpush(attempts, json.dumps(entry, ensure_ascii=False))
            pipe.ltrim(attempts, -100, -1)
            pipe.expire(attempts, 30 * 24 * 3600)
        pipe.hset(key, mapping=mapping)
        if due is None:
            pipe.zrem(self.dispatcher.due_key, member)
        else:
            pipe.zadd(self.dispatcher.due_key, {member: due})
        pipe.execute()

    def _disable(self, endpoint: dict, reason: str) -> None:
        if not endpoint.get("enabled", True):
            return
        self.endpoints.set_enabled(endpoint["id"], False, reason)
        log.warning("webhook endpoint %s disabled: %s", endpoint["id"], reason)
        self.dispatcher.emit("webhook.endpoint_disabled", {"endpointId": endpoint["id"], "url": endpoint["url"],
                                                           "reason": reason})

    def _count(self, result: str) -> str:
        if self.meter is not None:
            self.meter.inc("webhook_deliveries_total", result=result)
        return result


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


def _t(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
