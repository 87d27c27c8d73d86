"""The audit stream against a real Redis (worker/store/audit.py)."""

from __future__ import annotations

import pytest
import redis

from worker.domain import access
from worker.domain.access import Principal
from worker.store.audit import AuditLog, is_entry_id
from worker.store.keys import Keys
from worker.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture()
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    for key in c.scan_iter("audit-test-*"):
        c.delete(key)


def test_entries_are_read_newest_first_with_who_what_and_before_after(client):
    log = AuditLog(client, Keys("audit-test-1"))
    alice = Principal("operator", "alice", "*", access.role_scopes("operator"), "operator")
    log.record(alice, "review.resolve", target="T1", account="shop-a", address="10.0.0.9",
               before={"state": "unknown"}, after={"state": "succeeded"})
    log.record(None, "login.failed", target="mallory", address="10.0.0.66")
    entries = log.read()
    assert [e["action"] for e in entries] == ["login.failed", "review.resolve"]
    first = entries[1]
    assert first["actor"] == "operator:alice" and first["address"] == "10.0.0.9"
    assert first["before"] == {"state": "unknown"} and first["after"] == {"state": "succeeded"}
    assert entries[0]["actor"] == "anonymous" and entries[0]["before"] is None
    assert [e["action"] for e in log.read(account="shop-b")] == ["login.failed"]
    since = int(entries[0]["id"].split("-")[0])  # the stream's own clock orders and selects
    assert "login.failed" in [e["action"] for e in log.read(since_ms=since)]
    assert [e["action"] for e in log.read(until_ms=since - 1)] in ([], ["review.resolve"])
    assert [e["action"] for e in log.read(limit=1, before_id=entries[0]["id"])] == ["review.resolve"]


def test_entries_older_than_the_retention_are_trimmed_as_new_ones_arrive(client):
    log = AuditLog(client, Keys("audit-test-2"))
    log.retention_ms = 300  # a day is DAY_MS; here 0.3 s, so the test need not wait a day
    for i in range(300):
        log.record(None, "login.failed", target=f"n{i}")
    last = int(log.read(limit=1)[0]["id"].split("-")[0])
    wait_until(lambda: client.time()[0] * 1000 + client.time()[1] // 1000 > last + 2 * log.retention_ms,
               timeout=5, what="the first entries to be older than the retention")
    log.record(None, "login.failed", target="late")
    # MINID ~ trims whole nodes: every entry older than the retention is gone, none newer
    kept = [e["target"] for e in log.read(limit=1000)]
    assert kept[0] == "late" and len(kept) < 301
    assert client.xlen("audit-test-2:audit") == len(kept)


def test_reading_at_the_edges_of_the_id_space_never_reaches_redis_with_a_bad_range(client):
    log = AuditLog(client, Keys("audit-test-3"))
    log.record(None, "login.failed", target="x")
    assert log.read(until_ms=0) == []  # until the epoch: nothing (0 is a bound, not "no bound")
    assert log.read(before_id="0-0") == []  # nothing is older than the first entry
    assert [e["target"] for e in log.read(before_id=f"{2 ** 64 - 1}-{2 ** 64 - 1}")] == ["x"]
    for bad in (f"{2 ** 64}-0", "1-2\n", "１-2", "-", "1"):
        assert not is_entry_id(bad)
        with pytest.raises(ValueError):
            log.read(before_id=bad)
