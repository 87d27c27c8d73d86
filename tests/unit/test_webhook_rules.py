"""Issue 20's webhook rules where they are pure: the webhook-id of an event (finding 9), the
address a delivery connects to (finding 7), what an attempt records of an answer (finding 7), and
what `webhook.endpoint_disabled` says of the endpoint (finding 8)."""

from __future__ import annotations

import pytest

from worker.webhooks.delivery import Deliverer
from worker.webhooks.endpoints import resolve_url
from worker.webhooks.outbox import webhook_id
from worker.webhooks.poster import reason_for


def test_a_change_recorded_again_has_the_webhook_id_it_had():
    first = {"type": "checkout.succeeded", "tradeNo": "T1", "sequence": "3", "at": "1"}
    again = {**first, "at": "2"}  # re-applied after a failover: a new entry id, the same sequence
    assert webhook_id(first, "1700000000000-0") == webhook_id(again, "1700000009999-4") == "msg_T1_3"
    assert webhook_id({**first, "sequence": "4"}, "1700000000000-0") != webhook_id(first, "1700000000000-0")
    assert webhook_id({"type": "webhook.endpoint_disabled", "tradeNo": "", "sequence": "0",
                       "key": "endpoint_disabled_ep_1_1700"}, "1-0") == "msg_endpoint_disabled_ep_1_1700"
    assert webhook_id({"type": "x", "tradeNo": "", "sequence": "0"}, "5-1") == "msg_5-1"  # written before


def test_a_url_is_resolved_once_and_its_checked_address_is_the_one_to_connect_to():
    answers = iter([["8.8.8.8"], ["127.0.0.1"]])
    asked = []

    def resolve(host):
        asked.append(host)
        return next(answers)
    assert resolve_url("https://shop.example/hooks", allow_private=False, resolve=resolve) == (None, "8.8.8.8")
    assert asked == ["shop.example"]
    why, address = resolve_url("https://shop.example/hooks", allow_private=False, resolve=resolve)
    assert address is None and "loopback" in why
    assert resolve_url("http://localhost:9/x", allow_private=True, resolve=lambda h: ["127.0.0.1"]) == \
        (None, "127.0.0.1")
    assert resolve_url("http://[::1]:9/x", allow_private=True)[1] == "::1"  # an address: no lookup
    assert resolve_url("https://a.example/x", allow_private=False, resolve=lambda h: ["8.8.8.8", "10.0.0.1"]) == \
        ("resolves to a loopback, private or link-local address "
         "(set VEXORA_WEBHOOK_ALLOW_PRIVATE=true for a local receiver)", None)


@pytest.mark.parametrize("status,reason", [(200, "delivered"), (204, "delivered"), (400, "bad request"),
                                           (418, "refused by the receiver"), (429, "too many requests"),
                                           (503, "unavailable"), (599, "server error"),
                                           (302, "redirect, not followed")])
def test_an_attempt_records_our_words_for_a_status(status, reason):
    assert reason_for(status) == reason


class _Endpoints:
    def __init__(self):
        self.saved = {}

    def set_enabled(self, endpoint_id, enabled, reason=None):
        self.saved = {"id": endpoint_id, "enabled": enabled, "disabledReason": reason, "disabledAt": 1700}
        return self.saved


class _Dispatcher:
    def __init__(self):
        self.emitted = []

    def emit(self, kind, data, key):
        self.emitted.append((kind, data, key))


def test_endpoint_disabled_names_the_endpoint_by_id_and_nothing_of_its_url():
    deliverer = Deliverer.__new__(Deliverer)  # only _disable's collaborators
    deliverer.endpoints, deliverer.dispatcher = _Endpoints(), _Dispatcher()
    url = "https://shop.example/hooks?token=SECRET-TOKEN"
    deliverer._disable({"id": "ep_1", "url": url, "enabled": True}, "the receiver answered 410 Gone")
    ((kind, data, key),) = deliverer.dispatcher.emitted
    assert kind == "webhook.endpoint_disabled" and data == {"endpointId": "ep_1",
                                                            "reason": "the receiver answered 410 Gone"}
    assert key == "endpoint_disabled_ep_1_1700" and "SECRET" not in repr(deliverer.dispatcher.emitted)
