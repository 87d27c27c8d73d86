"""The naive peer: the simplest Celery worker that could create Vexora checkouts.

What a competent engineer writes in an afternoon, and what table 1 of BENCHMARKS.md measures
the pipeline against: one Celery task that takes the checkout's fields, adds ``notifyUrl``, a
``timestamp`` and the MD5 ``sign`` (``worker.gateway.signing``, so the gateway accepts it; signed
exactly like ``worker.gateway.client.GatewayClient.signed``, tests/unit/test_naive_peer.py checks
it) and POSTs them to the gateway's checkout endpoint with ``requests``, retried by tenacity on
transient errors (a connection error, a 5xx, a 429). It does nothing else: no job store, no lease,
no validation, no counted attempt, no history, no result, no metrics; a job whose send fails for
good, or that the gateway refuses, is simply lost.

Celery is configured the plain way: Redis (``REDIS_URL``, the same Redis as the pipeline's) as
the broker, JSON only, ``task_ignore_result``, task events on (``worker_send_task_events``, what
Flower needs, as the pipeline's workers have); everything else is Celery's default — early acks,
``worker_prefetch_multiplier`` 4, the worker heartbeat event every 2 s. It is started like the
pipeline's workers: ``celery -A bench.naive_app worker -Q naive --pool threads -c N`` (``bench.procs``'
``Bench.start_naive``). One ``requests.Session`` per worker thread (keep-alive), as any engineer
who read the requests docs would: a new connection per request would only make the peer slower.

Settings from the environment, as the pipeline's: ``REDIS_URL``, ``VEXORA_BASE_URL``,
``VEXORA_MERCHANT_NO``, ``VEXORA_APP_SECRET``, ``VEXORA_NOTIFY_URL``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping

import requests
from celery import Celery
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from worker.gateway.signing import sign

__all__ = ["app", "make_app", "checkout", "signed_body", "QUEUE", "TASK", "CHECKOUT_PATH"]

QUEUE = "naive"
TASK = "bench.naive.checkout"
CHECKOUT_PATH = "/v1/vexora/checkout"  # docs/gateway.md §Create a checkout



def make_app(broker_url: str) -> Celery:
    """The peer's Celery app on ``broker_url``: its worker's, or a producer's (``send_task``)."""
    celery_app = Celery("naive", broker=broker_url)
    celery_app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        worker_send_task_events=True,
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
    )
    return celery_app


app = make_app(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


class Transient(Exception):
    """A 5xx or 429 answer: worth sending again."""


def signed_body(fields: Mapping[str, object], secret: str, now: float | None = None) -> dict:
    """The fields without empty values, a fresh ``timestamp`` (ms) and their ``sign``."""
    body = {k: v for k, v in fields.items() if k not in {"sign", "timestamp"} and v not in (None, "")}
    body["timestamp"] = str(int((time.time() if now is None else now) * 1000))
    body["sign"] = sign(body, secret)
    return body


_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        session.headers.update({"merchantNo": os.environ["VEXORA_MERCHANT_NO"],
                                "Content-Type": "application/json"})
    return session


@retry(retry=retry_if_exception_type((requests.ConnectionError, Transient)),
       wait=wait_exponential_jitter(multiplier=0.5, max=8), stop=stop_after_attempt(5), reraise=True)
def _post(fields: Mapping[str, object]) -> dict:
    body = signed_body(fields, os.environ["VEXORA_APP_SECRET"])  # signed anew for each try
    reply = _session().post(os.environ["VEXORA_BASE_URL"].rstrip("/") + CHECKOUT_PATH,
                            data=json.dumps(body, ensure_ascii=False).encode("utf-8"), timeout=30)
    if reply.status_code == 429 or reply.status_code >= 500:
        raise Transient(reply.status_code)
    return reply.json()


@app.task(name=TASK, ignore_result=True)
def checkout(**fields) -> None:
    _post({**fields, "notifyUrl": os.environ["VEXORA_NOTIFY_URL"]})
