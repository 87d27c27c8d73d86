"""The worker's Celery consumer, sending task events in batches (``worker_consumer``).

With task events on (for Flower), Celery's worker buffers each task event and asks its event loop
to publish the buffer at once: in practice one broker message per one or two events, about a
tenth of a worker's CPU per job (BENCHMARKS.md). This consumer publishes the buffer at most every
``EVENTS_FLUSH_INTERVAL`` seconds instead — one message for every event of that interval, Flower
sees them that much later — and still at once whenever Celery's own buffer limit (24) is reached.
It also keeps the payload of a message Celery rejects (malformed, undecodable, unknown) out of
the worker's log: Celery would print its body and headers, which for ``vexora.checkout.enqueue``
are the payer's data.
"""

from __future__ import annotations

import logging

from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.consumer import consumer as celery_consumer

__all__ = ["Consumer", "EVENTS_FLUSH_INTERVAL", "RejectedMessageFilter"]

EVENTS_FLUSH_INTERVAL = 0.1

HIDDEN = "<hidden: a rejected message may carry payer data>"

# Celery logs the whole body (and the headers, whose kwargsrepr repeats it) of a message it
# rejects: malformed, undecodable, of an unknown task or format. For vexora.checkout.enqueue that
# is the payer's data. Which arguments of each of its templates carry them (by position):
_REDACT = {
    celery_consumer.UNKNOWN_FORMAT: (0,),            # (report of body and headers,)
    celery_consumer.UNKNOWN_TASK_ERROR: (1, 2),      # (exc, body, headers, delivery_info)
    celery_consumer.INVALID_TASK_ERROR: (1,),        # (exc, body)
    celery_consumer.MESSAGE_DECODE_ERROR: (3, 4),    # (exc, content_type, encoding, headers, body)
}


class RejectedMessageFilter(logging.Filter):
    """Replaces the body and headers in Celery's log lines about rejected messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        positions = _REDACT.get(record.msg)
        if positions and isinstance(record.args, tuple):
            record.args = tuple(HIDDEN if i in positions else arg for i, arg in enumerate(record.args))
        return True


def install_log_filter() -> None:
    """Once per process: the filter on the logger Celery's consumer writes those lines to."""
    logger = logging.getLogger(celery_consumer.__name__)
    if not any(isinstance(f, RejectedMessageFilter) for f in logger.filters):
        logger.addFilter(RejectedMessageFilter())


class Consumer(CeleryConsumer):
    _events_flush_due = False

    def __init__(self, *args, **kwargs):
        install_log_filter()
        super().__init__(*args, **kwargs)

    def connection_for_write(self, url=None, heartbeat=None):
        # The connection task events go out on (Celery's Events step; nothing else here uses it).
        # With RabbitMQ, without publisher confirms: an event is for Flower, best effort (Celery
        # sends it transient), and waiting for a confirm in this consumer's event loop, after the
        # delayed flush below, stalled the worker's task consumer (prefetched messages never
        # handled; tests/integration/test_rabbitmq.py). Tasks are still published with confirms.
        conn = self.app.connection_for_write(url=url, heartbeat=heartbeat)
        if conn.transport.driver_type == "amqp" and conn.transport_options.get("confirm_publish"):
            conn = conn.clone(transport_options={**conn.transport_options, "confirm_publish": False})
        return self.ensure_connected(conn)

    def on_send_event_buffered(self) -> None:
        # Called from any thread, for every buffered event: wake the event loop only once per
        # interval. (Without an event loop Celery sends each event at once and never calls this.)
        if self.hub is not None and not self._events_flush_due:
            self._events_flush_due = True
            self.hub.call_soon(self._flush_events_later)

    def _flush_events_later(self) -> None:
        # in the event loop's thread: its timers are not thread-safe
        self.hub.call_later(EVENTS_FLUSH_INTERVAL, self._flush_events_now)

    def _flush_events_now(self) -> None:
        self._events_flush_due = False
        self._flush_events()
