"""The job store: one Redis hash per ``tradeNo``, its history, a stream of events, a TTL.

The store is the source of truth. Every change of state goes through one Lua script that checks
the move against ``worker.states`` and, in the same atomic step, writes the new fields, appends
to the job's history, adds an event to the stream and keeps the per-state time index that the
reconciler scans. A refused move changes nothing and reports the state it found.

Keys (``p`` is ``Settings.key_prefix``); a job's own keys share the hash tag ``{<tradeNo>}``, so
they are in one Redis Cluster slot (README, "Redis Cluster"):
    p:job:{<tradeNo>}           hash    the record (no payer data but the masked ``contact``)
    p:job:{<tradeNo>}:history   list    JSON entries {at, from, to, detail}
    p:job:{<tradeNo>}:payload   string  the merchant's payload (payer data) while the job needs it
    p:job:{<tradeNo>}:retained  string  the same, once purged, kept ``payload_retention`` seconds (0: none)

The payload lives beside the hash, not in it: at ~0.5 kB it is longer than Redis's
``hash-max-listpack-value``, and one such value turns a hash into a hashtable for good (three
times the memory for the 30 days a finished job is kept; BENCHMARKS.md, 5).
    p:events                  stream  {tradeNo, from, to, at, detail}
    p:index:<state>           zset    tradeNos of open states, scored by when the reconciler is due
    p:entered:<state>         zset    tradeNos of open states, scored by entry time (metrics)
    p:review                  set     tradeNos flagged for a person (``flag``), until resolved
    p:metrics:transitions     hash    ``from>to`` -> count of state changes (metrics)

Every key a script reads or writes is passed in its ``KEYS`` (none is built inside Lua): the
global keys above too, and the webhook outbox the scripts append to (``worker.webhooks``).
Before the hash tags, a job's keys were ``p:job:<tradeNo>`` etc.; ``worker.migrate`` renames them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import redis

from worker import states
from schemas import CheckoutRecordSchema, trade_no_errors
from worker.errors import DuplicateTradeNoError, InvalidError, LeaseLostError
from worker.logs import event
from worker.redis_ha import Replication
from worker.webhooks.endpoints import endpoints_key
from worker.webhooks.outbox import outbox_key

__all__ = ["JobStore", "Job", "Moved", "fingerprint", "WEBHOOK_STATES"]

log = logging.getLogger("vexora.store")

# KEYS: job, history, events, payload, index:queued, entered:queued, transitions
# ARGV: tradeNo, fingerprint, now ms, ttl, events maxlen, record JSON, payload JSON
_CREATE = """
local fp = redis.call('HGET', KEYS[1], 'fingerprint')
if fp then
  local state = redis.call('HGET', KEYS[1], 'state')
  if fp == ARGV[2] then return {'existing', state} end
  return {'conflict', state}
