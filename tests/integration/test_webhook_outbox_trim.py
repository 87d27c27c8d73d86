"""Issue 20, finding 3 and part of 9, over a real Redis: the streams are trimmed only below what
every consumer group has read and acknowledged (and the outbox not within its replay horizon), a
dispatcher pass drains a whole backlog, the outbox's lag is a metric, a refused event stays
replayable, and a webhook's id comes from (tradeNo, sequence) — a change recorded twice (a
failover re-applying it) reaches the receiver with one id."""

from __future__ import annotations

import json
import time

import pytest
import requests

from worker.ops.metrics import StoreCollector
from worker.store.jobs import JobStore
from worker.store.streams import StreamTrimmer, readers
from worker.waiting import wait_until
from worker.webhooks.delivery import Deliverer
from worker.webhooks.endpoints import Endpoints
from worker.webhooks.outbox import Dispatcher
from tests.integration.conftest import prefixed_client
from tests.support.stack import payload

pytestmark = pytest.mark.integration

PREFIX = "trim-test"
MAXLEN = 10  # small: today's XADD ... MAXLEN ~ 10 would trim the unread entries


@pytest.fixture
def client(redis_url):
    yield from prefixed_client(redis_url, PREFIX)


class Clock:
    def __init__(self):
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


def _flagged_jobs(store: JobStore, n: int) -> list[str]:
    """n jobs, each created (an entry of p:events, create.lua) and flagged (one more, flag.lua,
    and a checkout.needs_review event in the outbox)."""
    trade_nos = []
    for i in range(n):
        trade_no = f"TRIM{i:05d}"
        store.create(trade_no, payload(tradeNo=trade_no), contact={})
        assert store.flag(trade_no, "a test")
        trade_nos.append(trade_no)
    return trade_nos


def _wiring(client, clock, receiver=None, *, replay_seconds=3600.0):
    endpoints = Endpoints(client, PREFIX, allow_private=True, rotation_grace=60, clock=clock)
    if receiver is not None:
        endpoints.add(receiver.base + "/webhooks", secret=receiver.secret)
    else:
        endpoints.add("http://127.0.0.1:9/nobody")
    sent: list[list[str]] = []
    dispatcher = Dispatcher(client, PREFIX, endpoints, sent.append, clock=clock, events_maxlen=MAXLEN,
                            replay_seconds=replay_seconds)
    return endpoints, dispatcher, sent


