"""From recorded events to due deliveries: fan-out, the retry schedule's clock, replay, attempts.

Keys (``worker.store.keys``): the outbox stream (written by the store's scripts with the change),
each event's body, each delivery's hash, the due set (``"<eventId>|<endpointId>"`` scored by when
it is due) and each job's list of attempts (the newest 100); its scripts are
``worker/store/lua/webhook_*.lua``.

``Dispatcher.run`` is one pass of ``vexora.webhooks.dispatch`` (beat, every second; one pass at a
time under a lock): it reads new events with a consumer group (an event is acknowledged only once
its deliveries exist; a pass that died is re-read after a minute), creates one delivery per
endpoint that wants the type, and hands the due ones to ``vexora.webhooks.deliver`` — claiming
each for a minute, so a delivery whose worker died is handed out again. Long waits live here, in
the due set, never in Celery countdowns (which the Redis broker would run twice).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timezone

import redis

from schemas import CheckoutEventDataSchema
from schemas.record import HIDDEN
from worker.store import scripts
from worker.store.keys import Keys
from worker.store.locks import held
from worker.webhooks.endpoints import Endpoints

__all__ = ["Dispatcher", "build_body", "WEBHOOK_HIDDEN"]

log = logging.getLogger("vexora.webhooks")

GROUP = "dispatch"
CLAIM_MS = 60_000  # an event read but not acknowledged (its dispatcher died) is read again after this
BATCH = 20  # deliveries per deliver task (same endpoint, one connection)
KEEP_S = 7 * 24 * 3600  # bodies and delivery records: longer than the whole retry schedule
# internal bookkeeping a merchant has no use for: no reader shows it (CheckoutEventDataSchema
# declares none of it); left out again here, so that declaring one by mistake still shows nothing
WEBHOOK_HIDDEN = HIDDEN
_EVENT_DATA = CheckoutEventDataSchema()

def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_body(fields: dict) -> str:
    """The JSON body of an outbox entry: ``{type, timestamp, data}`` (Standard Webhooks); a
    ``checkout.*`` event's ``data`` is the record as stored with the change, shown by
    ``CheckoutEventDataSchema`` (the public record, no history, and the ``sequence``)."""
    kind, at = fields["type"], int(fields.get("at") or 0)
    raw = json.loads(fields.get("record") or "[]")
    if kind.startswith("checkout."):
        pairs = dict(zip(raw[::2], raw[1::2])) if isinstance(raw, list) else raw
        data = _EVENT_DATA.dump({**pairs, "sequence": int(fields.get("sequence") or 0)})
        data = {k: v for k, v in data.items() if k not in WEBHOOK_HIDDEN}
    else:
        data = raw
    return json.dumps({"type": kind, "timestamp": _iso(at), "data": data}, ensure_ascii=False,
                      separators=(",", ":"))


class Dispatcher:
    """Fans events out to deliveries and hands out the due ones."""

    def __init__(self, client: redis.Redis, prefix: str, endpoints: Endpoints,
                 send_deliver: Callable[[list[str]], object], *, claim_seconds: float = 60.0,
                 clock: Callable[[], float] = time.time):
        self.redis = client
        self.prefix = prefix
        self.endpoints = endpoints
        self.send_deliver = send_deliver
        self.clock = clock
        self.claim_ms = int(claim_seconds * 1000)  # a handed-out delivery comes back after this
        self.keys = Keys(prefix)
        self.outbox = self.keys.webhook_outbox
        self.due_key = self.keys.webhook_due
        self.consumer = "dispatcher-" + secrets.token_hex(4)
        self._claim_due = scripts.register(client, "webhook_claim_due")
        self._fan_out = scripts.register(client, "webhook_fan_out")
        self.body_key = self.keys.webhook_body
        self.delivery_key = self.keys.webhook_delivery
        self.attempts_key = self.keys.webhook_attempts

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- one pass ------------------------------------------------------------------------------
    def run(self, limit: int = 500) -> dict[str, int]:
        with held(self.redis, self.keys.webhook_dispatch_lock, 30) as mine:
            if not mine:
                return {"skipped": 1}
            fanned = self.fan_out(limit)
            handed = self.hand_out(limit)
            return {"events": fanned, "handed_out": handed}

    def fan_out(self, limit: int) -> int:
        """New (or abandoned) events -> one delivery per endpoint that wants the type."""
        try:
            self.redis.xgroup_create(self.outbox, GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        entries = []
        stale = self.redis.xautoclaim(self.outbox, GROUP, self.consumer, min_idle_time=CLAIM_MS,
                                      start_id="0-0", count=limit)
        entries.extend(stale[1] if stale else [])
        fresh = self.redis.xreadgroup(GROUP, self.consumer, {self.outbox: ">"}, count=limit)
        for _stream, rows in fresh or []:
            entries.extend(rows)
        if not entries:
            return 0
        endpoints = [e for e in self.endpoints.all() if e["enabled"]]
        keys, args = [self.due_key, self.outbox], [GROUP, self.now_ms(), KEEP_S]
        for raw_id, raw in entries:
            if not raw:
                continue  # trimmed from the stream meanwhile
            event_id = _text(raw_id)
            fields = {_text(k): _text(v) for k, v in raw.items()}
            kind = fields["type"]
            wanted = [e["id"] for e in endpoints if not e.get("types") or kind in e["types"]]
            args += [event_id, kind, fields.get("tradeNo", ""), fields.get("sequence", "0"),
                     build_body(fields) if wanted else "", len(wanted), *wanted]
            if wanted:
                keys += [self.body_key(event_id), *(self.delivery_key(event_id, e) for e in wanted)]
        if len(args) > 3:
            self._fan_out(keys=keys, args=args)  # one round trip for the whole pass
        return len(entries)

    def _reschedule(self, pipe, event_id: str, fields: dict, endpoints: list[dict], now: int) -> int:
        """Replay: the event's deliveries to ``endpoints`` pending again, due now."""
        kind = fields["type"]
        wanted = [e for e in endpoints if not e.get("types") or kind in e["types"]]
        if not wanted:
            return 0
        pipe.set(self.body_key(event_id), build_body(fields), ex=KEEP_S)
        for endpoint in wanted:
            key = self.delivery_key(event_id, endpoint["id"])
            pipe.hset(key, mapping={"eventId": event_id, "endpoint": endpoint["id"], "type": kind,
                                    "tradeNo": fields.get("tradeNo", ""), "sequence": fields.get("sequence", "0"),
                                    "status": "pending", "attempts": 0, "createdAt": now})
            pipe.expire(key, KEEP_S)
            pipe.zadd(self.due_key, {f"{event_id}|{endpoint['id']}": now})
        return len(wanted)

    def hand_out(self, limit: int) -> int:
        """Due deliveries -> deliver tasks, grouped by endpoint; each claimed for ``claim_seconds``
        (and again by the deliverer as it starts it), so one whose worker died is handed out again."""
        now = self.now_ms()
        members = [_text(m) for m in self._claim_due(keys=[self.due_key], args=[now, limit, now + self.claim_ms])]
        by_endpoint: dict[str, list[str]] = {}
        for member in members:
            by_endpoint.setdefault(member.split("|", 1)[1], []).append(member)
        for batch in by_endpoint.values():
            for i in range(0, len(batch), BATCH):
                self.send_deliver(batch[i:i + BATCH])
        return len(members)

    # -- operator tools ------------------------------------------------------------------------
    def replay(self, since_ms: int, until_ms: int | None = None, *, endpoint_id: str | None = None,
               include_delivered: bool = False) -> int:
        """Deliver again the events of a window (by their time): failed ones, or all of them."""
        endpoints = [e for e in self.endpoints.all() if e["enabled"]
                     and (endpoint_id is None or e["id"] == endpoint_id)]
        if endpoint_id and not endpoints:
            raise KeyError(endpoint_id)
        until = "+" if until_ms is None else f"{until_ms}-18446744073709551615"
        now, count = self.now_ms(), 0
        for raw_id, raw in self.redis.xrange(self.outbox, min=f"{since_ms}-0", max=until):
            event_id = _text(raw_id)
            fields = {_text(k): _text(v) for k, v in raw.items()}
            chosen = endpoints
            if not include_delivered:
                statuses = [self.redis.hget(self.delivery_key(event_id, e["id"]), "status") for e in endpoints]
                chosen = [e for e, status in zip(endpoints, statuses) if _text(status or b"") != "delivered"]
            pipe = self.redis.pipeline(transaction=False)
            count += self._reschedule(pipe, event_id, fields, chosen, now)
            pipe.execute()
        return count

    def attempts(self, trade_no: str) -> list[dict]:
        return [json.loads(_text(a)) for a in self.redis.lrange(self.attempts_key(trade_no), 0, -1)]

    def emit(self, kind: str, data: dict) -> None:
        """An event that is not a job's (``webhook.endpoint_disabled``), to the other endpoints."""
        self.redis.xadd(self.outbox, {"type": kind, "tradeNo": "", "sequence": 0, "at": self.now_ms(),
                                      "record": json.dumps(data)}, maxlen=100_000, approximate=True)


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
