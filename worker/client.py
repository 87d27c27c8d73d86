"""The Python producer API: ``enqueue_checkout``, ``enqueue_checkouts`` and ``get_checkout``
(docs/design.md §Public interface, fixed names).

``enqueue_checkout`` stores the job and queues a message that carries only the ``tradeNo``; the
worker validates it. When the broker is the store's Redis (``Runtime.task_messages``), the message
is pushed by the store's own create step, atomically with the job, in one round trip; with
RabbitMQ or a broker elsewhere the job is stored first and the message sent after it. The ``tradeNo`` alone is checked first, with the schema's
own rule, because it becomes a Redis key. Enqueueing the same ``tradeNo`` with the same payload again
returns the existing job (and re-queues it if it is still waiting, which the lease makes safe);
with a different payload it raises ``DuplicateTradeNoError``.

Every job belongs to one merchant account (``account``, ``default`` when not given), fixed here:
its checkout is signed with that account's secret and ``merchantNo``, its per-IP limits are that
account's, its callbacks must be signed with that account's secret (README, "Accounts"). An
account the settings do not define is refused (``InvalidError`` on ``account``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from schemas import generate_trade_no, trade_no_errors
from worker.domain import states
from worker.domain.access import DEFAULT_ACCOUNT
from worker.domain.errors import CheckoutError, DuplicateTradeNoError, InvalidError
from worker.domain.masking import mask_contact
from worker.runtime.wiring import Runtime, get_runtime

# the errors a producer catches, re-exported: they live in worker/domain/errors.py
__all__ = ["enqueue_checkout", "enqueue_checkouts", "get_checkout", "CheckoutError", "InvalidError",
           "DuplicateTradeNoError", "CHUNK"]

SUBMIT_TASK = "vexora.checkout.submit"
CHUNK = 100  # create steps per write to Redis (one round trip) in enqueue_checkouts

# enqueue_checkouts' per-item results
CREATED, DUPLICATE, CONFLICT, INVALID = "created", "duplicate", "conflict", "invalid"
_CONFLICT_ERRORS = {"tradeNo": ["already used by another job with a different payload"]}
_NOT_AN_OBJECT = {"_schema": ["must be an object"]}


def _account(rt: Runtime, account: object) -> str:
    if account is None:
        account = DEFAULT_ACCOUNT
    if not isinstance(account, str) or rt.settings.account(account) is None:
        # the rule, never the value: an account id nobody configured may be anything
        raise InvalidError("unknown account", errors={"account": ["not an account of this deployment"]})
    return account


def _submit_message(rt: Runtime, trade_no: str) -> tuple[str, str] | None:
    """The job's first task message for the store's create step ``(queue, text)``, or None when
    the broker is not the store's Redis (then it is sent with ``rt.send``)."""
    messages = rt.task_messages
    if messages is None:
        return None
    from worker.celery import CHECKOUT_QUEUE
    return CHECKOUT_QUEUE, messages.build(SUBMIT_TASK, [trade_no], queue=CHECKOUT_QUEUE)


def _job_of(payload: Mapping[str, object]) -> tuple[dict, object, list[str]]:
    """The job to store (a copy, its ``tradeNo`` generated when absent), its tradeNo, and why that
    tradeNo cannot identify a job (checked before it becomes a key: "X:history" must never name a
    job, or half of one)."""
    job = dict(payload)
    trade_no = job.get("tradeNo")
    if trade_no is None:
        trade_no = job["tradeNo"] = generate_trade_no()
    return job, trade_no, trade_no_errors(trade_no)


def enqueue_checkout(payload: Mapping[str, object], *, account: str = DEFAULT_ACCOUNT,
                     runtime: Runtime | None = None) -> str:
    """Store a checkout job of ``account`` and queue it; return its ``tradeNo`` (generated when
    absent)."""
    if not isinstance(payload, Mapping):
        raise InvalidError("payload must be a JSON object", errors={"_schema": ["must be an object"]})
    rt = runtime or get_runtime()
    account = _account(rt, account)
    job, trade_no, errors = _job_of(payload)
    if errors:
        raise InvalidError("tradeNo cannot identify a job", errors={"tradeNo": errors})
    message = _submit_message(rt, trade_no)
    outcome, state = rt.store.create(trade_no, job, contact=mask_contact(job), amount=job.get("amount"),
                                     account=account, message=message)
    if message is None and (outcome == "created" or state == states.QUEUED):
        rt.send(SUBMIT_TASK, trade_no)
    # acknowledged means replicated (VEXORA_REDIS_MIN_REPLICAS): the record — and the message,
    # when the broker is the same Redis — reached the replicas, or NotReplicatedError (a redis
    # ConnectionError: the producer is told, as when Redis is down; enqueueing again is safe)
    rt.replication.confirm()
    return trade_no