def test_a_backlog_far_over_the_cap_is_kept_until_read_then_one_pass_drains_it(client):
    clock = Clock()
    endpoints, dispatcher, sent = _wiring(client, clock)
    store = JobStore(client, prefix=PREFIX, events_maxlen=MAXLEN, clock=clock)
    dispatcher.fan_out(1)  # the dispatcher's consumer group exists (it read nothing yet)
    client.xgroup_create(store.keys.events, "app", id="0", mkstream=True)  # an app's EventConsumer, behind
    trade_nos = _flagged_jobs(store, 1300)  # far over MAXLEN, and over two of a pass's batches
    # nothing unread is trimmed: not when written (today's XADD MAXLEN ~ did), not by a trim pass
    assert client.xlen(dispatcher.outbox) == 1300
    assert client.xlen(store.keys.events) == 2600
    assert dispatcher.trim() == 0
    assert client.xlen(dispatcher.outbox) == 1300 and client.xlen(store.keys.events) == 2600
    lag = {r["group"]: r for r in readers(client, dispatcher.outbox)}
    assert lag["dispatch"]["unread"] == 1300 and lag["dispatch"]["oldestUnreadMs"] <= time.time() * 1000

    # one pass reads the whole backlog (three batches of 500), not one batch
    result = dispatcher.run(limit=500)
    assert result["events"] == 1300 and result["handed_out"] == 1300
    assert {m.split("|")[0] for batch in sent for m in batch} == {
        e[0].decode() for e in client.xrange(dispatcher.outbox)}
    assert readers(client, dispatcher.outbox)[0]["unread"] == 0
    # the outbox keeps everything younger than its replay horizon, read or not
    assert client.xlen(dispatcher.outbox) == 1300
    # p:events: read by nobody in the group "app" yet: kept whole
    assert client.xlen(store.keys.events) == 2600

    # the app reads and acknowledges 2000 entries: the trim goes down to what it has not
    # acknowledged, never below, and keeps the newest MAXLEN
    read = client.xreadgroup("app", "c1", {store.keys.events: ">"}, count=2000)[0][1]
    client.xack(store.keys.events, "app", *[i for i, _ in read[:1500]])  # 500 delivered, not acknowledged
    dispatcher.trim()
    first = client.xrange(store.keys.events, count=1)[0][0]
    assert first == read[1500][0] and client.xlen(store.keys.events) == 1100
    client.xack(store.keys.events, "app", *[i for i, _ in read[1500:]])
    client.xreadgroup("app", "c1", {store.keys.events: ">"})
    client.xack(store.keys.events, "app", *[i for i, _ in client.xrange(store.keys.events)])
    dispatcher.trim()
    assert client.xlen(store.keys.events) == MAXLEN  # all read: capped as before

    # past the replay horizon, the read outbox is capped too
    clock.now += 3600 + 60
    dispatcher.trim()
    assert client.xlen(dispatcher.outbox) == MAXLEN
    assert trade_nos  # (every one fanned out above)


def test_a_stream_no_group_reads_is_capped_at_maxlen(client):
    store = JobStore(client, prefix=PREFIX, events_maxlen=MAXLEN)
    for i in range(50):
        store.note(f"NOTE{i}", "orphan_callback")  # jobs.py's XADD: no cap of its own any more
    assert client.xlen(store.keys.events) == 50
    removed, held = StreamTrimmer(client, batch=7).trim(store.keys.events, MAXLEN)
    assert removed == 40 and held == "count" and client.xlen(store.keys.events) == MAXLEN


def test_the_outbox_lag_is_a_metric(client):
    clock = Clock()
    endpoints, dispatcher, _ = _wiring(client, clock)
    store = JobStore(client, prefix=PREFIX, events_maxlen=MAXLEN, clock=clock)
    dispatcher.fan_out(1)
    _flagged_jobs(store, 3)
    collector = StoreCollector(store, clock=lambda: clock.now + 120)
    families = {f.name: f for f in collector.collect()}
    unread = {tuple(s.labels.values()): s.value for s in families["vexora_stream_unread_entries"].samples}
    age = {tuple(s.labels.values()): s.value for s in families["vexora_stream_oldest_unread_age_seconds"].samples}
    assert unread[("webhooks", "dispatch")] == 3
    assert 119 <= age[("webhooks", "dispatch")] <= 121
    dispatcher.run()
    families = {f.name: f for f in collector.collect()}
    assert [s.value for s in families["vexora_stream_unread_entries"].samples] == [0]
    assert [s.value for s in families["vexora_stream_oldest_unread_age_seconds"].samples] == [0]


