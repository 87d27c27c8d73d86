"""RabbitMQ's dead letters: what ``<queue>.dead`` holds, and putting it back (``vexora-checkout
dead-letters [--requeue]``).

A quorum queue dead-letters a message delivered ``VEXORA_BROKER_DELIVERY_LIMIT`` times without an
acknowledgement (its workers kept dying on it), one a worker rejected (malformed, unknown task)
and one that expired (beat's ticks carry ``expires``). Each keeps its body and headers, and
RabbitMQ adds ``x-death`` saying why. Listing reads every message and gives it back (the dead
queues are classic queues: no delivery limit of their own). ``--requeue`` publishes each one
back to its queue (confirmed) and only then removes it; expired beat ticks are dropped instead
(the next tick has replaced them).

Jobs do not depend on it: a checkout whose submit message is dead is ``queued`` or
``submitting`` in the store, and the reconciler re-drives it (``VEXORA_QUEUED_REDRIVE_AFTER``,
the lease); a lost callback message is made good by the reconciler's query of ``paying`` jobs,
and a webhook delivery by the outbox's claim timeout. What only the dead letter has is a
``vexora.checkout.enqueue`` message from a foreign producer (docs/producers.md), whose payload
is nowhere else.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from kombu import Producer

from worker.celery import QUEUES, dead_letter_queue, dead_letter_queues
from worker.logs import event

__all__ = ["DeadQueue", "inspect", "requeue"]

log = logging.getLogger("vexora.deadletters")


@dataclass
class DeadQueue:
    name: str
    messages: int = 0
    reasons: Counter = field(default_factory=Counter)  # delivery_limit, rejected, expired
    tasks: Counter = field(default_factory=Counter)
    requeued: int = 0
    dropped_expired: int = 0

    def line(self) -> str:
        parts = [f"{self.name}: {self.messages}"]
        if self.reasons:
            parts.append("reasons " + ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.items())))
        if self.tasks:
            parts.append("tasks " + ", ".join(f"{k}={v}" for k, v in sorted(self.tasks.items())))
        return "  ".join(parts)


def _reason(message) -> str:
    headers = message.headers or {}
    deaths = headers.get("x-death") or []
    if headers.get("x-first-death-reason"):
        return str(headers["x-first-death-reason"])
    return str(deaths[0].get("reason")) if deaths else "unknown"


def _each(app, handle) -> list[DeadQueue]:
    """Every message of every dead-letter queue, handed to ``handle(queue_name, message)``; the
    ones it does not acknowledge go back when the channel closes."""
    found = []
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=3)
        channel = conn.channel()
        try:
            for queue in dead_letter_queues():
                bound = queue.bind(channel)
                bound.declare()
                dead = DeadQueue(queue.name)
                found.append(dead)
                while (message := bound.get(no_ack=False)) is not None:
                    dead.messages += 1
                    dead.reasons[_reason(message)] += 1
                    dead.tasks[(message.headers or {}).get("task", "?")] += 1
                    handle(conn, dead, message)
        finally:
            channel.close()  # every message not acknowledged is back in its queue
    return found


def inspect(app) -> list[DeadQueue]:
    """What each dead-letter queue holds (read, then given back untouched)."""
    return _each(app, lambda conn, dead, message: None)


def requeue(app) -> list[DeadQueue]:
    """Put every dead letter back on its queue (expired beat ticks: dropped); what was done."""
    origin = {dead_letter_queue(name): name for name in QUEUES}
    producers: dict[int, Producer] = {}

    def back(conn, dead, message) -> None:
        if _reason(message) == "expired":
            message.ack()
            dead.dropped_expired += 1
            return
        producer = producers.get(id(conn))
        if producer is None:
            producer = producers[id(conn)] = Producer(conn.default_channel)
        target = origin[dead.name]
        props = message.properties or {}
        producer.publish(message.body, exchange=target, routing_key=target,
                         content_type=message.content_type, content_encoding=message.content_encoding,
                         headers=message.headers, delivery_mode=2,
                         **{k: props[k] for k in ("correlation_id", "reply_to", "priority") if props.get(k)})
        message.ack()  # only once RabbitMQ confirmed the publish (confirm_publish)
        dead.requeued += 1
    found = _each(app, back)
    for dead in found:
        if dead.requeued or dead.dropped_expired:
            event(log, logging.WARNING, "dead_letters_requeued", queue=dead.name, requeued=dead.requeued,
                  dropped_expired=dead.dropped_expired)
    return found
