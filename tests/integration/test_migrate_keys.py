"""``vexora-checkout migrate-keys`` on a real Redis: the names from before the hash tags renamed,
TTLs kept, jobs in flight carried on by the store, and a second run renames nothing."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import redis

from worker.domain import states
from worker.store.jobs import JobStore
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(redis_url, tmp_path):
    client = redis.Redis.from_url(redis_url)
    prefix = f"mig{uuid.uuid4().hex[:8]}"
    env = Stack(redis_url, tmp_path, VEXORA_KEY_PREFIX=prefix).env  # the settings only: nothing started
    yield client, prefix, env
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


def _old(key: str, trade_no: str) -> str:
    """The name a key had before: ``{tradeNo}`` without its braces."""
    return key.replace(f"{{{trade_no}}}", trade_no)


def _migrate(env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worker.cli", "migrate-keys"], env=env, capture_output=True,
                          text=True, timeout=120)


def test_old_names_are_renamed_with_their_ttl_and_the_jobs_carry_on(setup):
    client, prefix, env = setup
    store = JobStore(client, prefix=prefix, ttl_seconds=3600, payload_retention=600)
    attempts = f"{prefix}:webhooks:attempts:"
    queued, paying, done = (uuid.uuid4().hex[:16] for _ in range(3))
    for trade_no in (queued, paying, done):
        store.create(trade_no, {"tradeNo": trade_no, "amount": "300"}, contact={}, amount="300")
    store.move(paying, states.SUBMITTING, claim_lease=60)
    store.move(paying, states.PAYING, drop=["payload"], fields={"paymentLink": "L"})  # payload -> retained
    store.move(done, states.REJECTED, detail={"reason": "test"})
    client.rpush(f"{attempts}{{{paying}}}", '{"attempt": 1}')
    client.rpush(f"{attempts}{{_endpoint_ep_1}}", '{"attempt": 1}')
    # the layout before the hash tags: the same keys under their old names (RENAME keeps the TTL)
    before: dict[str, tuple[str, int]] = {}
    for trade_no in (queued, paying, done):
        for key in (store.keys.job(trade_no), store.keys.history(trade_no), store.keys.payload(trade_no),
                    store.keys.retained(trade_no), f"{attempts}{{{trade_no}}}"):
            if client.exists(key):
                client.rename(key, _old(key, trade_no))
                before[_old(key, trade_no)] = (key, client.ttl(_old(key, trade_no)))
    client.rename(f"{attempts}{{_endpoint_ep_1}}", f"{attempts}_endpoint_ep_1")
    before[f"{attempts}_endpoint_ep_1"] = (f"{attempts}{{_endpoint_ep_1}}", -1)
    assert len(before) == 3 * 2 + 1 + 1 + 1 + 1 + 1  # hash and history each; 2 payloads, 1 retained; 2 attempts
    assert store.get(queued) is None  # not found under the new names until migrated

    first = _migrate(env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "renamed 11 keys, history 3, job 3, payload 2, retained 1, webhook attempts 2",
        "kept 0 (already under the new name), gone 0 (expired meanwhile)",
        "open or flagged job keys no longer expiring: 0"]
    for old, (new, ttl) in before.items():
        assert not client.exists(old) and client.exists(new), old
        assert ttl - 5 <= client.ttl(new) <= ttl, new  # the TTL came along
    assert store.get(paying)["state"] == states.PAYING
    assert [h["to"] for h in store.get(done)["history"]] == ["queued", "rejected"]
    assert store.move(queued, states.SUBMITTING, claim_lease=60).payload == {"tradeNo": queued, "amount": "300"}
    assert store.move(paying, states.SUCCEEDED).applied

    again = _migrate(env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == "renamed 0 keys"


def test_a_key_already_under_its_new_name_is_kept_not_overwritten(setup):
    client, prefix, env = setup
    store = JobStore(client, prefix=prefix, ttl_seconds=3600)
    trade_no = uuid.uuid4().hex[:16]
    store.create(trade_no, {"tradeNo": trade_no, "amount": "300"}, contact={})
    client.hset(_old(store.keys.job(trade_no), trade_no), mapping={"state": "queued", "tradeNo": "stale"})
    client.set(f"{prefix}:job:not a tradeNo", "x")  # not a name the store ever wrote: left alone
    done = _migrate(env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["renamed 0 keys",
                                        "kept 1 (already under the new name), gone 0 (expired meanwhile)",
                                        "open or flagged job keys no longer expiring: 0"]
    assert client.hget(store.keys.job(trade_no), "tradeNo") == trade_no.encode()
    assert client.exists(_old(store.keys.job(trade_no), trade_no), f"{prefix}:job:not a tradeNo") == 2


def test_open_and_flagged_jobs_written_with_a_ttl_by_older_versions_stop_expiring(setup):
    client, prefix, env = setup
    store = JobStore(client, prefix=prefix, ttl_seconds=3600)
    open_job, flagged, closed = (uuid.uuid4().hex[:16] for _ in range(3))
    for trade_no in (open_job, flagged, closed):
        store.create(trade_no, {"tradeNo": trade_no, "amount": "300"}, contact={}, amount="300")
    for trade_no in (flagged, closed):
        store.move(trade_no, states.REJECTED, detail={"reason": "test"})
    store.flag(flagged, "money for a rejected job")
    # what versions before issue 20 wrote: every job's keys with a TTL
    for trade_no in (open_job, flagged, closed):
        for key in (store.keys.job(trade_no), store.keys.history(trade_no), store.keys.payload(trade_no)):
            client.expire(key, 3600)
    done = _migrate(env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "open or flagged job keys no longer expiring: 6"  # 3 keys each
    for trade_no in (open_job, flagged):
        assert client.ttl(store.keys.job(trade_no)) == client.ttl(store.keys.history(trade_no)) == -1
    assert client.ttl(store.keys.payload(open_job)) == -1
    assert 0 < client.ttl(store.keys.job(closed)) <= 3600  # closed and not flagged: expires as before