def test_an_event_refused_for_good_stays_replayable_for_the_horizon_whatever_came_after(client, receiver):
    """A 400 fails the delivery at once; hundreds of later events (over the cap) are dispatched and
    the streams trimmed; the refused event is still replayed and delivered. Past the replay
    horizon (here an hour) it is gone."""
    clock = Clock()
    http = requests.Session()
    endpoints, dispatcher, sent = _wiring(client, clock, receiver, replay_seconds=3600)
    deliverer = Deliverer(dispatcher, endpoints, schedule=(5, 300), timeout=5, disable_after=10 ** 9,
                          allow_private=True, clock=clock)
    store = JobStore(client, prefix=PREFIX, events_maxlen=MAXLEN, clock=clock)
    http.post(receiver.base + "/_receiver/faults", json={"fail_first": 1, "status": 400}, timeout=5)
    since_ms = int(time.time() * 1000)  # entry ids are Redis's time
    refused = _flagged_jobs(store, 1)[0]
    until_ms = int(time.time() * 1000)
    wait_until(lambda: time.time() * 1000 > until_ms + 1, timeout=1, interval=0.001, what="the next ms")
    dispatcher.run()
    members = [m for batch in sent for m in batch]
    assert deliverer.deliver(members) == {"failed": 1}
    http.delete(receiver.base + "/_receiver/faults", timeout=5)
    later = JobStore(client, prefix=PREFIX, events_maxlen=MAXLEN, clock=clock)
    for i in range(300):
        trade_no = f"LATER{i:04d}"
        later.create(trade_no, payload(tradeNo=trade_no), contact={})
        later.flag(trade_no, "a test")
    sent.clear()
    dispatcher.run()
    assert client.xlen(dispatcher.outbox) == 301  # all read; all within the horizon
    # the operator fixes the receiver and replays the window of the refused event
    assert dispatcher.replay(since_ms, until_ms) == 1
    sent.clear()
    dispatcher.run()
    members = [m for batch in sent for m in batch]
    assert deliverer.deliver(members) == {"delivered": 1}
    events = http.get(receiver.base + "/_receiver/events", timeout=5).json()
    assert [(e["tradeNo"], e["type"]) for e in events] == [(refused, "checkout.needs_review")]
    # the horizon passed: read entries older than it may go (the newest MAXLEN stay)
    clock.now += 3600 + 60  # (entry ids are Redis's time, a little after the clock's start)
    dispatcher.trim()
    assert client.xlen(dispatcher.outbox) == MAXLEN
    assert dispatcher.replay(since_ms, until_ms) == 0


def test_a_change_recorded_twice_reaches_the_receiver_with_one_webhook_id(client, receiver):
    """After a failover a change the new master never had is applied again: a new outbox entry,
    the same job sequence. Receivers dedupe by webhook-id: it must be the same."""
    clock = Clock()
    http = requests.Session()
    endpoints, dispatcher, sent = _wiring(client, clock, receiver)
    deliverer = Deliverer(dispatcher, endpoints, schedule=(5,), timeout=5, disable_after=10 ** 9,
                          allow_private=True, clock=clock)
    record = json.dumps(["tradeNo", "T9", "state", "succeeded", "webhookSeq", "2"])
    for _ in range(2):  # the change, and the same change re-applied
        client.xadd(dispatcher.outbox, {"type": "checkout.succeeded", "tradeNo": "T9", "sequence": 2,
                                        "at": int(clock.now * 1000), "record": record})
    dispatcher.run()
    members = [m for batch in sent for m in batch]
    assert len(members) == 2
    assert deliverer.deliver(members) == {"delivered": 2}
    events = http.get(receiver.base + "/_receiver/events", timeout=5).json()
    assert [e["webhook_id"] for e in events] == ["msg_T9_2", "msg_T9_2"]
    assert http.get(receiver.base + "/_receiver/stats", timeout=5).json()["duplicates"] == 1
    assert {a["webhookId"] for a in dispatcher.attempts("T9")} == {"msg_T9_2"}


