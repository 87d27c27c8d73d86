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
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # one, not one per attempt


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
        self._claim_script = scripts.register(self.redis, "webhook_claim_batch")
        self.total = timeout + 3  # a request's ceiling, connect to last byte
        self.http = Poster(connect_timeout=min(3.0, timeout), total=self.total)

    def deliver(self, members: list[str]) -> dict[str, int]:
        """A batch handed out by the dispatcher (one endpoint's): read and claimed in one round
        trip, one POST each on one kept-alive connection, the outcomes recorded in one script call
        at the end (sooner when the claim would run out before the next POST: see ``_Outcomes``)."""
        done: dict[str, int] = {}
        endpoints: dict[str, dict | None] = {}  # read once per task: a batch is one endpoint's
        claimed, until = self._claim(members)
        outcomes = _Outcomes(self, until)
        for i, (member, raw, body) in enumerate(claimed):
            endpoint_id = member.split("|", 1)[1]
            if endpoint_id not in endpoints:
                endpoints[endpoint_id] = self.endpoints.get(endpoint_id)
            outcomes.before_post(claimed, i)
            result = self._deliver(member, raw, body, endpoints[endpoint_id], outcomes)
            done[result] = done.get(result, 0) + 1
        outcomes.flush([])
        return done

    def _claim(self, members: list[str]) -> tuple[list[tuple[str, dict, bytes | None]], int]:
        """Each delivery's record and body, in one script call (``webhook_claim_batch``), every
        one claimed for one request's ceiling from now (``_Outcomes`` claims the rest again before
        that runs out), so only a dead worker's deliveries come back to the dispatcher, and soon."""
        d = self.dispatcher
        until = self._claim_until()
        if not members:
            return [], until
        keys = [d.due_key]
        for member in members:
            event_id, endpoint_id = member.split("|", 1)
            keys += [d.delivery_key(event_id, endpoint_id), d.body_key(event_id)]
        answers = self._claim_script(keys=keys, args=[until, *members])
        return [(m, dict(zip(flat[::2], flat[1::2])), body) for m, (flat, body) in zip(members, answers)], until

    def _claim_until(self) -> int:
        return int((self.clock() + self.total + 5) * 1000)

    def _deliver(self, member: str, raw: dict, body: bytes | None, endpoint: dict | None,
                 outcomes: "_Outcomes") -> str:
        """One delivery: its outcome added to ``outcomes`` (recorded with the batch's others)."""
        event_id, endpoint_id = member.split("|", 1)
        d = self.dispatcher
        key = d.delivery_key(event_id, endpoint_id)
        delivery = {_t(k): _t(v) for k, v in raw.items()}
        settle = outcomes.add
        if not delivery or body is None or endpoint is None:
            settle(member, None, delivery, endpoint_id, None, None)
            return "expired"
        if delivery.get("status") in ("delivered", "failed"):
            settle(member, None, delivery, endpoint_id, None, None)
            return "already_done"
        if not endpoint["enabled"]:
            settle(member, key, delivery, endpoint_id, None, {"status": "skipped"})
            return "skipped"
        attempt = int(delivery.get("attempts") or 0) + 1
        hook_id = delivery.get("webhookId") or webhook_id(delivery, event_id)
        status, retry_after, reason, latency_ms = self._post(endpoint, hook_id, body)
        entry = self._attempt(delivery, endpoint_id, hook_id, attempt, status, latency_ms, reason)
        if isinstance(status, int) and 200 <= status < 300:
            settle(member, key, delivery, endpoint_id, entry, {"status": "delivered", "attempts": attempt})
            if endpoint.get("failingSince"):
                endpoint.update(self.endpoints.failing(endpoint_id, False) or {})
            return self._count("delivered" if attempt == 1 else "delivered_after_retry")
        if status == 410:
            settle(member, key, delivery, endpoint_id, entry,
                   {"status": "failed", "attempts": attempt, "last": status})
            self._disable(endpoint, "the receiver answered 410 Gone")
            return self._count("gone")
        retryable = not isinstance(status, int) or status == 429 or status >= 500
        if not endpoint.get("failingSince"):
            endpoint.update(self.endpoints.failing(endpoint_id, True) or {})
        if retryable and attempt <= len(self.schedule):
            wait = retry_after if retry_after is not None else self.schedule[attempt - 1]
            due = int((self.clock() + min(wait, _RETRY_AFTER_MAX)) * 1000)
            entry["nextAt"] = due  # shown by `webhooks attempts`: written in the same step, no extra trip
            settle(member, key, delivery, endpoint_id, entry,
                   {"attempts": attempt, "status": "retrying", "nextAt": due, "last": str(status)}, due=due)
            result = "retry"
        else:
            settle(member, key, delivery, endpoint_id, entry,
                   {"status": "failed", "attempts": attempt, "last": str(status)})
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

    def _disable(self, endpoint: dict, reason: str) -> None:
        if not endpoint.get("enabled", True):
            return
        record = self.endpoints.set_enabled(endpoint["id"], False, reason)
        endpoint["enabled"] = False  # the batch's later deliveries to it are skipped, not sent
        event(log, logging.WARNING, "webhook_endpoint_disabled", endpoint=endpoint["id"], reason=reason)
        # by id only: the URL (its query string may carry the receiver's token) goes to nobody
        self.dispatcher.emit("webhook.endpoint_disabled", {"endpointId": endpoint["id"], "reason": reason},
                             key=f"endpoint_disabled_{endpoint['id']}_{record.get('disabledAt') or 0}")

    def _count(self, result: str) -> str:
        if self.meter is not None:
            self.meter.inc("webhook_deliveries_total", result=result)
        return result


