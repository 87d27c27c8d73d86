"""Following job events from Python, without HTTP: for a merchant app in the same Celery world.

Every change of state (and every flag for review) is an entry of the Redis stream
``<prefix>:events`` (``JobStore``): ``{tradeNo, from, to, at, detail}``. ``EventConsumer`` reads
it with a consumer group, so several processes of one app share the work, each entry reaches the
app once, and an entry a crashed process took is handed to another after ``claim_after``
seconds; acknowledge an entry once it is handled::

    consumer = EventConsumer(redis.Redis.from_url(REDIS_URL), group="shop")
    for event_id, event in consumer.read(block_ms=5000):
        if event["to"] == "succeeded":
            ship(event["tradeNo"])
        consumer.ack(event_id)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import redis

from worker.store.keys import Keys

__all__ = ["EventConsumer"]


class EventConsumer:
    """Reads ``<prefix>:events`` in a consumer group; at least once, acknowledged by the app."""

    def __init__(self, client: redis.Redis, group: str, *, consumer: str | None = None,
                 prefix: str = "vexora", start: str = "$", claim_after: float = 60.0):
        self.redis = client
        self.stream = Keys(prefix).events
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.claim_after_ms = int(claim_after * 1000)
        try:
            # "$": only what happens from now on; "0": the stream's whole (capped) past
            client.xgroup_create(self.stream, group, id=start, mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int = 100, block_ms: int | None = None) -> Iterator[tuple[str, dict]]:
        """Entries abandoned by a crashed consumer first, then new ones."""
        claimed = self.redis.xautoclaim(self.stream, self.group, self.consumer, self.claim_after_ms,
                                        start_id="0-0", count=count)
        rows = list(claimed[1]) if claimed else []
        if not rows:
            answer = self.redis.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=count,
                                           block=block_ms)
            rows = answer[0][1] if answer else []
        for event_id, fields in rows:
            if fields:
                yield _text(event_id), {_text(k): _text(v) for k, v in fields.items()}

    def ack(self, event_id: str) -> None:
        self.redis.xack(self.stream, self.group, event_id)


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