def enqueue_checkouts(payloads: Iterable[Mapping[str, object]], *, account: str = DEFAULT_ACCOUNT,
                      runtime: Runtime | None = None) -> list[dict]:
    """Store and queue many checkout jobs of ``account``; one answer per payload, in order.

    Each payload is handled as ``enqueue_checkout`` handles it (a ``tradeNo`` generated when
    absent, the tradeNo rule, the same idempotency), and answered on its own:

    - ``{"tradeNo", "result": "created", "state": "queued"}``: stored and queued;
    - ``{"tradeNo", "result": "duplicate", "state"}``: the same payload is already that job (its
      state now; re-queued if still ``queued``, as ``enqueue_checkout`` does);
    - ``{"tradeNo", "result": "conflict", "errors"}``: the tradeNo is another payload's, or another
      account's (``enqueue_checkout`` raises ``DuplicateTradeNoError``); nothing stored;
    - ``{"tradeNo", "result": "invalid", "errors"}``: not a JSON object, or a tradeNo that cannot
      identify a job (``tradeNo`` is the one given, or None); nothing stored.

    An unknown ``account`` refuses the whole batch (``InvalidError``). The create steps go to
    Redis ``CHUNK`` a round trip (``JobStore.create_many``: the next chunk is built while Redis
    runs the last), each job with its message in one atomic step when the broker is the store's
    Redis (otherwise the messages are sent one by one once the jobs are stored), then one
    replication confirm for the batch. Redis down mid-batch raises (a redis
    ``ConnectionError``), as ``enqueue_checkout`` does: the jobs of chunks already written are
    stored; sending the same batch again is safe (they answer ``duplicate``).
    """
    rt = runtime or get_runtime()
    account = _account(rt, account)
    answers: list[dict | None] = []
    where: list[int] = []  # the answer each stored item fills
    stored: list[str] = []  # and its tradeNo

    def items():
        # read by the store a chunk at a time: this work overlaps with Redis running the last chunk
        for payload in payloads:
            if not isinstance(payload, Mapping):
                answers.append({"tradeNo": None, "result": INVALID,
                                "errors": {k: list(v) for k, v in _NOT_AN_OBJECT.items()}})
                continue
            job, trade_no, errors = _job_of(payload)
            if errors:
                answers.append({"tradeNo": trade_no if isinstance(trade_no, str) else None, "result": INVALID,
                                "errors": {"tradeNo": errors}})
                continue
            where.append(len(answers))
            stored.append(trade_no)
            answers.append(None)
            yield trade_no, job, mask_contact(job), job.get("amount"), account, _submit_message(rt, trade_no)

    outcomes = rt.store.create_many(items(), chunk=CHUNK)
    direct = rt.task_messages is not None
    for at, trade_no, (outcome, state) in zip(where, stored, outcomes):
        if outcome == "conflict":
            answers[at] = {"tradeNo": trade_no, "result": CONFLICT,
                           "errors": {k: list(v) for k, v in _CONFLICT_ERRORS.items()}}
            continue
        if not direct and (outcome == "created" or state == states.QUEUED):
            rt.send(SUBMIT_TASK, trade_no)  # another broker: the message after the job is stored
        answers[at] = {"tradeNo": trade_no, "result": CREATED if outcome == "created" else DUPLICATE,
                       "state": state}
    if stored:
        rt.replication.confirm()  # once for the batch: every chunk written before it
    return answers  # type: ignore[return-value]


def get_checkout(trade_no: str, *, runtime: Runtime | None = None) -> dict | None:
    """The job's public record, or ``None`` if there is no such job: ``CheckoutRecordSchema``
    (schemas/record.py) — typed, times in epoch ms, amounts as yen strings, payer data masked,
    internal fields hidden — the same record the HTTP API and the webhooks show."""
    if trade_no_errors(trade_no):
        return None  # no job can have that tradeNo; never read a key it would name
    return (runtime or get_runtime()).store.get(trade_no)
