"""The worker's Celery consumer, sending task events in batches (``worker_consumer``).

With task events on (for Flower), Celery's worker buffers each task event and asks its event loop
to publish the buffer at once: in practice one broker message per one or two events, about a
tenth of a worker's CPU per job (BENCHMARKS.md). This consumer publishes the buffer at most every
``EVENTS_FLUSH_INTERVAL`` seconds instead — one message for every event of that interval, Flower
sees them that much later — and still at once whenever Celery's own buffer limit (24) is reached.
"""

from __future__ import annotations

from celery.worker.consumer import Consumer as CeleryConsumer

__all__ = ["Consumer", "EVENTS_FLUSH_INTERVAL"]

EVENTS_FLUSH_INTERVAL = 0.1


class Consumer(CeleryConsumer):
    _events_flush_due = False

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
