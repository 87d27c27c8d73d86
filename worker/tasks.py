"""Celery tasks: thin wrappers that load the runtime, call plain logic and map errors.

Task names and queues are public (docs/design.md §Public interface). Only errors we can name are
retried by Celery: a Redis outage while reading or writing the store.
"""

from __future__ import annotations

import logging

import redis
from celery.worker.request import Request

from worker import client
from worker.celery import app
from worker.domain.errors import InvalidError
from worker.logs import event
from worker.runtime.wiring import get_runtime

log = logging.getLogger("vexora.tasks")

_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class PayloadHidingRequest(Request):
    """The worker's request for ``vexora.checkout.enqueue``: whatever it shows outside the task
    names the tradeNo only, never the payer data the producer sent as keyword arguments.

    Celery shows a request's arguments in four ways, all covered here:

    * ``argsrepr``/``kwargsrepr`` (task-received events, the "Received task" log context),
      copied from the producer's headers: ``app.send_task`` puts its repr of the whole payload
      there, celery-node puts nothing;
    * the request dict handed to the pool, whose ``argsrepr``/``kwargsrepr`` the tracer logs with
      every succeeded / failed / rejected line (``extra={"data": ...}``), falling back to
      ``repr(kwargs)`` when they are empty (celery-node);
    * ``info()``, which ``inspect active/reserved/scheduled/query_task`` reply with (Flower's worker
      page and ``/api/workers``): the raw ``args``/``kwargs`` unless ``safe=True``, and then the
      producer's headers;
    * ``repr()`` (the worker logs it on errors; timer entries of scheduled requests show it).

    The raw args and kwargs stay in the request (``args``, ``kwargs``, the request dict's ``args``
    and ``kwargs``): the task runs with them, and a retry re-sends them — on the broker, which
    carries this foreign-producer task's payload anyway (docs/producers.md).

    Why a Request subclass and not a patch of Celery's control commands or tracer: ``Request=`` is
    Celery's per-task extension point, and every request of this task — from any producer — is
    built from it before anything reads it, so one class covers events, logs, the pool and remote
    control. A global patch would depend on private module internals, change every task's output
    (ops need ``submit``'s tradeNo and the callbacks' fields as they are) and break silently when
    Celery moves them.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        payload = self._kwargs if isinstance(self._kwargs, dict) else {}
        trade_no = payload.get("tradeNo")
        self._argsrepr = "()"
        account = payload.get("account")
        self._kwargsrepr = repr({"tradeNo": trade_no if isinstance(trade_no, str) else None,
                                 **({"account": account} if isinstance(account, str) else {})})
        # the tracer in the pool reads these, not the attributes above
        self._request_dict["argsrepr"] = self._argsrepr
        self._request_dict["kwargsrepr"] = self._kwargsrepr

    def info(self, safe: bool = False) -> dict:
        # Remote control asks with safe=False (reserved, scheduled, query_task, active by default),
        # which would answer the raw kwargs: always answer the reprs.
        return super().info(safe=True)


@app.task(name="vexora.checkout.submit", autoretry_for=_REDIS_DOWN, retry_backoff=True,
          max_retries=8, ignore_result=True)
def submit(trade_no: str) -> str | None:
    """Submit one stored job to the gateway (internal; messages carry only the tradeNo)."""
    return get_runtime().submitter.submit(trade_no)


@app.task(name="vexora.checkout.enqueue", Request=PayloadHidingRequest, autoretry_for=_REDIS_DOWN,
          retry_backoff=True, max_retries=8, ignore_result=False)
def enqueue(account: str | None = None, **payload) -> dict:
    """What ``enqueue_checkout`` does, for producers in other languages: the payload as keyword
    arguments, and the job's merchant ``account`` as the keyword ``account`` (a message without
    it, as every message before accounts, is for ``default``)."""
    try:
        trade_no = client.enqueue_checkout(payload, account=account, runtime=get_runtime())
    except InvalidError as exc:
        event(log, logging.WARNING, "enqueue_refused", reason=exc.message)  # the rule, never the values
        return {"tradeNo": None, "error": exc.message, "errors": exc.errors}
    return {"tradeNo": trade_no}


@app.task(name="vexora.callback.process", autoretry_for=_REDIS_DOWN, retry_backoff=True,
          max_retries=8, ignore_result=True)
def process_callback(fields: dict) -> str:
    """Apply one verified gateway callback (queued by the web endpoint) exactly once."""
    return get_runtime().callbacks.apply(fields)


@app.task(name="vexora.reconcile", ignore_result=True)
def reconcile() -> dict:
    """Settle unknown and stale jobs by querying the gateway; re-drive stuck submits."""
    return get_runtime().reconciler.run()


@app.task(name="vexora.webhooks.dispatch", ignore_result=True)
def dispatch_webhooks() -> dict:
    """Fan recorded events out to the endpoints and hand out the due deliveries (beat, every second)."""
    return get_runtime().webhook_dispatcher.run()


@app.task(name="vexora.webhooks.deliver", autoretry_for=_REDIS_DOWN, retry_backoff=True, max_retries=8,
          ignore_result=True)
def deliver_webhooks(members: list) -> dict:
    """POST some due deliveries of one endpoint (messages carry ids only, never the event)."""
    return get_runtime().webhook_deliverer.deliver([str(m) for m in members])
