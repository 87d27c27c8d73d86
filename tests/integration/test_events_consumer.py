"""Following the events stream from Python (issue 12): a consumer group over a real Redis."""

from __future__ import annotations

import pytest
import redis

from worker.domain import states
from worker.events import EventConsumer
from worker.store.jobs import JobStore
from worker.waiting import wait_until
from tests.support.stack import payload

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.delete("events-test:events")
    yield JobStore(client, prefix="events-test")
    client.close()


def test_each_event_reaches_the_group_once_and_a_crashed_consumers_come_back(store):
    first = EventConsumer(store.redis, "shop", consumer="a", prefix="events-test", claim_after=0.05)
    second = EventConsumer(store.redis, "shop", consumer="b", prefix="events-test", claim_after=0.05)
    job = payload()
    store.create(job["tradeNo"], job, contact={})
    store.move(job["tradeNo"], states.SUBMITTING, claim_lease=60)
    store.move(job["tradeNo"], states.PAYING)
    taken = list(first.read(count=2))  # "a" takes two and dies without acknowledging
    assert [e["to"] for _, e in taken] == ["queued", "submitting"]
    rest = list(second.read(count=10))
    assert [e["to"] for _, e in rest] == ["paying"]
    for event_id, _ in rest:
        second.ack(event_id)
    # after claim_after, "b" gets what "a" left
    reclaimed = wait_until(lambda: list(second.read(count=10)), timeout=5, what="the abandoned entries")
    assert [e["to"] for _, e in reclaimed] == ["queued", "submitting"]
    for event_id, _ in reclaimed:
        second.ack(event_id)
    assert list(second.read(count=10, block_ms=10)) == []
