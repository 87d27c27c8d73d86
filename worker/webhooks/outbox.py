"""From recorded events to due deliveries: fan-out, the retry schedule's clock, replay, attempts.

Keys (``worker.store.keys``): the outbox stream (written by the store's scripts with the change),
each event's body, each delivery's hash, the due set (``"<eventId>|<endpointId>"`` scored by when
it is due) and each job's list of attempts (the newest 100); its scripts are
``worker/store/lua/webhook_*.lua``.

Per account: an event goes only to the endpoints of its account — a job's events to the endpoints
whose record's ``account`` is the job's (read from the record stored with the event), an event
that is not a job's to the endpoints of the account its data names; a record without an
``account`` (written before accounts) belongs to ``default``.

``Dispatcher.run`` is one pass of ``vexora.webhooks.dispatch`` (beat, every second; one pass at a
time under a lock): it reads new events with a consumer group (an event is acknowledged only once
its deliveries exist; a pass that died is re-read after a minute), creates one delivery per
endpoint that wants the type, and hands the due ones to ``vexora.webhooks.deliver`` — claiming
each for a minute, so a delivery whose worker died is handed out again. A pass drains: it reads
and hands out batch after batch until nothing is left or half its lock's time is spent, so a
backlog (after an outage of beat or of the webhook worker, or a peak) is caught up at once, not
one batch per second. Long waits live here, in the due set, never in Celery countdowns (which the
Redis broker would run twice).

Last, the pass trims both streams (``worker.store.streams``): never an entry a consumer group has
not read and acknowledged, and the outbox never an entry younger than its replay horizon (the
retry schedule's whole length plus a day: ``replay_seconds``), so an event refused for good by a
receiver (a 4xx other than 410), or held back while its endpoint was disabled, can be replayed
(``replay``) at least that long after it was recorded.
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
from worker.domain.access import DEFAULT_ACCOUNT
from worker.store import scripts
from worker.store.keys import Keys
from worker.store.locks import held
from worker.store.streams import StreamTrimmer
from worker.webhooks.endpoints import Endpoints, account_of
from worker.webhooks.poster import reason_for

__all__ = ["Dispatcher", "build_body", "batch_size", "webhook_id", "WEBHOOK_HIDDEN"]

log = logging.getLogger("vexora.webhooks")

GROUP = "dispatch"
CLAIM_MS = 60_000  # an event read but not acknowledged (its dispatcher died) is read again after this
BATCH = 20  # deliveries per deliver task (same endpoint, one connection) while few are due...
BATCH_MAX = 50  # ...and up to this many in a backlog: fewer tasks, each delivering more
SPREAD = 8  # a pass splits an endpoint's due deliveries over at least this many tasks (threads)
KEEP_S = 7 * 24 * 3600  # bodies and delivery records: longer than the whole retry schedule
REPLAY_MARGIN_S = 24 * 3600  # the outbox keeps an event this long past the whole retry schedule
PASS_SECONDS = 15.0  # a pass drains for at most half its lock's 30 s
TRIM_EVERY_S = 5.0  # a pass trims the streams at most this often (a process's first pass does)
# internal bookkeeping a merchant has no use for: no reader shows it (CheckoutEventDataSchema
# declares none of it); left out again here, so that declaring one by mistake still shows nothing
WEBHOOK_HIDDEN = HIDDEN
_EVENT_DATA = CheckoutEventDataSchema()

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # one, not one per body
_LAST_SECOND: list[tuple[int, str]] = [(-1, "")]  # the last second _iso wrote, and its text


def _iso(ms: int) -> str:
    """``2026-12-03T16:28:00.123Z``: what ``datetime.isoformat(timespec="milliseconds")`` writes
    in UTC, with ``Z``; the second's text kept from the previous call (events come many a second;
    the pair is one tuple, swapped whole, so threads never mix two seconds)."""
    second, milli = divmod(int(ms), 1000)
    last = _LAST_SECOND[0]
    if last[0] != second:
        last = (second, datetime.fromtimestamp(second, timezone.utc).isoformat(timespec="seconds")[:-6])
        _LAST_SECOND[0] = last
    return f"{last[1]}.{milli:03d}Z"


def _event_data_dumper(schema) -> Callable[[dict], dict]:
    """``schema.dump`` for ``CheckoutEventDataSchema``, without marshmallow's per-dump plumbing:
    its own pre-dump step, then each declared field's own ``_serialize`` in declared order (a
    missing value: the field's ``dump_default``, or absent), ``None`` left out (its post-dump
    step). Exactly the same output (``tests/unit/test_webhook_body.py`` compares them over varied
    records); a schema this does not describe (another hook, a field read from elsewhere) gets
    ``schema.dump`` itself."""
    from marshmallow import missing
    hooks = {k: list(v) for k, v in getattr(schema, "_hooks", {}).items() if v}
    plain = all(f._CHECK_ATTRIBUTE and f.attribute is None for f in schema.dump_fields.values())
    if not plain or hooks != {"pre_dump": [("_from_storage", False, {})],
                              "post_dump": [("_absent_not_null", False, {"pass_original": False})]}:
        return schema.dump
    table = [(name, field.data_key if field.data_key is not None else name, field, field.dump_default)
             for name, field in schema.dump_fields.items()]
    pre = schema._from_storage

    def dump(record: dict) -> dict:
        data = pre(record)
        out = {}
        for name, key, field, default in table:
            value = data.get(name, missing)
            if value is missing:
                if default is missing:
                    continue
                value = default() if callable(default) else default
                if value is missing:
                    continue
            value = field._serialize(value, name, data)
            if value is not None:
                out[key] = value
        return out

    return dump


_dump_event_data = _event_data_dumper(_EVENT_DATA)


def webhook_id(fields: dict, event_id: str = "") -> str:
    """The ``webhook-id`` of an outbox entry (or a delivery record): ``msg_<tradeNo>_<sequence>``
    for a job's event, so that a change re-applied after a failover (a new stream entry, the same
    job sequence) reaches receivers with the id they already saw; ``msg_<key>`` for an event that
    is not a job's (its ``key``, chosen by whoever emitted it); the entry id only for an entry
    written before either existed."""
    trade_no, sequence = fields.get("tradeNo") or "", str(fields.get("sequence") or "0")
    if trade_no and sequence != "0":
        return f"msg_{trade_no}_{sequence}"
    if fields.get("key"):
        return f"msg_{fields['key']}"
    return f"msg_{event_id}"


def event_account(fields: dict) -> str:
    """The merchant account an outbox entry belongs to: its job's (the record stored with the
    event), or the one its data names; ``default`` for entries from before accounts."""
    try:
        raw = json.loads(fields.get("record") or "[]")
    except ValueError:
        return DEFAULT_ACCOUNT
    return _account_in(raw)


def _account_in(raw: object) -> str:
    pairs = dict(zip(raw[::2], raw[1::2])) if isinstance(raw, list) else raw
    account = pairs.get("account") if isinstance(pairs, dict) else None
    return account if isinstance(account, str) and account else DEFAULT_ACCOUNT


def endpoint_account(endpoint: dict) -> str:
    """An endpoint's account (a record from before accounts: ``default``)."""
    return endpoint.get("account") or DEFAULT_ACCOUNT