def test_endpoint_disabled_names_the_endpoint_by_id_only(client, receiver):
    clock = Clock()
    http = requests.Session()
    endpoints = Endpoints(client, PREFIX, allow_private=True, rotation_grace=60, clock=clock)
    secret_url = receiver.base + "/webhooks?token=RECEIVER-TOKEN-5150"
    gone = endpoints.add(secret_url, secret=receiver.secret)
    other = endpoints.add(receiver.base + "/webhooks", secret=receiver.secret, types=["webhook.endpoint_disabled"])
    sent: list[list[str]] = []
    dispatcher = Dispatcher(client, PREFIX, endpoints, sent.append, clock=clock)
    deliverer = Deliverer(dispatcher, endpoints, schedule=(5,), timeout=5, disable_after=10 ** 9,
                          allow_private=True, clock=clock)
    http.post(receiver.base + "/_receiver/faults", json={"gone_once": True}, timeout=5)
    client.xadd(dispatcher.outbox, {"type": "checkout.paying", "tradeNo": "T1", "sequence": 1,
                                    "at": int(clock.now * 1000), "record": json.dumps(["tradeNo", "T1"])})
    dispatcher.run()
    assert deliverer.deliver([m for b in sent for m in b]) == {"gone": 1}
    sent.clear()
    dispatcher.run()
    members = [m for b in sent for m in b]
    assert [m.split("|")[1] for m in members] == [other["id"]]
    event_id = members[0].split("|")[0]
    body = json.loads(client.get(dispatcher.body_key(event_id)))
    assert body["type"] == "webhook.endpoint_disabled"
    assert body["data"]["endpointId"] == gone["id"] and "url" not in body["data"]
    stored = repr(client.xrange(dispatcher.outbox)) + json.dumps(body)
    assert "RECEIVER-TOKEN-5150" not in stored and "/webhooks" not in json.dumps(body["data"])
    assert deliverer.deliver(members) == {"delivered": 1}
    # its webhook-id is its own and stable: the endpoint and when it was disabled
    disabled_at = endpoints.get(gone["id"])["disabledAt"]
    events = http.get(receiver.base + "/_receiver/events", timeout=5).json()
    assert events[-1]["webhook_id"] == f"msg_endpoint_disabled_{gone['id']}_{disabled_at}"


def test_a_pass_trims_at_most_every_trim_every_seconds_and_a_trim_still_keeps_the_unread(client):
    """A pass trims when its process has not trimmed for ``trim_every`` seconds (its first pass
    does); the passes in between leave the streams to a later trim, which removes what they would
    have, and never an entry still unread."""
    clock = Clock()
    endpoints = Endpoints(client, PREFIX, allow_private=True, rotation_grace=60, clock=clock)
    endpoints.add("http://127.0.0.1:9/nobody")
    dispatcher = Dispatcher(client, PREFIX, endpoints, lambda members: None, clock=clock, events_maxlen=MAXLEN,
                            replay_seconds=1, trim_every=3600)
    store = JobStore(client, prefix=PREFIX, events_maxlen=MAXLEN, clock=clock)

    def jobs(first: int, n: int) -> None:  # n jobs: n outbox entries, 2n of p:events (no group reads it)
        for i in range(first, first + n):
            store.create(f"EVERY{i:04d}", payload(tradeNo=f"EVERY{i:04d}"), contact={})
            assert store.flag(f"EVERY{i:04d}", "a test")

    jobs(0, 30)
    clock.now += 5  # past the replay horizon (a second), within the deliveries' claims (a minute)
    assert dispatcher.run() == {"events": 30, "handed_out": 30, "trimmed": 20 + 50}  # the first pass trims
    assert client.xlen(dispatcher.outbox) == MAXLEN and client.xlen(store.keys.events) == MAXLEN
    jobs(30, 30)
    clock.now += 5
    assert dispatcher.run() == {"events": 30, "handed_out": 30, "trimmed": 0}  # not yet time
    assert client.xlen(dispatcher.outbox) == MAXLEN + 30 and client.xlen(store.keys.events) == MAXLEN + 60
    jobs(60, 15)  # not read by the dispatcher yet
    assert dispatcher.trim() == 40 + 90  # the outbox down to its first unread entry, p:events to MAXLEN
    assert client.xlen(dispatcher.outbox) == 15 and client.xlen(store.keys.events) == MAXLEN
    dispatcher.trim_every = 0
    assert dispatcher.run() == {"events": 15, "handed_out": 15, "trimmed": 5}  # read now; every pass trims
