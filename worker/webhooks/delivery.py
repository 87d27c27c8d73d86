"""One webhook delivery: sign, POST, record the attempt, and decide what comes next.

2xx: delivered. Connection errors, timeouts, 429 and 5xx: again after the next step of the
retry schedule (``VEXORA_WEBHOOK_RETRY_SCHEDULE``; a ``Retry-After`` wins), until it runs out.
410 Gone: the endpoint is disabled at once. Any other answer: failed (the receiver refused it;
replay it once fixed). An endpoint failing for ``VEXORA_WEBHOOK_DISABLE_AFTER`` is disabled too;
both emit ``webhook.endpoint_disabled`` to the other endpoints, naming the endpoint by its id
(never its URL: a query string may hold the receiver's token). Every attempt is recorded: time,
endpoint, status, latency and a short reason of our own (``reason_for``) — never the receiver's
answer, which is read but not kept.

The endpoint's host is resolved once per minute (``resolve_url``): every address it resolves to
is checked, and the POST connects to the checked address itself (pinned; TLS still verifies the
host name and sends it as SNI), so a name that answers differently when the connection is made
(DNS rebinding) cannot turn a webhook into a request into the operator's own network.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from worker.logs import event
from worker.store import scripts
from worker.webhooks.endpoints import Endpoints, resolve_url
from worker.webhooks.outbox import Dispatcher, webhook_id
from worker.webhooks.poster import PostFailed, Poster, reason_for
from worker.webhooks.signing import signature_header

__all__ = ["Deliverer"]

log = logging.getLogger("vexora.webhooks")

_KEEP_ATTEMPTS = (100, 30 * 24 * 3600)  # per job: the newest 100, for 30 days

_RETRY_AFTER_MAX = 24 * 3600.0


class Deliverer:
    """Sends deliveries handed out by the dispatcher; safe to share between threads."""

    def __init__(self, dispatcher: Dispatcher, endpoints: Endpoints, *, schedule: tuple[float, ...],
                 timeout: float, disable_after: float, allow_private: bool, meter=None,
                 clock: Callable[[], float] = time.time, resolve: Callable[[str], list[str]] | None = None):
        self.dispatcher = dispatcher
        self.redis = dispatcher.redis
        self.endpoints = endpoints
        self.schedule = schedule
        self.disable_after = disable_after
        self.allow_private = allow_private
        self.meter = meter
        self.clock = clock
        self.resolve = resolve  # the name lookup (None: the system's); injectable for tests
        self._checked: dict[str, tuple[str | None, str | None, float]] = {}
        self._settle_script = scripts.register(self.redis, "webhook_settle")
        self.total = timeout + 3  # a request's ceiling, connect to last byte
        self.http = Poster(connect_timeout=min(3.0, timeout), total=self.total)

    def deliver(self, members: list[str]) -> dict[str, int]:
        """A batch handed out by the dispatcher (one endpoint's): read and re-claimed in one round
        trip, then one POST and one write per delivery."""
        done: dict[str, int] = {}
        endpoints: dict[str, dict | None] = {}  # read once per task: a batch is one endpoint's
        claimed = self._claim(members)
        for i, (member, raw, body) in enumerate(claimed):
            endpoint_id = member.split("|", 1)[1]
            if endpoint_id not in endpoints:
                endpoints[endpoint_id] = self.endpoints.get(endpoint_id)
            then = claimed[i + 1][0] if i + 1 < len(claimed) else None
            result = self._deliver(member, raw, body, endpoints[endpoint_id], then)
            done[result] = done.get(result, 0) + 1
        return done

    def _claim(self, members: list[str]) -> list[tuple[str, dict, bytes | None]]:
        """Each delivery's record and body, in one round trip; the first is claimed again for one
        request's ceiling (each later one as its predecessor is recorded), so only a dead worker's
        deliveries come back to the dispatcher, and soon."""
        d = self.dispatcher
        pipe = self.redis.pipeline(transaction=False)
        for member in members:
            event_id, endpoint_id = member.split("|", 1)
            pipe.hgetall(d.delivery_key(event_id, endpoint_id))
            pipe.get(d.body_key(event_id))
        if members:
            pipe.zadd(d.due_key, {members[0]: self._claim_until()}, xx=True)
        answers = pipe.execute()
        return [(m, answers[2 * i], answers[2 * i + 1]) for i, m in enumerate(members)]

    def _claim_until(self) -> int:
        return int((self.clock() + self.total + 5) * 1000)

    def _deliver(self, member: str, raw: dict, body: bytes | None, endpoint: dict | None,
                 then: str | None = None) -> str:
        """``then``: the batch's next delivery, claimed in the same round trip as this one's record."""
        event_id, endpoint_id = member.split("|", 1)
        d = self.dispatcher
        key = d.delivery_key(event_id, endpoint_id)
        delivery = {_t(k): _t(v) for k, v in raw.items()}
        if not delivery or body is None or endpoint is None:
            self._settle(member, None, delivery, endpoint_id, event_id, None, None, then=then)
            return "expired"
        if delivery.get("status") in ("delivered", "failed"):
            self._settle(member, None, delivery, endpoint_id, event_id, None, None, then=then)
            return "already_done"
        if not endpoint["enabled"]:
            self._settle(member, key, delivery, endpoint_id, event_id, None, {"status": "skipped"}, then=then)
            return "skipped"
        attempt = int(delivery.get("attempts") or 0) + 1
        hook_id = delivery.get("webhookId") or webhook_id(delivery, event_id)
        status, retry_after, reason, latency_ms = self._post(endpoint, hook_id, body)
        entry = self._attempt(delivery, endpoint_id, hook_id, attempt, status, latency_ms, reason)
        if isinstance(status, int) and 200 <= status < 300:
            self._settle(member, key, delivery, endpoint_id, event_id, entry,
                         {"status": "delivered", "attempts": attempt}, then=then)
            if endpoint.get("failingSince"):
                endpoint.update(self.endpoints.failing(endpoint_id, False) or {})
            return self._count("delivered" if attempt == 1 else "delivered_after_retry")
        if status == 410:
            self._settle(member, key, delivery, endpoint_id, event_id, entry,
                         {"status": "failed", "attempts": attempt, "last": status}, then=then)
            self._disable(endpoint, "the receiver answered 410 Gone")
            return self._count("gone")
        retryable = not isinstance(status, int) or status == 429 or status >= 500
        if not endpoint.get("failingSince"):
            endpoint.update(self.endpoints.failing(endpoint_id, True) or {})
        if retryable and attempt <= len(self.schedule):
            wait = retry_after if retry_after is not None else self.schedule[attempt - 1]
            due = int((self.clock() + min(wait, _RETRY_AFTER_MAX)) * 1000)
            entry["nextAt"] = due  # shown by `webhooks attempts`: written in the same step, no extra trip
            self._settle(member, key, delivery, endpoint_id, event_id, entry,
                         {"attempts": attempt, "status": "retrying", "nextAt": due, "last": str(status)}, due=due,
                         then=then)
            result = "retry"
        else:
            self._settle(member, key, delivery, endpoint_id, event_id, entry,
                         {"status": "failed", "attempts": attempt, "last": str(status)}, then=then)
            result = "failed"
        since = endpoint.get("failingSince")
        if since and self.clock() * 1000 - since > self.disable_after * 1000:
            self._disable(endpoint, f"failing for more than {self.disable_after / 86400:g} days")
        return self._count(result)

    def _post(self, endpoint: dict, msg_id: str, body: bytes) -> tuple[object, float | None, str, int]:
        why, address = self._url_problem(endpoint["url"])
        if why:  # checked again now: a name may resolve elsewhere than when it was added
            return "refused_url", None, why, 0
        timestamp = int(self.clock())
        headers = {"content-type": "application/json", "user-agent": "vexora-checkout-webhooks",
                   "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                   "webhook-signature": signature_header(msg_id, timestamp, body,
                                                          self.endpoints.signing_secrets(endpoint))}
        started = time.monotonic()
        try:
            answer = self.http.post(endpoint["url"], body, headers, address=address)
        except PostFailed as exc:
            return exc.kind, None, str(exc), int((time.monotonic() - started) * 1000)
        latency = int((time.monotonic() - started) * 1000)
        return answer.status, _retry_after(answer.headers.get("Retry-After")), reason_for(answer.status), latency

    def _url_problem(self, url: str) -> tuple[str | None, str | None]:
        """``resolve_url``: (why refused, or None; the checked address to connect to), kept a
        minute (a DNS lookup per delivery is not needed; the connection goes to the address that
        was checked, whatever the name answers meanwhile)."""
        now = self.clock()
        cached = self._checked.get(url)
        if cached and cached[2] > now:
            return cached[0], cached[1]
        why, address = resolve_url(url, allow_private=self.allow_private, resolve=self.resolve)
        self._checked[url] = (why, address, now + 60)
        return why, address

    def _attempt(self, delivery: dict, endpoint_id: str, hook_id: str, attempt: int, status,
                 latency_ms: int, reason: str) -> dict:
        return {"at": int(self.clock() * 1000), "endpoint": endpoint_id, "webhookId": hook_id,
                "type": delivery.get("type"), "sequence": int(delivery.get("sequence") or 0),
                "attempt": attempt, "status": status, "latencyMs": latency_ms, "reason": reason}

    def _settle(self, member: str, key: str | None, delivery: dict, endpoint_id: str, event_id: str,
                entry: dict | None, mapping: dict | None, *, due: int | None = None,
                then: str | None = None) -> None:
        """The attempt recorded, the delivery's next step and the batch's next one claimed, in one
        round trip (``key`` None: nothing to record, the delivery only leaves the due set)."""
        attempts = self.dispatcher.attempts_key(delivery.get("tradeNo") or f"_endpoint_{endpoint_id}")
        fields = [str(x) for pair in (mapping or {}).items() for x in pair]
        self._settle_script(
            keys=[attempts, key or "", self.dispatcher.due_key],
            args=[json.dumps(entry, ensure_ascii=False) if entry is not None else "", member,
                  "" if due is None else due, then or "", self._claim_until() if then else 0, *_KEEP_ATTEMPTS,
                  *fields])

    def _disable(self, endpoint: dict, reason: str) -> None:
        if not endpoint.get("enabled", True):
            return
        record = self.endpoints.set_enabled(endpoint["id"], False, reason)
        event(log, logging.WARNING, "webhook_endpoint_disabled", endpoint=endpoint["id"], reason=reason)
        # by id only: the URL (its query string may carry the receiver's token) goes to nobody
        self.dispatcher.emit("webhook.endpoint_disabled", {"endpointId": endpoint["id"], "reason": reason},
                             key=f"endpoint_disabled_{endpoint['id']}_{record.get('disabledAt') or 0}")

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
