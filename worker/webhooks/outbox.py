"""From recorded events to due deliveries: fan-out, the retry schedule's clock, replay, attempts.

Keys (``p`` is the key prefix):
    p:webhooks:outbox                 stream  events, written by the store's scripts with the change
    p:webhooks:body:<eventId>         string  the event's JSON body, as every attempt sends it
    p:webhooks:delivery:<eventId>:<endpointId>  hash  status, attempts, next attempt, last answer
    p:webhooks:due                    zset    "<eventId>|<endpointId>" scored by when it is due (ms)
    p:webhooks:attempts:{<tradeNo>}   list    every attempt for the job's events (newest 100)

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
from worker.webhooks.endpoints import Endpoints

__all__ = ["Dispatcher", "build_body", "outbox_key", "WEBHOOK_HIDDEN"]

log = logging.getLogger("vexora.webhooks")

GROUP = "dispatch"
CLAIM_MS = 60_000  # an event read but not acknowledged (its dispatcher died) is read again after this
BATCH = 20  # deliveries per deliver task (same endpoint, one connection)
KEEP_S = 7 * 24 * 3600  # bodies and delivery records: longer than the whole retry schedule
# internal bookkeeping a merchant has no use for: no reader shows it (CheckoutEventDataSchema
# declares none of it); left out again here, so that declaring one by mistake still shows nothing
WEBHOOK_HIDDEN = HIDDEN
_EVENT_DATA = CheckoutEventDataSchema()

_CLAIM_DUE = """
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(items) do redis.call('ZADD', KEYS[1], ARGV[3], m) end
return items
"""

# One fan-out pass in one call: for each event, its body (kept if already there), one delivery
# per endpoint that wants it (a record that already exists keeps its status and attempts: a
# pass re-read after its dispatcher died changes nothing delivered), due now; then the event is
# acknowledged. KEYS: due set, outbox, then per event its body key and its delivery keys.
# ARGV: group, now (ms), keep (s), then per event: id, type, tradeNo, sequence, body, n, n endpoint ids.
_FAN_OUT = """
local k, a = 3, 4
while a <= #ARGV do
  local id, kind, trade_no, seq, body, n = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], tonumber(ARGV[a + 5])
  a = a + 6
  if n > 0 then
    redis.call('SET', KEYS[k], body, 'EX', ARGV[3], 'NX')
    k = k + 1
    for i = 1, n do
      local endpoint = ARGV[a]
      redis.call('HSETNX', KEYS[k], 'status', 'pending')
      redis.call('HSET', KEYS[k], 'eventId', id, 'endpoint', endpoint, 'type', kind, 'tradeNo', trade_no,
                 'sequence', seq, 'createdAt', ARGV[2])
      redis.call('HSETNX', KEYS[k], 'attempts', 0)
      redis.call('EXPIRE', KEYS[k], ARGV[3])
      redis.call('ZADD', KEYS[1], 'NX', ARGV[2], id .. '|' .. endpoint)
      k, a = k + 1, a + 1
    end
  end
  redis.call('XACK', KEYS[2], ARGV[1], id)
end
return k - 3
"""


def outbox_key(prefix: str) -> str:
    """The outbox stream; the store's scripts write it (passed in their KEYS), the dispatcher reads it."""
    return f"{prefix}:webhooks:outbox"


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
        self.outbox = outbox_key(prefix)
        self.due_key = f"{prefix}:webhooks:due"
        self.consumer = "dispatcher-" + secrets.token_hex(4)
        self._claim_due = client.register_script(_CLAIM_DUE)
        self._fan_out = client.register_script(_FAN_OUT)

    def body_key(self, event_id: str) -> str:
        return f"{self.prefix}:webhooks:body:{event_id}"

    def delivery_key(self, event_id: str, endpoint_id: str) -> str:
        return f"{self.prefix}:webhooks:delivery:{event_id}:{endpoint_id}"

    def attempts_key(self, trade_no: str) -> str:
        """Per job, with the job's hash tag (its slot in a Redis Cluster, like ``worker.store``'s keys)."""
        return f"{self.prefix}:webhooks:attempts:{{{trade_no}}}"

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- one pass ------------------------------------------------------------------------------
    def run(self, limit: int = 500) -> dict[str, int]:
        lock = f"{self.prefix}:webhooks:dispatch:lock"
        token = secrets.token_hex(8)
        if not self.redis.set(lock, token, nx=True, ex=30):
            return {"skipped": 1}
        try:
            fanned = self.fan_out(limit)
            handed = self.hand_out(limit)
            return {"events": fanned, "handed_out": handed}
        finally:
            self.redis.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
                            "return 0", 1, lock, token)

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
