"""Task events go out in batches: one wake-up of the event loop and one flush per interval."""

from __future__ import annotations

import threading

from worker.consumer import EVENTS_FLUSH_INTERVAL, Consumer


class FakeHub:
    """Records what the consumer asks of Celery's event loop."""

    def __init__(self):
        self.soon, self.later = [], []

    def call_soon(self, callback):
        self.soon.append(callback)

    def call_later(self, delay, callback):
        self.later.append((delay, callback))


def make_consumer() -> tuple[Consumer, FakeHub, list[int]]:
    consumer = Consumer.__new__(Consumer)  # only the event-batching part is under test
    hub, flushed = FakeHub(), []
    consumer.hub = hub
    consumer._flush_events = lambda: flushed.append(1)
    return consumer, hub, flushed


def test_many_events_from_many_threads_wake_the_loop_once():
    consumer, hub, flushed = make_consumer()
    threads = [threading.Thread(target=lambda: [consumer.on_send_event_buffered() for _ in range(50)])
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= len(hub.soon) <= 8 and flushed == []  # racing threads may each wake it, no more
    hub.soon[0]()  # the loop runs the callback: it schedules one flush an interval later
    assert [delay for delay, _ in hub.later] == [EVENTS_FLUSH_INTERVAL]
    hub.later[0][1]()
    assert flushed == [1]


def test_after_a_flush_the_next_event_schedules_the_next_one():
    consumer, hub, flushed = make_consumer()
    consumer.on_send_event_buffered()
    hub.soon.pop()()
    hub.later.pop()[1]()
    consumer.on_send_event_buffered()
    assert len(hub.soon) == 1
    hub.soon.pop()()
    hub.later.pop()[1]()
    assert flushed == [1, 1]


def test_without_an_event_loop_nothing_is_deferred():
    consumer, hub, flushed = make_consumer()
    consumer.hub = None
    consumer.on_send_event_buffered()
    assert hub.soon == [] and flushed == []
