"""The job store: one Redis hash per ``tradeNo``, its history, a stream of events, a TTL.

The store is the source of truth. Every change of state goes through one Lua script that checks
the move against ``worker.domain.states`` and, in the same atomic step, writes the new fields, appends
to the job's history, adds an event to the stream and keeps the per-state time index that the
reconciler scans. A refused move changes nothing and reports the state it found.

Its keys are named in ``worker.store.keys`` (a job's own share the hash tag ``{<tradeNo>}``);
its scripts are ``worker/store/lua/*.lua`` (``create``, ``move``, ``flag``, ``unflag``, ``annotate``,
``count_attempt``, ``renew_leases``, ``schedule_check``, ``orphan``, ``dismiss``). The payload lives beside the hash, not in it: at ~0.5 kB it
is longer than Redis's ``hash-max-listpack-value``, and one such value turns a hash into a
hashtable for good (three times the memory for the 30 days a finished job is kept;
BENCHMARKS.md, 5). Every key a script reads or writes is passed in its ``KEYS`` (none is built
inside Lua): the global keys too, and the webhook outbox the scripts append to.

Every write of a job's record or history increments its ``version`` inside the same script (or
pipeline): ``GET /v1/checkouts/<tradeNo>``'s ETag, and what an operator's resolve is conditional
on. A job's keys have no TTL while it is open or flagged; the TTL (``ttl_seconds``) starts when it
is closed and not flagged (``move.lua``, ``flag.lua``, ``unflag.lua``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from datetime import datetime, timedelta, timezone
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import redis

from schemas import CheckoutRecordSchema, trade_no_errors
from worker.domain import states
from worker.domain.access import DEFAULT_ACCOUNT
from worker.domain.errors import DuplicateTradeNoError, InvalidError, LeaseLostError
from worker.logs import event
from worker.store import scripts
from worker.store.connection import Replication
from worker.store.keys import Keys

__all__ = ["JobStore", "Job", "Moved", "fingerprint", "WEBHOOK_STATES", "RESOLVED", "GONE", "VERSION_CHANGED",
           "NOT_IN_REVIEW"]

log = logging.getLogger("vexora.store")

# Every reader shows a record through this (schemas/record.py): typed, internal fields hidden.
_RECORD = CheckoutRecordSchema()
# States a merchant acts on: each move into one is a webhook event (``checkout.<state>``).
WEBHOOK_STATES = frozenset({states.PAYING, states.SUCCEEDED, states.PARTIALLY_PAID, states.FAILED,
                            states.DECLINED, states.REJECTED, states.UNKNOWN})
_OPEN = frozenset(states.OPEN)
_JSON_FIELDS = {"errors", "contact"}
_INT_FIELDS = {"attempts", "createdAt", "updatedAt", "leaseUntil", "reconcileChecks", "nextCheckAt", "version"}
# ``unflag.lua``'s and ``dismiss.lua``'s answers
RESOLVED, GONE, VERSION_CHANGED, NOT_IN_REVIEW = 1, 0, -1, -2


_JST = timezone(timedelta(hours=9))  # the gateway's day (Japan has no daylight saving time)


def jst_day(ms: int) -> str:
    """The JST day (``YYYY-MM-DD``) of a store time: the day the gateway counts in, /ops's totals."""
    return datetime.fromtimestamp(ms / 1000, _JST).strftime("%Y-%m-%d")


def fingerprint(payload: Mapping[str, object]) -> str:
    """Identity of a payload for idempotent enqueue (same tradeNo, same payload -> same job)."""
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Moved:
    """What a transition did: ``applied`` or not, and the state it found.

    An applied claim also carries the job's ``payload`` (what it was claimed to send), its
    ``account`` (whom to sign for) and its ``lease_token``; ``lease_lost`` says a holder's write was refused because another process
    claimed the job since.
    """

    applied: bool
    previous: str | None
    attempts: int = 0
    payload: dict | None = None
    lease_token: str | None = None
    lease_lost: bool = False
    version_changed: bool = False
    account: str = DEFAULT_ACCOUNT
    counted: bool = False  # the claim counted the job's first request (``count_first``)


