"""The console's search indexes (issue 22) on a real redis-server: filled in the create's and the
move's own step, and emptied of a job once it has outlived the TTL — they do not grow forever."""

from __future__ import annotations

import uuid

import pytest
import redis

from worker.domain import states
from worker.store.jobs import JobStore
from worker.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    prefix = f"ci{uuid.uuid4().hex[:8]}"
    yield c, prefix
    for key in c.scan_iter(f"{prefix}:*"):
        c.delete(key)


def job(store: JobStore, platform: str) -> str:
    trade_no = uuid.uuid4().hex[:16]
    store.create(trade_no, {"tradeNo": trade_no, "amount": "300"}, contact={}, amount="300")
    assert store.move(trade_no, states.SUBMITTING, claim_lease=60).applied
    assert store.move(trade_no, states.PAYING, fields={"paymentLink": "L", "platFormTradeNo": platform}).applied
    return trade_no


def test_a_job_is_found_by_either_id_and_forgotten_by_the_indexes_once_past_the_ttl(client):
    c, prefix = client
    store = JobStore(c, prefix=prefix, ttl_seconds=1)
    old = job(store, "PLAT-OLD-1")
    assert store.search("PLAT-OLD") == [old] and store.search(old[:6]) == [old]
    created_at = store.server_now_ms()
    wait_until(lambda: store.server_now_ms() > created_at + 1500, timeout=5, what="the first job to outlive the TTL")
    new = job(store, "PLAT-NEW-1")  # its create trims what has outlived the TTL
    assert store.search("PLAT-") == [new]
    assert store.search(old) == [] and store.search("PLAT-OLD") == []
    keys = store.keys
    assert c.zcard(keys.jobs_created) == c.zcard(keys.jobs_names) == c.zcard(keys.jobs_platform) == 1
    assert c.hkeys(keys.jobs_platform_of) == [new.encode()]