end
local fields = cjson.decode(ARGV[6])
local flat = {}
for k, v in pairs(fields) do flat[#flat + 1] = k; flat[#flat + 1] = tostring(v) end
redis.call('HSET', KEYS[1], unpack(flat))
redis.call('SET', KEYS[4], ARGV[7], 'EX', ARGV[4])
redis.call('RPUSH', KEYS[2], '{"at":' .. ARGV[3] .. ',"from":null,"to":"queued","detail":{}}')
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'tradeNo', ARGV[1], 'from', '',
           'to', 'queued', 'at', ARGV[3], 'detail', '{}')
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
-- for the metrics: entry times per open state (the reconciler's index above is rescheduled)
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[7], 'new>queued', 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return {'created', 'queued'}
"""

# KEYS: job, history, events, review set, webhook endpoints, webhook outbox
# ARGV: tradeNo, reason, now ms, detail JSON, events maxlen
_FLAG = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
-- once per reason (a resent callback flags once); a move may have set needsReview and the
-- reason already, in its own step, so the record is never half-flagged
if redis.call('HGET', KEYS[1], 'flaggedReason') == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'needsReview', 'true', 'reviewReason', ARGV[2], 'reviewAt', ARGV[3],
           'flaggedReason', ARGV[2])
redis.call('SADD', KEYS[4], ARGV[1])
if redis.call('EXISTS', KEYS[5]) == 1 then
  local seq = redis.call('HINCRBY', KEYS[1], 'webhookSeq', 1)
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[5], '*', 'type', 'checkout.needs_review',
             'tradeNo', ARGV[1], 'sequence', seq, 'at', ARGV[3], 'record', cjson.encode(redis.call('HGETALL', KEYS[1])))
end
redis.call('RPUSH', KEYS[2], '{"at":' .. ARGV[3] .. ',"from":null,"to":null,"detail":' .. ARGV[4] .. '}')
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'tradeNo', ARGV[1], 'from', '', 'to', '',
           'at', ARGV[3], 'detail', ARGV[4])
return 1
"""

# count one request of a lease holder: only while its lease is held and has not run out
_COUNT = """
if redis.call('HGET', KEYS[1], 'leaseToken') ~= ARGV[1] then return -1 end
if redis.call('HGET', KEYS[1], 'state') ~= 'submitting' then return -1 end
local t = redis.call('TIME')
local server_now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(redis.call('HGET', KEYS[1], 'leaseUntil') or '0') <= server_now then return -1 end
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
return redis.call('HINCRBY', KEYS[1], 'attempts', 1)
"""

# the heartbeat: extend every lease still ours (same token, still submitting) in one call
_RENEW = """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('HGET', key, 'leaseToken') == ARGV[i + 1] and redis.call('HGET', key, 'state') == 'submitting' then
    redis.call('HSET', key, 'leaseUntil', until_ms)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

# the reconciler's per-job bookkeeping: one more check, and the next one due after a backoff
_SCHEDULE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local checks = redis.call('HINCRBY', KEYS[1], 'reconcileChecks', 1)
local delay = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ (checks - 1))
local next_check = tonumber(ARGV[2]) + delay
redis.call('HSET', KEYS[1], 'nextCheckAt', string.format('%d', next_check))
redis.call('ZADD', KEYS[2], 'XX', string.format('%d', next_check - tonumber(ARGV[5])), ARGV[1])
return checks
"""

# KEYS: 1 job, 2 history, 3 events, 4 payload, 5 retained, 6 transitions, 7 webhook endpoints,
#       8 webhook outbox; then, for each open state in ARGV[6] (in its order), its index and its
#       entered zset; then the counters' hashes (``counters`` of ``JobStore.move``)
# ARGV: 1 target, 2 allowed from, 3 now ms, 4 ttl, 5 events maxlen, 6 the open states of the
#       per-state KEYS (every open one among allowed and target), 7 fields JSON, 8 drop JSON,
#       9 claim lease ms ("" no claim), 10 detail JSON, 11 tradeNo, 12 counters' [field, ttl] JSON,
#       13 payload retention, 14 detail by state JSON, 15 field that must increase, 16 lease token,
#       17 webhook event type ("" none)
_MOVE = """
local current = redis.call('HGET', KEYS[1], 'state')
if not current then return {0, false, 0, false} end
local allowed = false
for s in string.gmatch(ARGV[2], '%S+') do
  if s == current then allowed = true end
end
if not allowed then return {0, current, 0, false} end
local now = ARGV[3]
local payload = false
if ARGV[16] ~= '' and redis.call('HGET', KEYS[1], 'leaseToken') ~= ARGV[16] then
  -- a write of a lease holder: another process claimed the job since (the holder lost it)
  return {0, current, 0, false, 1}
end
if ARGV[15] ~= '' and current == ARGV[1] then
  -- a self-move (more paid on a partial payment) only when the field grows
  local old = tonumber(redis.call('HGET', KEYS[1], ARGV[15]) or '0') or 0
  local new = tonumber(cjson.decode(ARGV[7])[ARGV[15]] or '')
  if not new or new <= old then return {0, current, 0, false} end
end
local lease_until = false
if ARGV[9] ~= '' then
  -- lease times are Redis's clock (TIME), so the workers' clocks do not matter
  local t = redis.call('TIME')
  local server_now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if current == 'submitting' then
    -- a claim may take over 'submitting' only from a holder whose lease ran out
    local lease = tonumber(redis.call('HGET', KEYS[1], 'leaseUntil') or '0')
    if lease > server_now then return {0, current, 0, false} end
  end
  lease_until = server_now + tonumber(ARGV[9])
  -- a claim is for sending, and returns what to send: a job without its payload is not claimed
  payload = redis.call('GET', KEYS[4]) or redis.call('HGET', KEYS[1], 'payload')
  if not payload then return {0, current, 0, false} end
end
local flat = {'state', ARGV[1], 'updatedAt', now}
if lease_until then flat[#flat + 1] = 'leaseUntil'; flat[#flat + 1] = lease_until end
for k, v in pairs(cjson.decode(ARGV[7])) do flat[#flat + 1] = k; flat[#flat + 1] = tostring(v) end
redis.call('HSET', KEYS[1], unpack(flat))
local drop = cjson.decode(ARGV[8])
local purge = false
for _, f in ipairs(drop) do if f == 'payload' then purge = true end end
if purge then
  -- payer data kept for a while (support), then gone; never shown by get_checkout
  local retention = tonumber(ARGV[13])
  local old = redis.call('HGET', KEYS[1], 'payload')  -- a record written before the key existed
  if old then redis.call('SET', KEYS[4], old, 'EX', ARGV[4]) end
  if retention > 0 and redis.call('EXISTS', KEYS[4]) == 1 then
    redis.call('RENAME', KEYS[4], KEYS[5])
    redis.call('EXPIRE', KEYS[5], retention)
  else
    redis.call('DEL', KEYS[4])
  end
end
if #drop > 0 then redis.call('HDEL', KEYS[1], unpack(drop)) end
local detail = ARGV[10]
if ARGV[14] ~= '' then
  -- a detail that depends on the state the job is moved from (e.g. a claim vs a takeover)
  local by_state = cjson.decode(ARGV[14])
  if by_state[current] then detail = by_state[current] end
end
redis.call('RPUSH', KEYS[2], '{"at":' .. now .. ',"from":"' .. current .. '","to":"' .. ARGV[1] ..
           '","detail":' .. detail .. '}')
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'tradeNo', ARGV[11], 'from', current,
           'to', ARGV[1], 'at', now, 'detail', detail)
-- the open states' keys, by state: only open states are indexed (a closed one has none)
local index, entered, n = {}, {}, 0
for s in string.gmatch(ARGV[6], '%S+') do
  n = n + 1
  index[s] = KEYS[7 + 2 * n]
  entered[s] = KEYS[8 + 2 * n]
end
if index[current] then redis.call('ZREM', index[current], ARGV[11]) end
if index[ARGV[1]] then redis.call('ZADD', index[ARGV[1]], now, ARGV[11]) end
-- for the metrics: counted in the same step as the change, so every worker everywhere is counted
redis.call('HINCRBY', KEYS[6], current .. '>' .. ARGV[1], 1)
if current ~= ARGV[1] then
  if entered[current] then redis.call('ZREM', entered[current], ARGV[11]) end
  if entered[ARGV[1]] then redis.call('ZADD', entered[ARGV[1]], now, ARGV[11]) end
end
if ARGV[17] ~= '' then
  -- a merchant acts on this change: one webhook event, in the same step as the change, so no
  -- event is lost when a worker dies after it (delivered later by worker.webhooks)
  if redis.call('EXISTS', KEYS[7]) == 1 then
    local seq = redis.call('HINCRBY', KEYS[1], 'webhookSeq', 1)
    redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[5], '*', 'type', ARGV[17],
               'tradeNo', ARGV[11], 'sequence', seq, 'at', now,
               'record', cjson.encode(redis.call('HGETALL', KEYS[1])))
  end
end
for i, c in ipairs(cjson.decode(ARGV[12])) do
  -- counters that must move with the state, exactly once (e.g. successes per payer IP)
  local key = KEYS[8 + 2 * n + i]
  redis.call('HINCRBY', key, c[1], 1)
  redis.call('EXPIRE', key, c[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
if not purge then redis.call('EXPIRE', KEYS[4], ARGV[4]) end
return {1, current, tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0'), payload}
"""

# Every reader shows a record through this (schemas/record.py): typed, internal fields hidden.
_RECORD = CheckoutRecordSchema()
# States a merchant acts on: each move into one is a webhook event (``checkout.<state>``).
WEBHOOK_STATES = frozenset({states.PAYING, states.SUCCEEDED, states.PARTIALLY_PAID, states.FAILED,
                            states.DECLINED, states.REJECTED, states.UNKNOWN})
_OPEN = frozenset(states.OPEN)
_JSON_FIELDS = {"errors", "contact"}
_INT_FIELDS = {"attempts", "createdAt", "updatedAt", "leaseUntil", "reconcileChecks", "nextCheckAt"}


def fingerprint(payload: Mapping[str, object]) -> str:
    """Identity of a payload for idempotent enqueue (same tradeNo, same payload -> same job)."""
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Moved:
    """What a transition did: ``applied`` or not, and the state it found.

    An applied claim also carries the job's ``payload`` (what it was claimed to send) and its
    ``lease_token``; ``lease_lost`` says a holder's write was refused because another process
    claimed the job since.
    """

    applied: bool
    previous: str | None
    attempts: int = 0
    payload: dict | None = None
    lease_token: str | None = None
    lease_lost: bool = False


@dataclass(frozen=True)
class Job:
    """A record as stored; ``payload`` is the merchant's input, ``None`` once purged."""

    trade_no: str
    state: str
    attempts: int
    lease_until: int
    payload: dict | None
    fields: dict

    def public(self, history: list[dict]) -> dict:
        """The public record (``CheckoutRecordSchema``), with ``history``."""
        return _RECORD.dump({**self.fields, "history": history})


class JobStore:
    """Reads and moves jobs; every write of state is atomic and forward-only."""

    def __init__(self, client: redis.Redis, *, prefix: str = "vexora",
                 ttl_seconds: int = 30 * 24 * 3600, events_maxlen: int = 100_000,
                 payload_retention: int = 0, clock: Callable[[], float] = time.time,
                 replication: Replication | None = None):
        self.redis = client
        self.replication = replication
        self.prefix = prefix
        self.ttl = int(ttl_seconds)
        self.payload_retention = int(payload_retention)
        self.events_maxlen = int(events_maxlen)
        self.clock = clock
        self._create = client.register_script(_CREATE)
        self._move = client.register_script(_MOVE)
        self._flag = client.register_script(_FLAG)
        self._count = client.register_script(_COUNT)
        self._renew = client.register_script(_RENEW)
        self._schedule = client.register_script(_SCHEDULE)
        self._state_keys_cache: dict[tuple[str, frozenset[str]], tuple[str, list[str]]] = {}

    # -- keys -------------------------------------------------------------------------------
    # a job's keys share the hash tag {tradeNo}: one Redis Cluster slot (README, "Redis Cluster")
    def job_key(self, trade_no: str) -> str:
        return f"{self.prefix}:job:{{{trade_no}}}"

    def history_key(self, trade_no: str) -> str:
        return f"{self.job_key(trade_no)}:history"

    def payload_key(self, trade_no: str) -> str:
        return f"{self.job_key(trade_no)}:payload"

    def retained_key(self, trade_no: str) -> str:
        return f"{self.job_key(trade_no)}:retained"

    @property
    def events_key(self) -> str:
        return f"{self.prefix}:events"

    def index_key(self, state: str) -> str:
        return f"{self.prefix}:index:{state}"

    def entered_key(self, state: str) -> str:
        """Open jobs of ``state`` by the time they entered it (for metrics; never rescheduled)."""
        return f"{self.prefix}:entered:{state}"

    @property
    def review_key(self) -> str:
        """The set of tradeNos flagged for a person and not yet resolved."""
        return f"{self.prefix}:review"

    @property
    def transitions_key(self) -> str:
        """Hash ``from>to`` -> count of every state change (and ``new>queued``), for metrics."""
        return f"{self.prefix}:metrics:transitions"

    @property
    def webhook_endpoints_key(self) -> str:
        """The webhook endpoints (``worker.webhooks.endpoints``): a move records an event only if any."""
        return endpoints_key(self.prefix)

    @property
    def webhook_outbox_key(self) -> str:
        """The stream a move's webhook event is recorded in (``worker.webhooks.outbox``)."""
        return outbox_key(self.prefix)

    def _state_keys(self, target: str, allowed: frozenset[str]) -> tuple[str, list[str]]:
        """The per-state keys a move into ``target`` from ``allowed`` may touch: the open states
        among them (``_MOVE``'s ARGV[6]) and, for each, its index and entered zsets."""
        found = self._state_keys_cache.get((target, allowed))
        if found is None:
            touched = sorted((allowed | {target}) & _OPEN)
            keys = [k for s in touched for k in (self.index_key(s), self.entered_key(s))]
            found = self._state_keys_cache[(target, allowed)] = (" ".join(touched), keys)
        return found

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- writes -----------------------------------------------------------------------------
    def create(self, trade_no: str, payload: Mapping[str, object], *, contact: Mapping[str, str],
               amount: object = None) -> tuple[str, str]:
        """Store a new ``queued`` job; ``("created"|"existing", state)`` (existing: same payload).

        Raises ``DuplicateTradeNoError`` when the tradeNo is taken by a different payload.
        """
        errors = trade_no_errors(trade_no)
        if errors:  # the last line of defence: every producer checks first
            raise InvalidError("tradeNo cannot identify a job", errors={"tradeNo": errors})
        now = self.now_ms()
        fp = fingerprint(payload)
        record = {
            "tradeNo": trade_no, "state": states.QUEUED, "createdAt": now, "updatedAt": now,
            "attempts": 0, "fingerprint": fp, "contact": json.dumps(dict(contact)),
        }
        if isinstance(amount, str):
            record["amount"] = amount
        outcome, state = self._create(
            keys=[self.job_key(trade_no), self.history_key(trade_no), self.events_key,
                  self.payload_key(trade_no), self.index_key(states.QUEUED),
                  self.entered_key(states.QUEUED), self.transitions_key],
            args=[trade_no, fp, now, self.ttl, self.events_maxlen,
                  json.dumps({k: str(v) for k, v in record.items()}, ensure_ascii=False),
                  json.dumps(dict(payload), ensure_ascii=False)],
        )
        outcome = _text(outcome)
        if outcome == "conflict":
            raise DuplicateTradeNoError(
                "tradeNo is already used by a job with a different payload",
                errors={"tradeNo": ["already used by another job with a different payload"]})
        if outcome == "created":
            event(log, logging.INFO, "state_change", {"tradeNo": trade_no, "from": "new", "to": states.QUEUED,
                                                     "attempt": 0})
        return outcome, _text(state)

    def move(self, trade_no: str, target: str, *, fields: Mapping[str, object] | None = None,
             drop: Iterable[str] = (), detail: Mapping[str, object] | None = None,
             allowed_from: Iterable[str] | None = None, claim_lease: float | None = None,
             counters: Iterable[tuple[str, str, int]] = (),
             detail_from: Mapping[str, Mapping[str, object]] | None = None,
             increase: str | None = None, lease_token: str | None = None) -> Moved:
        """Move a job to ``target`` if that is a forward move from its current state.

        ``claim_lease`` (seconds) makes this a lease claim: ``leaseUntil`` (Redis's clock) and a
        fresh ``leaseToken`` are written, a job in ``submitting`` is taken only once its lease
        has expired, a job without its payload is not taken, and the applied claim returns the
        payload and the token (one round trip to read and claim). ``lease_token`` makes the move
        a lease holder's write: refused (``lease_lost``) when another claim has been made since. ``counters`` are ``(hash key, field, ttl)``
        incremented only if the move is applied, in the same atomic step. ``detail_from``
        replaces ``detail`` when the job is moved from one of its states. ``increase`` names a
        numeric field that must grow for a move from ``target`` to itself (more paid on a partial
        payment); otherwise that move is refused.
        """
        now = self.now_ms()
        allowed = states.ENTERED_FROM[target] if allowed_from is None else frozenset(allowed_from)
        values = {k: _encode(v) for k, v in (fields or {}).items()}
        token = None
        if claim_lease is not None:
            token = values["leaseToken"] = secrets.token_hex(8)
        detail_json = _compact(detail or {})
        by_state = {k: _compact(v) for k, v in (detail_from or {}).items()}
        counters = list(counters)
        indexed, state_keys = self._state_keys(target, allowed)
        applied, previous, attempts, payload, *lost = self._move(
            keys=[self.job_key(trade_no), self.history_key(trade_no), self.events_key,
                  self.payload_key(trade_no), self.retained_key(trade_no), self.transitions_key,
                  self.webhook_endpoints_key, self.webhook_outbox_key, *state_keys,
                  *(key for key, _field, _ttl in counters)],
            args=[target, " ".join(sorted(allowed)), now, self.ttl, self.events_maxlen, indexed,
                  json.dumps(values), json.dumps(list(drop)),
                  int(claim_lease * 1000) if claim_lease is not None else "", detail_json, trade_no,
                  json.dumps([[field, ttl] for _key, field, ttl in counters]), self.payload_retention,
                  json.dumps(by_state) if by_state else "", increase or "", lease_token or "",
                  f"checkout.{target}" if target in WEBHOOK_STATES else ""],
        )
        moved = Moved(bool(applied), _text(previous) if previous else None, int(attempts or 0),
                      json.loads(payload) if payload else None, token if applied else None,
                      bool(lost and lost[0]))
        if moved.applied:
            detail = (detail_from or {}).get(moved.previous, detail)
            event(log, logging.INFO, "state_change", {"tradeNo": trade_no, "from": moved.previous, "to": target,
                                                     "attempt": moved.attempts, **_log_detail(detail)})
        return moved

    def note(self, trade_no: str, kind: str, detail: Mapping[str, object] | None = None) -> None:
        """An event that is not a change of state (an orphan callback, a flag for review)."""
        now = self.now_ms()
        detail_json = json.dumps({"kind": kind, **(detail or {})}, ensure_ascii=False, separators=(",", ":"))
        pipe = self.redis.pipeline()
        if self.redis.exists(self.job_key(trade_no)):
            pipe.rpush(self.history_key(trade_no),
                       f'{{"at":{now},"from":null,"to":null,"detail":{detail_json}}}')
        pipe.xadd(self.events_key, {"tradeNo": trade_no, "from": "", "to": "", "at": now,
                                    "detail": detail_json}, maxlen=self.events_maxlen, approximate=True)
        pipe.execute()
        event(log, logging.INFO, "job_event", {"tradeNo": trade_no, "kind": kind, **_log_detail(detail)})

    def flag(self, trade_no: str, reason: str, detail: Mapping[str, object] | None = None) -> bool:
        """Put a job in front of a person: ``needsReview`` with its reason and a ``needs_review``
        event, atomically. The same reason again changes nothing (a resent callback flags once)."""
        now = self.now_ms()
        detail_json = json.dumps({"kind": "needs_review", "reason": reason, **(detail or {})},
                                 ensure_ascii=False, separators=(",", ":"))
        flagged = bool(self._flag(keys=[self.job_key(trade_no), self.history_key(trade_no), self.events_key,
                                        self.review_key, self.webhook_endpoints_key, self.webhook_outbox_key],
                                  args=[trade_no, reason, now, detail_json, self.events_maxlen]))
        if flagged:
            event(log, logging.WARNING, "needs_review", tradeNo=trade_no, reason=reason)
        return flagged

    def unflag(self, trade_no: str, detail: Mapping[str, object]) -> None:
        """A person resolved the job: out of the review queue, with a ``review_resolved`` event."""
        pipe = self.redis.pipeline()
        pipe.hset(self.job_key(trade_no), "needsReview", "false")
        pipe.hdel(self.job_key(trade_no), "flaggedReason")  # the same reason later flags again
        pipe.srem(self.review_key, trade_no)
        pipe.execute()
        self.note(trade_no, "review_resolved", detail)

    def count_attempt(self, trade_no: str, *, lease_token: str | None = None, **fields: object) -> int:
        """Count one more request sent (or about to be sent) to the gateway for this job, and set
        ``fields`` with it (one round trip).

        With ``lease_token``, only while that lease is held and has not run out (Redis's clock):
        otherwise ``LeaseLostError`` and nothing is written, so a holder that was frozen or
        stalled never sends after another process may have taken the job over.
        """
        replicated = self.replication is not None and self.replication.enabled
        if lease_token is None:
            pipe = self.redis.pipeline(transaction=False)
            if fields:
                pipe.hset(self.job_key(trade_no), mapping={k: _encode(v) for k, v in fields.items()})
            pipe.hincrby(self.job_key(trade_no), "attempts", 1)
            if replicated:
                self.replication.wait_after(pipe)
            answers = pipe.execute()
            if replicated:
                self.replication.check(answers.pop())
            return int(answers[-1])
        flat = [x for k, v in fields.items() for x in (k, _encode(v))]
        if replicated:
            # A request is about to be sent: that it may have been must survive a failover, or
            # the job would be sent again as a first request instead of asked about first.
            attempts = self._replicated(self._count, [self.job_key(trade_no)], [lease_token, *flat])
        else:
            attempts = self._count(keys=[self.job_key(trade_no)], args=[lease_token, *flat])
        if attempts is None or int(attempts) < 0:
            raise LeaseLostError("the lease on this job was lost; another process may hold it")
        return int(attempts)

    def _replicated(self, script, keys: list, args: list):
        """Run ``script`` and ``WAIT`` for the replicas in one round trip; its answer, or
        ``NotReplicatedError``. (Not redis-py's pipelined script, which asks ``SCRIPT EXISTS``
        first: a round trip more on every call.)"""
        for _ in range(2):
            pipe = self.redis.pipeline(transaction=False)
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            self.replication.wait_after(pipe)
            try:
                answers = pipe.execute()
            except redis.exceptions.NoScriptError:
                # a server that never ran it (e.g. a replica promoted by a failover): nothing ran
                script.sha = self.redis.script_load(script.script)
                continue
            self.replication.check(answers[-1])
            return answers[0]
        raise redis.exceptions.NoScriptError("the script could not be loaded")

    def renew_leases(self, held: Mapping[str, str], lease_seconds: float) -> set[str]:
        """Extend the leases this process holds (``{tradeNo: token}``) to ``lease_seconds`` from
        now, in one round trip; return the tradeNos whose lease is no longer ours (taken over,
        or the job moved on)."""
        if not held:
            return set()
        trade_nos = list(held)
        renewed = self._renew(keys=[self.job_key(t) for t in trade_nos],
                              args=[int(lease_seconds * 1000), *(held[t] for t in trade_nos)])
        return {t for t, ok in zip(trade_nos, renewed) if not ok}

    def schedule_check(self, trade_no: str, state: str, *, base: float, maximum: float,
                       shift_s: float = 0.0) -> int:
        """Count one more reconciler check of a job and move its index entry to when the next is
        due (exponential backoff), atomically; return the number of checks."""
        return int(self._schedule(keys=[self.job_key(trade_no), self.index_key(state)],
                                  args=[trade_no, self.now_ms(), int(base * 1000), int(maximum * 1000),
                                        int(shift_s * 1000)]))

    def holds_lease(self, trade_no: str, token: str) -> bool:
        """True while no other claim has been made on the job since the one that gave ``token``."""
        held = self.redis.hget(self.job_key(trade_no), "leaseToken")
        return held is not None and _text(held) == token

    def server_now_ms(self) -> int:
        """Redis's clock, which every lease time is measured on."""
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def annotate(self, trade_no: str, **fields: object) -> None:
        """Set fields that are not a change of state (e.g. a flag for review)."""
        if self.redis.exists(self.job_key(trade_no)):
            self.redis.hset(self.job_key(trade_no), mapping={k: _encode(v) for k, v in fields.items()})

    def reindex(self, state: str, trade_no: str, at_ms: int) -> None:
        """Move a job's entry in its state's time index (only if it is still there)."""
        self.redis.zadd(self.index_key(state), {trade_no: at_ms}, xx=True)

    def unindex(self, state: str, trade_no: str) -> None:
        """Take a job out of its state's time index: no process will look at it again."""
        self.redis.zrem(self.index_key(state), trade_no)

    # -- reads ------------------------------------------------------------------------------
    def load(self, trade_no: str) -> Job | None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.job_key(trade_no))
        pipe.get(self.payload_key(trade_no))
        raw, live = pipe.execute()
        if not raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        payload = _text(live) if live else fields.get("payload")  # (or a record from before the key)
        decoded = {k: _decode(k, v) for k, v in fields.items()}
        return Job(
            trade_no=trade_no, state=fields.get("state", ""), attempts=decoded.get("attempts", 0),
            lease_until=decoded.get("leaseUntil", 0),
            payload=json.loads(payload) if payload else None, fields=decoded,
        )

    def history(self, trade_no: str) -> list[dict]:
        return [json.loads(_text(item)) for item in self.redis.lrange(self.history_key(trade_no), 0, -1)]

    def get(self, trade_no: str) -> dict | None:
        """The public record (``CheckoutRecordSchema``: typed, payer data masked, no payload,
        fingerprint, lease or other internal field), with the history."""
        job = self.load(trade_no)
        return None if job is None else job.public(self.history(trade_no))

    def events(self, after: str = "0-0", count: int = 100, block_ms: int | None = None) -> list[tuple[str, dict]]:
        """Events after the stream id ``after`` (``block_ms`` waits for new ones)."""
        if block_ms is None:
            rows = self.redis.xrange(self.events_key, min=f"({after}" if after != "0-0" else "-",
                                     count=count)
        else:
            answer = self.redis.xread({self.events_key: after}, count=count, block=block_ms)
            rows = answer[0][1] if answer else []
        return [(_text(i), {_text(k): _text(v) for k, v in fields.items()}) for i, fields in rows]

    def last_event_id(self) -> str:
        """The newest event's id ("0-0" when there is none): read it before a record to miss nothing."""
        newest = self.redis.xrevrange(self.events_key, count=1)
        return _text(newest[0][0]) if newest else "0-0"

    def open_jobs(self, state: str, *, older_than_s: float = 0.0, limit: int = 100) -> list[str]:
        """tradeNos in an open ``state`` that entered it at least ``older_than_s`` ago."""
        until = self.now_ms() - int(older_than_s * 1000)
        return [_text(t) for t in self.redis.zrangebyscore(self.index_key(state), "-inf", until,
                                                            start=0, num=limit)]


def _compact(value: Mapping[str, object]) -> str:
    return json.dumps(dict(value), ensure_ascii=False, separators=(",", ":"))


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _encode(value: object) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _decode(key: str, value: str) -> object:
    if key in _INT_FIELDS:
        return int(value) if value else 0
    if key in _JSON_FIELDS:
        return json.loads(value) if value else None
    if key == "needsReview":
        return value == "true"
    return value


_LOGGED = ("latencyMs", "code", "status", "reason")


def _log_detail(detail: Mapping[str, object] | None) -> dict[str, object]:
    """The detail fields that are safe and useful in a log line (only these: a detail may carry
    anything, e.g. a record's field errors)."""
    detail = detail or {}
    return {key: detail[key] for key in _LOGGED if key in detail}
