"""Task events go out in batches: one wake-up of the event loop and one flush per interval."""

from __future__ import annotations

import threading

from worker.runtime.consumer import EVENTS_FLUSH_INTERVAL, Consumer


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


def test_rejected_message_log_lines_never_carry_the_body_or_headers():
    import logging

    from celery.worker.consumer import consumer as celery_consumer

    from worker.runtime.consumer import HIDDEN, install_log_filter

    install_log_filter()
    install_log_filter()  # once is enough; twice changes nothing
    logger = logging.getLogger(celery_consumer.__name__)
    assert sum(type(f).__name__ == "RejectedMessageFilter" for f in logger.filters) == 1
    secret = "{'mobile': '09087654321'}"
    cases = [
        (celery_consumer.INVALID_TASK_ERROR, (ValueError("bad eta"), secret)),
        (celery_consumer.UNKNOWN_FORMAT, (f"body: {secret}",)),
        (celery_consumer.UNKNOWN_TASK_ERROR, (KeyError("x"), secret, {"kwargsrepr": secret}, {})),
        (celery_consumer.MESSAGE_DECODE_ERROR, (ValueError("x"), "application/json", "utf-8",
                                                {"kwargsrepr": secret}, secret)),
    ]
    for template, args in cases:
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, template, args, None)
        for f in logger.filters:
            f.filter(record)
        text = record.getMessage()
        assert "09087654321" not in text and HIDDEN in text
