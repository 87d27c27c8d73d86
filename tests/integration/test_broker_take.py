"""The broker's one-step take (worker/runtime/broker.py, worker/store/lua/broker_take.lua): while a
queue has a backlog, a message is taken and registered as unacknowledged in one Lua step, and the
entry is kombu's own — acknowledged, and restored when not, exactly as kombu's BRPOP path's."""

from __future__ import annotations

import json
import os
import uuid

import pytest
import redis
from kombu import Connection, Exchange, Queue

pytestmark = pytest.mark.integration


def _calls(client: redis.Redis, command: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_backlog_is_taken_in_one_step_and_registered_as_kombu_does(redis_url):
    client = redis.Redis.from_url(redis_url)
    name = f"take-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name), name)
    conn = Connection(redis_url, transport="worker.runtime.broker:Transport")
    try:
        producer = conn.Producer()
        for n in range(4):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=name, declare=[queue],
                             serializer="json")
        got = []
        evals, brpops = _calls(client, "eval"), _calls(client, "brpop")
        with conn.Consumer(queue, callbacks=[lambda body, message: got.append((body, message))]):
            while len(got) < 4:
                conn.drain_events(timeout=5)
            assert [body["n"] for body, _ in got] == [0, 1, 2, 3]
            channel = got[0][1].channel
            # acknowledged while the take step runs: written by the next take, not on its own
            got[1][1].ack()
            assert client.hexists(channel.unacked_key, got[1][1].delivery_tag)
            producer.publish({"n": 4}, exchange=queue.exchange, routing_key=name, serializer="json")
            while len(got) < 5:
                conn.drain_events(timeout=5)
            assert not client.hexists(channel.unacked_key, got[1][1].delivery_tag)
            got[4][1].ack()
        # the first by BRPOP (kombu's path), the backlog after it by the take step
        assert _calls(client, "brpop") - brpops >= 1 and _calls(client, "eval") - evals >= 3
        entries = client.hgetall(channel.unacked_key)
        for _body, message in (got[0], got[2], got[3]):
            raw, exchange, routing_key = json.loads(entries[message.delivery_tag.encode()])
            assert raw == message._raw and (exchange, routing_key) == (name, name)
            assert client.zscore(channel.unacked_index_key, message.delivery_tag) is not None
        got[0][1].ack()
        got[2][1].ack()  # one taken by the step: acknowledged by kombu's own ack
        assert client.hexists(channel.unacked_key, got[2][1].delivery_tag) == 0
    finally:
        conn.release()  # the two not acknowledged go back on their queue (kombu's restore)
    back = [json.loads(m) for m in client.lrange(name, 0, -1)]
    assert sorted(m["properties"]["delivery_tag"] for m in back) == [got[3][1].delivery_tag]
    # (the hash is shared with every other worker on this Redis: only this test's entries count)
    assert not any(client.hexists(channel.unacked_key, message.delivery_tag) for _, message in got)


def test_an_ack_that_frees_a_full_prefetch_window_wakes_the_event_loop(redis_url):
    """A task thread's late acknowledgement must wake the consumer's loop to fetch the next
    message; before, the loop slept until its next timer while the thread sat idle."""
    from kombu.asynchronous import Hub

    name = f"wake-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name), name)
    conn = Connection(redis_url, transport="worker.runtime.broker:Transport")
    hub = Hub()
    try:
        producer = conn.Producer()
        for n in range(3):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=name, declare=[queue],
                             serializer="json")
        transport = conn.transport
        transport.register_with_event_loop(conn.connection, hub)
        read_fd = transport._wake_fds[0]
        assert read_fd in hub.readers

        def woken() -> bool:
            try:
                return bool(os.read(read_fd, 64))
            except BlockingIOError:
                return False

        channel = conn.default_channel
        channel.basic_qos(prefetch_count=2)
        first, second = channel.basic_get(name), channel.basic_get(name)
        assert not channel.qos.can_consume()
        first.ack()  # the window was full: the loop is woken
        assert woken()
        third = channel.basic_get(name)
        channel.basic_qos(prefetch_count=4)
        second.ack()  # room was left: nothing to wake for
        assert not woken()
        third.ack()
    finally:
        hub.close()
        conn.release()