@dataclass(frozen=True)
class Job:
    """A record as stored; ``payload`` is the merchant's input, ``None`` once purged."""

    trade_no: str
    state: str
    attempts: int
    lease_until: int
    payload: dict | None
    fields: dict

    @property
    def account(self) -> str:
        """The merchant account the job belongs to (a record from before accounts: ``default``)."""
        return str(self.fields.get("account") or DEFAULT_ACCOUNT)

    @property
    def version(self) -> int:
        """Grows with every write of the record or its history (0: written before versions)."""
        return int(self.fields.get("version") or 0)

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
        self.keys = Keys(prefix)
        self._create = scripts.register(client, "create")
        self._move = scripts.register(client, "move")
        self._flag = scripts.register(client, "flag")
        self._unflag = scripts.register(client, "unflag")
        self._annotate = scripts.register(client, "annotate")
        self._orphan = scripts.register(client, "orphan")
        self._dismiss = scripts.register(client, "dismiss")
        self._count = scripts.register(client, "count_attempt")
        self._renew = scripts.register(client, "renew_leases")
        self._schedule = scripts.register(client, "schedule_check")
        self._state_keys_cache: dict[tuple[str, frozenset[str]], tuple[str, list[str]]] = {}

    def _state_keys(self, target: str, allowed: frozenset[str]) -> tuple[str, list[str]]:
        """The per-state keys a move into ``target`` from ``allowed`` may touch: the open states
        among them (``move.lua``'s ``open_states``) and, for each, its index and entered zsets."""
        found = self._state_keys_cache.get((target, allowed))
        if found is None:
            touched = sorted((allowed | {target}) & _OPEN)
            keys = [k for s in touched for k in (self.keys.index(s), self.keys.entered(s))]
            found = self._state_keys_cache[(target, allowed)] = (" ".join(touched), keys)
        return found

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- writes -----------------------------------------------------------------------------
    def create(self, trade_no: str, payload: Mapping[str, object], *, contact: Mapping[str, str],
               amount: object = None, account: str = DEFAULT_ACCOUNT) -> tuple[str, str]:
        """Store a new ``queued`` job of ``account``; ``("created"|"existing", state)`` (existing:
        same payload and account).

        Raises ``DuplicateTradeNoError`` when the tradeNo is taken by a different payload, or by
        another account's job (a tradeNo is one job across the deployment: its keys are the
        tradeNo's).
        """
        errors = trade_no_errors(trade_no)
        if errors:  # the last line of defence: every producer checks first
            raise InvalidError("tradeNo cannot identify a job", errors={"tradeNo": errors})
        now = self.now_ms()
        account = account or DEFAULT_ACCOUNT
        # the account is part of the identity: the same payload for another account is another job
        fp = fingerprint(payload) if account == DEFAULT_ACCOUNT else fingerprint({**payload, "\0account": account})
        record = {
            "tradeNo": trade_no, "state": states.QUEUED, "createdAt": now, "updatedAt": now,
            "attempts": 0, "fingerprint": fp, "contact": json.dumps(dict(contact)), "version": 1,
            "account": account,
        }
        if isinstance(amount, str):
            record["amount"] = amount
        outcome, state = self._create(
            keys=[self.keys.job(trade_no), self.keys.history(trade_no), self.keys.events,
                  self.keys.payload(trade_no), self.keys.index(states.QUEUED),
                  self.keys.entered(states.QUEUED), self.keys.transitions, self.keys.open_by_account,
                  self.keys.jobs_created, self.keys.jobs_names, self.keys.daily(jst_day(now)),
                  self.keys.jobs_platform, self.keys.jobs_platform_of],
            args=[trade_no, fp, now, self.ttl, self.events_maxlen,
                  json.dumps({k: str(v) for k, v in record.items()}, ensure_ascii=False),
                  json.dumps(dict(payload), ensure_ascii=False), account],
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
             increase: str | None = None, lease_token: str | None = None,
             version: int | None = None, flag: tuple[str, Mapping[str, object]] | None = None,
             unflag: Mapping[str, object] | None = None, count_first: bool = False) -> Moved:
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

        ``version`` makes the move conditional on the record's version (refused with
        ``version_changed`` when it differs: an operator's resolve of what they saw). ``flag``
        (``(reason, detail)``) flags the job for review in the same step (``needsReview``, the
        review set, a ``needs_review`` history entry, event and webhook event), once per reason;
        ``unflag`` (the ``review_resolved`` detail) takes it out of review in the same step.
        ``count_first`` makes a claim of a job never sent count its first request too
        (``attempts`` 1, what ``count_attempt`` writes), in the same step: ``Moved.counted``.
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
        k = self.keys
        applied, previous, attempts, payload, *lost = self._move(
            keys=[k.job(trade_no), k.history(trade_no), k.events, k.payload(trade_no), k.retained(trade_no),
                  k.transitions, k.webhook_endpoints, k.webhook_outbox, k.review, k.open_by_account, *state_keys,
                  *(key for key, _field, _ttl in counters), k.jobs_platform, k.daily(jst_day(now)),
                  k.jobs_platform_of],
            args=scripts.argv(
                "move", target=target, allowed_from=" ".join(sorted(allowed)), now=now, ttl=self.ttl,
                events_maxlen=self.events_maxlen, open_states=indexed, fields=json.dumps(values),
                drop=json.dumps(list(drop)),
                claim_ms=int(claim_lease * 1000) if claim_lease is not None else "", detail=detail_json,
                trade_no=trade_no, counters=json.dumps([[field, ttl] for _key, field, ttl in counters]),
                retention=self.payload_retention, detail_by_state=json.dumps(by_state) if by_state else "",
                increase=increase or "", lease_token=lease_token or "",
                webhook_type=f"checkout.{target}" if target in WEBHOOK_STATES else "",
                version="" if version is None else int(version),
                flag_reason=flag[0] if flag else "",
                flag_detail=_compact({"kind": "needs_review", "reason": flag[0], **flag[1]}) if flag else "",
                unflag=_compact({"kind": "review_resolved", **unflag}) if unflag is not None else "",
                count_first="1" if count_first else ""),
        )
        moved = Moved(bool(applied), _text(previous) if previous else None, int(attempts or 0),
                      json.loads(payload) if payload else None, token if applied else None,
                      bool(lost and lost[0]), bool(len(lost) > 1 and lost[1]),
                      _text(lost[2]) if len(lost) > 2 and lost[2] else DEFAULT_ACCOUNT,
                      bool(len(lost) > 3 and lost[3]))
        if moved.applied:
            detail = (detail_from or {}).get(moved.previous, detail)
            # a claim is a step of the submit, not news: its line only at DEBUG (one line a move
            # else: the logging is a good share of a worker's CPU per job, BENCHMARKS.md §7)
            event(log, logging.DEBUG if claim_lease is not None else logging.INFO, "state_change", {"tradeNo": trade_no, "from": moved.previous, "to": target,
                                                     "attempt": moved.attempts, **_log_detail(detail)})
            if flag:
                event(log, logging.WARNING, "needs_review", tradeNo=trade_no, reason=flag[0])
        return moved

    def note(self, trade_no: str, kind: str, detail: Mapping[str, object] | None = None) -> None:
        """An event that is not a change of state (an orphan callback, a flag for review)."""
        now = self.now_ms()
        detail_json = json.dumps({"kind": kind, **(detail or {})}, ensure_ascii=False, separators=(",", ":"))
        pipe = self.redis.pipeline()
        if self.redis.exists(self.keys.job(trade_no)):
            pipe.rpush(self.keys.history(trade_no),
                       f'{{"at":{now},"from":null,"to":null,"detail":{detail_json}}}')
            pipe.hincrby(self.keys.job(trade_no), "version", 1)  # the history is part of the record
        pipe.xadd(self.keys.events, {"tradeNo": trade_no, "from": "", "to": "", "at": now,
                                    "detail": detail_json})  # never capped here: streams.StreamTrimmer
        pipe.execute()
        event(log, logging.INFO, "job_event", {"tradeNo": trade_no, "kind": kind, **_log_detail(detail)})

    def flag(self, trade_no: str, reason: str, detail: Mapping[str, object] | None = None) -> bool:
        """Put a job in front of a person: ``needsReview`` with its reason and a ``needs_review``
        event, atomically. The same reason again changes nothing (a resent callback flags once)."""
        now = self.now_ms()
        detail_json = json.dumps({"kind": "needs_review", "reason": reason, **(detail or {})},
                                 ensure_ascii=False, separators=(",", ":"))
        flagged = bool(self._flag(keys=[self.keys.job(trade_no), self.keys.history(trade_no), self.keys.events,
                                        self.keys.review, self.keys.webhook_endpoints, self.keys.webhook_outbox,
                                        self.keys.payload(trade_no)],
                                  args=[trade_no, reason, now, detail_json, self.events_maxlen]))
        if flagged:
            event(log, logging.WARNING, "needs_review", tradeNo=trade_no, reason=reason)
        return flagged

    def unflag(self, trade_no: str, version: int, fields: Mapping[str, object],
               detail: Mapping[str, object]) -> int:
        """A person resolved the job without moving it (it is in the state decided): out of the
        review queue with ``fields`` and a ``review_resolved`` entry, only at ``version``, in one
        step. ``RESOLVED``, ``GONE``, ``VERSION_CHANGED`` or ``NOT_IN_REVIEW``."""
        detail_json = _compact({"kind": "review_resolved", **detail})
        done = int(self._unflag(
            keys=[self.keys.job(trade_no), self.keys.history(trade_no), self.keys.events, self.keys.review,
                  self.keys.payload(trade_no)],
            args=[trade_no, int(version), self.now_ms(), self.ttl, self.events_maxlen,
                  json.dumps({k: _encode(v) for k, v in fields.items()}), detail_json, " ".join(states.OPEN)]))
        if done == RESOLVED:
            event(log, logging.INFO, "job_event", {"tradeNo": trade_no, "kind": "review_resolved",
                                                  **_log_detail(detail)})
        return done

    # -- money reported for a tradeNo with no job ------------------------------------------
    def record_orphan(self, trade_no: str, fields: Mapping[str, object]) -> bool:
        """Keep a paid report for a tradeNo that has no job for a person (the review set): False
        when the job exists after all (apply the report to it instead)."""
        recorded = bool(self._orphan(keys=[self.keys.job(trade_no), self.keys.orphan(trade_no), self.keys.review],
                                     args=[trade_no, self.now_ms(),
                                           json.dumps({k: _encode(v) for k, v in fields.items()})]))
        if recorded:
            event(log, logging.WARNING, "needs_review", tradeNo=trade_no, reason="money reported for no job")
        return recorded

    def orphan(self, trade_no: str) -> dict | None:
        """The orphan entry of ``trade_no`` (money reported for no job), or None."""
        raw = self.redis.hgetall(self.keys.orphan(trade_no))
        return {_text(k): _text(v) for k, v in raw.items()} or None

    def dismiss_orphan(self, trade_no: str, operator: str, reason: str) -> int:
        """A person looked at an orphan entry: out of the review set, kept ``ttl`` seconds more.
        ``RESOLVED``, ``GONE`` or ``NOT_IN_REVIEW``."""
        return int(self._dismiss(keys=[self.keys.orphan(trade_no), self.keys.review],
                                 args=[trade_no, self.now_ms(), operator, reason, self.ttl]))

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
                pipe.hset(self.keys.job(trade_no), mapping={k: _encode(v) for k, v in fields.items()})
            pipe.hincrby(self.keys.job(trade_no), "attempts", 1)
            pipe.hincrby(self.keys.job(trade_no), "version", 1)
            if replicated:
                self.replication.wait_after(pipe)
            answers = pipe.execute()
            if replicated:
                self.replication.check(answers.pop())
            return int(answers[-2])
        flat = [x for k, v in fields.items() for x in (k, _encode(v))]
        if replicated:
            # A request is about to be sent: that it may have been must survive a failover, or
            # the job would be sent again as a first request instead of asked about first.
            attempts = self._replicated(self._count, [self.keys.job(trade_no)], [lease_token, *flat])
        else:
            attempts = self._count(keys=[self.keys.job(trade_no)], args=[lease_token, *flat])
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
        renewed = self._renew(keys=[self.keys.job(t) for t in trade_nos],
                              args=[int(lease_seconds * 1000), *(held[t] for t in trade_nos)])
        return {t for t, ok in zip(trade_nos, renewed) if not ok}

    def schedule_check(self, trade_no: str, state: str, *, base: float, maximum: float,
                       shift_s: float = 0.0) -> int:
        """Count one more reconciler check of a job and move its index entry to when the next is
        due (exponential backoff), atomically; return the number of checks."""
        return int(self._schedule(keys=[self.keys.job(trade_no), self.keys.index(state)],
                                  args=[trade_no, self.now_ms(), int(base * 1000), int(maximum * 1000),
                                        int(shift_s * 1000)]))

    def holds_lease(self, trade_no: str, token: str) -> bool:
        """True while no other claim has been made on the job since the one that gave ``token``."""
        held = self.redis.hget(self.keys.job(trade_no), "leaseToken")
        return held is not None and _text(held) == token

    def server_now_ms(self) -> int:
        """Redis's clock, which every lease time is measured on."""
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def annotate(self, trade_no: str, **fields: object) -> None:
        """Set fields that are not a change of state (a link, a message), growing the record's
        ``version``; nothing when the job is gone (one round trip)."""
        self._annotate(keys=[self.keys.job(trade_no)],
                       args=[x for k, v in fields.items() for x in (k, _encode(v))])

    def reindex(self, state: str, trade_no: str, at_ms: int) -> None:
        """Move a job's entry in its state's time index (only if it is still there)."""
        self.redis.zadd(self.keys.index(state), {trade_no: at_ms}, xx=True)

    def unindex(self, state: str, trade_no: str) -> None:
        """Take a job out of its state's time index: no process will look at it again."""
        self.redis.zrem(self.keys.index(state), trade_no)

    # -- reads ------------------------------------------------------------------------------
    def load(self, trade_no: str) -> Job | None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.job(trade_no))
        pipe.get(self.keys.payload(trade_no))
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

    def account_of(self, trade_no: str) -> tuple[bool, str]:
        """Whether the job exists, and its account (one round trip: the callback endpoint's)."""
        state, account = self.redis.hmget(self.keys.job(trade_no), ["state", "account"])
        return state is not None, _text(account) if account else DEFAULT_ACCOUNT

    def history(self, trade_no: str) -> list[dict]:
        return [json.loads(_text(item)) for item in self.redis.lrange(self.keys.history(trade_no), 0, -1)]

    def get(self, trade_no: str) -> dict | None:
        """The public record (``CheckoutRecordSchema``: typed, payer data masked, no payload,
        fingerprint, lease or other internal field), with the history."""
        job = self.load(trade_no)
        return None if job is None else job.public(self.history(trade_no))

    def events(self, after: str = "0-0", count: int = 100, block_ms: int | None = None) -> list[tuple[str, dict]]:
        """Events after the stream id ``after`` (``block_ms`` waits for new ones)."""
        if block_ms is None:
            rows = self.redis.xrange(self.keys.events, min=f"({after}" if after != "0-0" else "-",
                                     count=count)
        else:
            answer = self.redis.xread({self.keys.events: after}, count=count, block=block_ms)
            rows = answer[0][1] if answer else []
        return [(_text(i), {_text(k): _text(v) for k, v in fields.items()}) for i, fields in rows]

    def last_event_id(self) -> str:
        """The newest event's id ("0-0" when there is none): read it before a record to miss nothing."""
        newest = self.redis.xrevrange(self.keys.events, count=1)
        return _text(newest[0][0]) if newest else "0-0"

    def open_jobs(self, state: str, *, older_than_s: float = 0.0, limit: int = 100) -> list[str]:
        """tradeNos in an open ``state`` that entered it at least ``older_than_s`` ago."""
        until = self.now_ms() - int(older_than_s * 1000)
        return [_text(t) for t in self.redis.zrangebyscore(self.keys.index(state), "-inf", until,
                                                            start=0, num=limit)]

    def flagged(self) -> list[str]:
        """The tradeNos in the review set (flagged, perhaps since resolved or expired)."""
        return [_text(t) for t in self.redis.smembers(self.keys.review)]

    def forget_flag(self, trade_no: str) -> None:
        """Take a tradeNo out of the review set (its job expired, or was resolved)."""
        self.redis.srem(self.keys.review, trade_no)

    def counts(self) -> tuple[dict[str, int], int]:
        """Jobs now in each open state, and jobs flagged for a person (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        for state in states.OPEN:
            pipe.zcard(self.keys.entered(state))
        pipe.scard(self.keys.review)
        *counts, review = pipe.execute()
        return dict(zip(states.OPEN, counts)), review

    # -- the console's reads (/ops) ----------------------------------------------------------
    def search(self, text: str, limit: int = 20) -> list[str]:
        """tradeNos whose tradeNo or platFormTradeNo is ``text`` or starts with it (exact first)."""
        text = text.strip()
        if not text or len(text) > 128:
            return []
        lo, hi = f"[{text}", f"[{text}\xff"
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrangebylex(self.keys.jobs_names, lo, hi, start=0, num=limit)
        pipe.zrangebylex(self.keys.jobs_platform, lo, hi, start=0, num=limit)
        names, platform = pipe.execute()
        found = [_text(t) for t in names]
        for raw in platform:
            gateway_id, _, trade_no = _text(raw).rpartition(" ")
            found.append(trade_no)
        exact = [t for t in found if t == text] + [_text(r).rpartition(" ")[2] for r in platform
                                                    if _text(r).rpartition(" ")[0] == text]
        return list(dict.fromkeys(exact + found))[:limit]

    def created_between(self, newest_ms: int | None, oldest_ms: int | None, *, before: tuple[int, str] | None = None,
                        count: int = 200) -> list[tuple[str, int]]:
        """(tradeNo, createdAt) newest first, created in ``[oldest_ms, newest_ms]`` and strictly before
        the cursor ``before`` ((createdAt, tradeNo) of the last one shown)."""
        top = "+inf" if newest_ms is None else newest_ms
        if before is not None:
            top = min(before[0], newest_ms) if newest_ms is not None else before[0]
        rows = self.redis.zrevrangebyscore(self.keys.jobs_created, top, "-inf" if oldest_ms is None else oldest_ms,
                                           start=0, num=count, withscores=True)
        out = [(_text(t), int(score)) for t, score in rows]
        if before is not None:
            out = [(t, at) for t, at in out if at < before[0] or (at == before[0] and t < before[1])]
        return out

    def summaries(self, trade_nos: list[str]) -> list[dict | None]:
        """The list fields of each job (one round trip): state, amount, paidAmount, account,
        createdAt, updatedAt, needsReview, platFormTradeNo; None for a job gone."""
        names = ("state", "amount", "paidAmount", "account", "createdAt", "updatedAt", "needsReview",
                 "platFormTradeNo")
        pipe = self.redis.pipeline(transaction=False)
        for trade_no in trade_nos:
            pipe.hmget(self.keys.job(trade_no), *names)
        out = []
        for trade_no, values in zip(trade_nos, pipe.execute()):
            if values[0] is None:
                out.append(None)
                continue
            row = {"tradeNo": trade_no, **{n: _text(v) if v is not None else None for n, v in zip(names, values)}}
            row["account"] = row["account"] or DEFAULT_ACCOUNT
            row["needsReview"] = row["needsReview"] == "true"
            for n in ("createdAt", "updatedAt"):
                row[n] = int(row[n]) if row[n] else None
            out.append(row)
        return out

    def daily_totals(self, day: str) -> dict[str, dict[str, float]]:
        """A JST day's totals per account: ``{account: {created, <state>…, paid}}``."""
        out: dict[str, dict[str, float]] = {}
        for field, value in self.redis.hgetall(self.keys.daily(day)).items():
            account, _, name = _text(field).rpartition("|")
            out.setdefault(account, {})[name] = float(_text(value))
        return out

    def stats(self) -> dict:
        """What ``GET /metrics`` shows of the store, in one round trip: per open state its count
        and its oldest entry time (ms, or None), the review set's size, the transitions, the
        deployment's counters and when the last reconciler pass ended (ms, or None)."""
        pipe = self.redis.pipeline(transaction=False)
        for state in states.OPEN:
            pipe.zcard(self.keys.entered(state))
            pipe.zrange(self.keys.entered(state), 0, 0, withscores=True)
        pipe.scard(self.keys.review)
        pipe.hgetall(self.keys.transitions)
        pipe.hgetall(self.keys.counters)
        pipe.get(self.keys.reconcile_last_pass)
        pipe.hgetall(self.keys.open_by_account)
        answers = pipe.execute()
        n = len(states.OPEN)
        review, transitions, counters, last_pass, by_account = answers[2 * n:]
        return {
            "open_by_account": {_text(k): int(v) for k, v in by_account.items()},
            "open": {state: (answers[2 * i], answers[2 * i + 1][0][1] if answers[2 * i + 1] else None)
                     for i, state in enumerate(states.OPEN)},
            "review": review,
            "transitions": {_text(k): int(v) for k, v in transitions.items()},
            "counters": {_text(k): float(v) for k, v in counters.items()},
            "last_pass": int(last_pass) if last_pass else None,
        }

    def add_counters(self, counts: Mapping[str, float]) -> None:
        """Add to the deployment's counters (``worker.ops.metrics.Meter`` flushes through this)."""
        pipe = self.redis.pipeline(transaction=False)
        for field, amount in counts.items():
            if float(amount).is_integer():
                pipe.hincrby(self.keys.counters, field, int(amount))
            else:
                pipe.hincrbyfloat(self.keys.counters, field, amount)
        pipe.execute()

    def mark_reconcile_pass(self) -> None:
        """A reconciler pass ended now (``vexora_reconcile_last_pass_timestamp_seconds``)."""
        self.redis.set(self.keys.reconcile_last_pass, self.now_ms())


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
