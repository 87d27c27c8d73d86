"""The Python producer API: ``enqueue_checkout`` and ``get_checkout`` (docs/design.md §Public interface, fixed names).

``enqueue_checkout`` stores the job first and then queues a message that carries only the
``tradeNo``; the worker validates it. The ``tradeNo`` alone is checked first, with the schema's
own rule, because it becomes a Redis key. Enqueueing the same ``tradeNo`` with the same payload again
returns the existing job (and re-queues it if it is still waiting, which the lease makes safe);
with a different payload it raises ``DuplicateTradeNoError``.

Every job belongs to one merchant account (``account``, ``default`` when not given), fixed here:
its checkout is signed with that account's secret and ``merchantNo``, its per-IP limits are that
account's, its callbacks must be signed with that account's secret (README, "Accounts"). An
account the settings do not define is refused (``InvalidError`` on ``account``).
"""

from __future__ import annotations

from collections.abc import Mapping

from schemas import generate_trade_no, trade_no_errors
from worker.domain import states
from worker.domain.access import DEFAULT_ACCOUNT
from worker.domain.errors import CheckoutError, DuplicateTradeNoError, InvalidError
from worker.domain.masking import mask_contact
from worker.runtime.wiring import Runtime, get_runtime

# the errors a producer catches, re-exported: they live in worker/domain/errors.py
__all__ = ["enqueue_checkout", "get_checkout", "CheckoutError", "InvalidError", "DuplicateTradeNoError"]

def enqueue_checkout(payload: Mapping[str, object], *, account: str = DEFAULT_ACCOUNT,
                     runtime: Runtime | None = None) -> str:
    """Store a checkout job of ``account`` and queue it; return its ``tradeNo`` (generated when
    absent)."""
    if not isinstance(payload, Mapping):
        raise InvalidError("payload must be a JSON object", errors={"_schema": ["must be an object"]})
    rt = runtime or get_runtime()
    if account is None:
        account = DEFAULT_ACCOUNT
    if not isinstance(account, str) or rt.settings.account(account) is None:
        # the rule, never the value: an account id nobody configured may be anything
        raise InvalidError("unknown account", errors={"account": ["not an account of this deployment"]})
    job = dict(payload)
    trade_no = job.get("tradeNo")
    if trade_no is None:
        trade_no = job["tradeNo"] = generate_trade_no()
    errors = trade_no_errors(trade_no)
    if errors:
        # checked before it becomes a key: "X:history" must never name a job (or half of one)
        raise InvalidError("tradeNo cannot identify a job", errors={"tradeNo": errors})
    outcome, state = rt.store.create(trade_no, job, contact=mask_contact(job), amount=job.get("amount"),
                                     account=account)
    if outcome == "created" or state == states.QUEUED:
        rt.send("vexora.checkout.submit", trade_no)
    # acknowledged means replicated (VEXORA_REDIS_MIN_REPLICAS): the record — and the message,
    # when the broker is the same Redis — reached the replicas, or NotReplicatedError (a redis
    # ConnectionError: the producer is told, as when Redis is down; enqueueing again is safe)
    rt.replication.confirm()
    return trade_no


def get_checkout(trade_no: str, *, runtime: Runtime | None = None) -> dict | None:
    """The job's public record, or ``None`` if there is no such job: ``CheckoutRecordSchema``
    (schemas/record.py) — typed, times in epoch ms, amounts as yen strings, payer data masked,
    internal fields hidden — the same record the HTTP API and the webhooks show."""
    if trade_no_errors(trade_no):
        return None  # no job can have that tradeNo; never read a key it would name
    return (runtime or get_runtime()).store.get(trade_no)
