"""Celery tasks: thin wrappers that load the runtime, call plain logic and map errors.

Task names and queues are public (DESIGN.md "Public interface"). Only errors we can name are
retried by Celery: a Redis outage while reading or writing the store.
"""

from __future__ import annotations

import logging

import redis
from celery.worker.request import Request

from worker import client
from worker.celery import app
from worker.errors import InvalidError
from worker.runtime import get_runtime

log = logging.getLogger("vexora.tasks")

_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class PayloadHidingRequest(Request):
    """Shows only the tradeNo of a payload in events and logs (Flower reads these)."""

    @property
    def argsrepr(self) -> str:
        return "()"

    @property
    def kwargsrepr(self) -> str:
        kwargs = self.kwargs if isinstance(self.kwargs, dict) else {}
        trade_no = kwargs.get("tradeNo")
        return repr({"tradeNo": trade_no if isinstance(trade_no, str) else None})


@app.task(name="vexora.checkout.submit", autoretry_for=_REDIS_DOWN, retry_backoff=True,
          max_retries=8, ignore_result=True)
def submit(trade_no: str) -> str | None:
    """Submit one stored job to the gateway (internal; messages carry only the tradeNo)."""
    return get_runtime().submitter.submit(trade_no)


@app.task(name="vexora.checkout.enqueue", Request=PayloadHidingRequest, autoretry_for=_REDIS_DOWN,
          retry_backoff=True, max_retries=8, ignore_result=False)
def enqueue(**payload) -> dict:
    """What ``enqueue_checkout`` does, for producers in other languages."""
    try:
        trade_no = client.enqueue_checkout(payload, runtime=get_runtime())
    except InvalidError as exc:
        log.warning("enqueue refused: %s", exc.message)
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