def build_body(fields: dict) -> str:
    """The JSON body of an outbox entry: ``{type, timestamp, data}`` (Standard Webhooks); a
    ``checkout.*`` event's ``data`` is the record as stored with the change, shown by
    ``CheckoutEventDataSchema`` (the public record, no history, and the ``sequence``)."""
    return _body(fields, json.loads(fields.get("record") or "[]"))


def _body(fields: dict, raw: object) -> str:
    """``build_body`` with the record already parsed (the fan-out reads it once per event)."""
    kind, at = fields["type"], int(fields.get("at") or 0)
    if kind.startswith("checkout."):
        pairs = dict(zip(raw[::2], raw[1::2])) if isinstance(raw, list) else raw
        data = _dump_event_data({**pairs, "sequence": int(fields.get("sequence") or 0)})
        data = {k: v for k, v in data.items() if k not in WEBHOOK_HIDDEN}
    else:
        data = raw
    return _ENCODER.encode({"type": kind, "timestamp": _iso(at), "data": data})


def batch_size(due: int) -> int:
    """Deliveries per deliver task for an endpoint with ``due`` of them in a pass: ``BATCH``, or
    more in a backlog (up to ``BATCH_MAX``) while that still leaves ``SPREAD`` tasks to share
    the threads; fewer tasks is less Celery work per delivery."""
    return max(BATCH, min(BATCH_MAX, -(-due // SPREAD)))


class Dispatcher:
    """Fans events out to deliveries and hands out the due ones."""

    def __init__(self, client: redis.Redis, prefix: str, endpoints: Endpoints,
                 send_deliver: Callable[[list[str]], object], *, claim_seconds: float = 60.0,
                 clock: Callable[[], float] = time.time, events_maxlen: int = 100_000,
                 replay_seconds: float = KEEP_S,
                 deliver_message: Callable[[list[str]], str] | None = None, broker_list: str = "",
                 trim_every: float = TRIM_EVERY_S):
        self.redis = client
        self.prefix = prefix
        self.endpoints = endpoints
        self.send_deliver = send_deliver
        # with a Redis broker that is this Redis: each deliver task's message, as kombu would push
        # it (``worker.runtime.messages``), all of a pass's pushed to ``broker_list`` at once
        self.deliver_message = deliver_message if broker_list else None
        self.broker_list = broker_list
        self.trim_every = float(trim_every)
        self._trimmed_at: float | None = None  # time.monotonic() of this process's last trim
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
        self.events_maxlen = int(events_maxlen)
        self.replay_ms = int(replay_seconds * 1000)  # the outbox keeps every event at least this long
        self.trimmer = StreamTrimmer(client)
        self._group_ready = False  # the consumer group made (once per process; again on NOGROUP)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- one pass ------------------------------------------------------------------------------
    def run(self, limit: int = 500) -> dict[str, int]:
        with held(self.redis, self.keys.webhook_dispatch_lock, 30) as mine:
            if not mine:
                return {"skipped": 1}
            deadline = time.monotonic() + PASS_SECONDS
            fanned = handed = 0
            while True:  # drain: batch after batch while a whole one came, within the pass's time
                n = self.fan_out(limit)
                fanned += n
                if n < limit or time.monotonic() >= deadline:
                    break
            while True:
                n = self.hand_out(limit)
                handed += n
                if n < limit or time.monotonic() >= deadline:
                    break
            trimmed = 0
            if self._trimmed_at is None or time.monotonic() - self._trimmed_at >= self.trim_every:
                trimmed = self.trim(budget=max(0.5, deadline - time.monotonic()))
                self._trimmed_at = time.monotonic()
            return {"events": fanned, "handed_out": handed, "trimmed": trimmed}

    def trim(self, budget: float = 5.0) -> int:
        """Both streams trimmed, losing no unread entry (``worker.store.streams``); the outbox also
        keeps everything younger than ``replay_seconds``."""
        outbox, _ = self.trimmer.trim(self.outbox, self.events_maxlen,
                                      keep_from_ms=self.now_ms() - self.replay_ms, budget=budget / 2)
        events, _ = self.trimmer.trim(self.keys.events, self.events_maxlen, budget=budget / 2)
        return outbox + events

    def fan_out(self, limit: int) -> int:
        """New (or abandoned) events -> one delivery per endpoint that wants the type."""
        if not self._group_ready:
            self._create_group()
        try:
            entries = self._read(limit)
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._create_group()  # the outbox (or its group) was deleted since: made again
            entries = self._read(limit)
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
            try:
                raw_record = json.loads(fields.get("record") or "[]")
            except ValueError:
                raw_record = None
            account = _account_in(raw_record)
            wanted = [e["id"] for e in endpoints if (not e.get("types") or kind in e["types"])
                      and endpoint_account(e) == account]
            body = ""
            if wanted:  # a record that does not parse fails here, as it always did
                body = _body(fields, raw_record) if raw_record is not None else build_body(fields)
            args += [event_id, kind, fields.get("tradeNo", ""), fields.get("sequence", "0"),
                     webhook_id(fields, event_id), body, len(wanted), *wanted]
            if wanted:
                keys += [self.body_key(event_id), *(self.delivery_key(event_id, e) for e in wanted)]
        if len(args) > 3:
            self._fan_out(keys=keys, args=args)  # one round trip for the whole pass
        return len(entries)

    def _create_group(self) -> None:
        try:
            self.redis.xgroup_create(self.outbox, GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _read(self, limit: int) -> list:
        """Abandoned events (read by a pass that died) and new ones, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xautoclaim(self.outbox, GROUP, self.consumer, min_idle_time=CLAIM_MS, start_id="0-0", count=limit)
        pipe.xreadgroup(GROUP, self.consumer, {self.outbox: ">"}, count=limit)
        stale, fresh = pipe.execute()
        entries = list(stale[1]) if stale else []
        for _stream, rows in fresh or []:
            entries.extend(rows)
        return entries

    def _reschedule(self, pipe, event_id: str, fields: dict, endpoints: list[dict], now: int) -> int:
        """Replay: the event's deliveries to ``endpoints`` pending again, due now."""
        kind = fields["type"]
        account = event_account(fields)
        wanted = [e for e in endpoints if (not e.get("types") or kind in e["types"])
                  and endpoint_account(e) == account]
        if not wanted:
            return 0
        pipe.set(self.body_key(event_id), build_body(fields), ex=KEEP_S)
        for endpoint in wanted:
            key = self.delivery_key(event_id, endpoint["id"])
            pipe.hset(key, mapping={"eventId": event_id, "endpoint": endpoint["id"], "type": kind,
                                    "tradeNo": fields.get("tradeNo", ""), "sequence": fields.get("sequence", "0"),
                                    "webhookId": webhook_id(fields, event_id), "status": "pending", "attempts": 0, "createdAt": now})
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
        batches = [batch[i:i + size] for batch in by_endpoint.values()
                   for size in (batch_size(len(batch)),) for i in range(0, len(batch), size)]
        if self.deliver_message is None:
            for batch in batches:
                self.send_deliver(batch)
        elif batches:  # the whole pass's task messages in one command (RPOP takes the first first)
            self.redis.lpush(self.broker_list, *(self.deliver_message(batch) for batch in batches))
        return len(members)

    # -- operator tools ------------------------------------------------------------------------
    def replay(self, since_ms: int, until_ms: int | None = None, *, endpoint_id: str | None = None,
               include_delivered: bool = False, account: str | None = None) -> int:
        """Deliver again the events of a window (by their time): failed ones, or all of them; to
        the endpoints of ``account`` only (None: every account's). An event goes only to endpoints
        of its own job's account, as in the fan-out."""
        endpoints = [e for e in self.endpoints.all(account) if e["enabled"]
                     and (endpoint_id is None or e["id"] == endpoint_id)]
        if endpoint_id and not endpoints:
            raise KeyError(endpoint_id)
        until = "+" if until_ms is None else f"{until_ms}-18446744073709551615"
        now, count = self.now_ms(), 0
        for raw_id, raw in self.redis.xrange(self.outbox, min=f"{since_ms}-0", max=until):
            event_id = _text(raw_id)
            fields = {_text(k): _text(v) for k, v in raw.items()}
            owner = _event_account(fields)
            chosen = [e for e in endpoints if account_of(e) == owner]
            if not chosen:
                continue
            if not include_delivered:
                statuses = [self.redis.hget(self.delivery_key(event_id, e["id"]), "status") for e in chosen]
                chosen = [e for e, status in zip(chosen, statuses) if _text(status or b"") != "delivered"]
            pipe = self.redis.pipeline(transaction=False)
            count += self._reschedule(pipe, event_id, fields, chosen, now)
            pipe.execute()
        return count

    def attempts(self, trade_no: str) -> list[dict]:
        """The job's recorded attempts, newest last; each with a status and a short ``reason`` of
        our own. An attempt recorded before that rule kept part of the receiver's answer
        (``response``): it is never shown, its reason is made from its status."""
        out = []
        for raw in self.redis.lrange(self.attempts_key(trade_no), 0, -1):
            attempt = json.loads(_text(raw))
            if "response" in attempt or "reason" not in attempt:
                attempt.pop("response", None)
                status = attempt.get("status")
                attempt["reason"] = reason_for(status) if isinstance(status, int) else str(status)
            out.append(attempt)
        return out

    # -- the console's reads (/ops) and its resend ---------------------------------------------
    def job_events(self, trade_no: str, since_ms: int = 0, scan: int = 20_000) -> list[dict]:
        """The outbox events of one job (``id``, ``type``, ``sequence``, ``at``, ``webhookId``), oldest
        first, from its creation on (at most ``scan`` entries of the outbox are read)."""
        out = []
        for raw_id, raw in self.redis.xrange(self.outbox, min=f"{since_ms}-0", max="+", count=scan):
            fields = {_text(k): _text(v) for k, v in raw.items()}
            if fields.get("tradeNo") != trade_no:
                continue
            event_id = _text(raw_id)
            out.append({"id": event_id, "type": fields.get("type"), "sequence": int(fields.get("sequence") or 0),
                        "at": int(fields.get("at") or 0), "webhookId": webhook_id(fields, event_id)})
        return out

    def resend(self, event_id: str, *, account: str | None = None) -> int:
        """Deliver one outbox event again to every enabled endpoint of its account that takes its
        type (delivered or not): the number of deliveries scheduled (0: no such event, or none)."""
        rows = self.redis.xrange(self.outbox, min=event_id, max=event_id, count=1)
        if not rows:
            return 0
        fields = {_text(k): _text(v) for k, v in rows[0][1].items()}
        owner = _event_account(fields)
        if account is not None and owner != account:
            return 0
        endpoints = [e for e in self.endpoints.all(owner) if e["enabled"]]
        pipe = self.redis.pipeline(transaction=False)
        count = self._reschedule(pipe, event_id, fields, endpoints, self.now_ms())
        pipe.execute()
        return count

    def health(self, endpoints: list[dict], recent: int = 300) -> dict[str, dict]:
        """Per endpoint id: ``backlog`` (deliveries due or retrying), ``lastSuccessAt`` (ms or None),
        ``p95LatencyMs`` (of its answered attempts, or None) and ``attempts`` seen, from the
        attempts of the jobs of the last ``recent`` outbox events."""
        ids = {e["id"] for e in endpoints}
        out = {i: {"backlog": 0, "lastSuccessAt": None, "p95LatencyMs": None, "attempts": 0} for i in ids}
        for member, _score in self.redis.zscan_iter(self.due_key):
            endpoint_id = _text(member).split("|", 1)[-1]
            if endpoint_id in out:
                out[endpoint_id]["backlog"] += 1
        trade_nos = []
        for _id, raw in self.redis.xrevrange(self.outbox, count=recent):
            trade_no = _text(raw.get(b"tradeNo", raw.get("tradeNo", b"")))
            if trade_no and trade_no not in trade_nos:
                trade_nos.append(trade_no)
        pipe = self.redis.pipeline(transaction=False)
        for trade_no in trade_nos:
            pipe.lrange(self.attempts_key(trade_no), 0, -1)
        latencies: dict[str, list[int]] = {i: [] for i in ids}
        for rows in pipe.execute() if trade_nos else []:
            for raw in rows:
                attempt = json.loads(_text(raw))
                endpoint_id = attempt.get("endpoint")
                if endpoint_id not in out:
                    continue
                out[endpoint_id]["attempts"] += 1
                status = attempt.get("status")
                if isinstance(status, int):
                    latencies[endpoint_id].append(int(attempt.get("latencyMs") or 0))
                if isinstance(status, int) and 200 <= status < 300:
                    last = out[endpoint_id]["lastSuccessAt"]
                    out[endpoint_id]["lastSuccessAt"] = max(last or 0, int(attempt.get("at") or 0))
        for endpoint_id, values in latencies.items():
            if values:
                values.sort()
                out[endpoint_id]["p95LatencyMs"] = values[min(len(values) - 1, int(0.95 * len(values)))]
        return out

    def recording(self) -> bool:
        """Whether moves record webhook events (the store writes the outbox only while an endpoint
        exists)."""
        return bool(self.redis.exists(self.keys.webhook_endpoints))

    def outbox_end(self) -> str:
        """The id of the outbox's newest entry ("0-0" when empty): ``tail`` from it gets what follows."""
        newest = self.redis.xrevrange(self.outbox, count=1)
        return _text(newest[0][0]) if newest else "0-0"

    def tail(self, after: str = "$", *, block_ms: int = 1000, count: int = 100) -> list[tuple[str, dict]]:
        """The outbox entries after ``after`` (``"$"``: from now on), waiting up to ``block_ms``: a
        plain read, outside the dispatcher's consumer group (``webhooks listen``), taking nothing
        from the senders."""
        answer = self.redis.xread({self.outbox: after}, count=count, block=block_ms)
        rows = answer[0][1] if answer else []
        return [(_text(event_id), {_text(k): _text(v) for k, v in fields.items()}) for event_id, fields in rows]

    def emit(self, kind: str, data: dict, key: str) -> None:
        """An event that is not a job's (``webhook.endpoint_disabled``), to the other endpoints;
        ``key`` names it for good (its ``webhook-id`` is ``msg_<key>``). Never trimmed here: the
        outbox is trimmed only by ``trim``."""
        self.redis.xadd(self.outbox, {"type": kind, "tradeNo": "", "sequence": 0, "key": key,
                                      "at": self.now_ms(), "record": json.dumps(data)})


def _event_account(fields: dict) -> str:
    """The account an outbox entry belongs to: its job record's ``account`` (absent: ``default``)."""
    try:
        raw = json.loads(fields.get("record") or "[]")
    except ValueError:
        raw = []
    pairs = dict(zip(raw[::2], raw[1::2])) if isinstance(raw, list) else raw if isinstance(raw, dict) else {}
    return str(pairs.get("account") or DEFAULT_ACCOUNT)


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