class _Outcomes:
    """A batch's outcomes, recorded together by one ``webhook_settle`` call (at the batch's end).

    Every delivery of the batch is claimed until ``until`` (ms), a time by which a POST started
    now will have ended; ``before_post`` records what is pending and claims the rest again for
    another request's ceiling as soon as the next POST could end later than ``until`` (a slow
    receiver: one call per delivery, as before batching). A worker that dies mid-batch leaves
    what it has sent unrecorded: the dispatcher hands those out again (at least once, never lost).
    """

    _MARGIN_MS = 2000  # a POST's outcome is recorded this long before its claim runs out

    def __init__(self, deliverer: Deliverer, until: int):
        self.deliverer = deliverer
        self.until = until
        self.keys: list[str] = []
        self.args: list[object] = []

    def add(self, member: str, key: str | None, delivery: dict, endpoint_id: str, entry: dict | None,
            mapping: dict | None, *, due: int | None = None) -> None:
        """One outcome (``key`` None: nothing to record, the delivery only leaves the due set)."""
        d = self.deliverer.dispatcher
        fields = [str(x) for pair in (mapping or {}).items() for x in pair] if key else []
        self.keys += [d.attempts_key(delivery.get("tradeNo") or f"_endpoint_{endpoint_id}") if entry else "",
                      key or ""]
        self.args += [_ENCODER.encode(entry) if entry is not None else "",
                      member, "" if due is None else due, len(fields) // 2, *fields]

    def before_post(self, claimed: list[tuple], i: int) -> None:
        """``claimed[i:]``: the batch's deliveries not yet sent (the next one first); the list of
        their members made only when they are claimed again."""
        d = self.deliverer
        if d.clock() * 1000 + d.total * 1000 + self._MARGIN_MS > self.until:
            self.flush([c[0] for c in claimed[i:]])

    def flush(self, rest: list[str]) -> None:
        """What is pending recorded, and ``rest`` claimed again, in one round trip."""
        if not self.keys and not rest:
            return
        d = self.deliverer
        until = d._claim_until() if rest else 0
        d._settle_script(keys=[d.dispatcher.due_key, *self.keys],
                         args=[*_KEEP_ATTEMPTS, until, len(rest), *rest, *self.args])
        if rest:
            self.until = until
        self.keys, self.args = [], []


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


def _t(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
