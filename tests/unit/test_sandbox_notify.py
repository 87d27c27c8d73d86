"""The sandbox notifier's lost callbacks, without sending anything: its sender threads are never
started, so every scheduled delivery just waits in the heap until ``close``.
"""

from __future__ import annotations

import pytest

from worker.sandbox.notify import Notifier

ORDER = {"tradeNo": "T1", "platFormTradeNo": "P1", "status": "0000", "message": "Success",
         "paidAmount": "300", "paidAt": 0, "notifyUrl": "http://merchant.test/n"}


@pytest.fixture
def notifier():
    unstarted = Notifier("secret")
    yield unstarted
    unstarted.close()


def test_a_lost_callback_is_recorded_and_counted_as_dropped(notifier):
    view = notifier.notify(ORDER, lost=True)
    assert (view["dropped"], view["attempts"], view["delivered"]) == (True, 0, False)
    assert notifier.stats()["dropped"] == 1


def test_a_lost_callback_leaves_a_pending_drop_count_alone(notifier):
    notifier.drop({"count": 1})
    assert notifier.notify(ORDER, lost=True)["dropped"]
    assert notifier.drops()["count"] == 1  # still there for the next ordinary callback
    assert notifier.notify(ORDER)["dropped"]
    assert notifier.drops()["count"] == 0
    assert not notifier.notify(ORDER)["dropped"]
    assert notifier.stats() == {"scheduled": 3, "delivered": 0, "attempts": 0, "dropped": 2,
                                "gave_up": 0}
