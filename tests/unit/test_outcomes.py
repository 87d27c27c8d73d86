"""The meaning of gateway answers (GATEWAY.md §5) and the state machine's forward-only rule."""

import pytest

from worker import outcomes, states
from worker.errors import AmbiguousError, OutcomeUnknownError

LINK = "https://gw.example/cashier/abc"


def created(status="0015", **data):
    return {"tradeNo": "T1", "platFormTradeNo": "p1", "status": status, "message": "Paying",
            "paymentLink": LINK, **data}


def test_created_checkout_is_paying_with_link_and_platform_number():
    outcome = outcomes.from_checkout("0000", "success", created())
    assert outcome.state == states.PAYING
    assert outcome.fields["paymentLink"] == LINK
    assert outcome.fields["platFormTradeNo"] == "p1"
    assert outcome.fields["gatewayStatus"] == "0015" and outcome.fields["gatewayCode"] == "0000"


def test_8000_is_declined_with_code_and_message():
    outcome = outcomes.from_checkout("8000", "duplicate tradeNo", None)
    assert outcome.state == states.DECLINED
    assert outcome.fields["gatewayCode"] == "8000" and outcome.fields["message"] == "duplicate tradeNo"


def test_5000_means_unknown_not_failed():
    with pytest.raises(OutcomeUnknownError):
        outcomes.from_checkout("5000", "system exception", None)


@pytest.mark.parametrize("code,data", [("0000", None), ("0000", created(paymentLink=None)),
                                       ("1234", None), ("0000", created(status="0999"))])
def test_anything_unrecognised_is_unknown(code, data):
    assert outcomes.from_checkout(code, "?", data).state == states.UNKNOWN


@pytest.mark.parametrize("status,state", [("0000", states.SUCCEEDED), ("0001", states.PARTIALLY_PAID),
                                          ("0015", states.PAYING), ("00029", states.FAILED),
                                          ("0029", states.FAILED), ("0100019", states.FAILED)])
def test_query_status_maps_to_state(status, state):
    outcome = outcomes.from_query("0000", "success", {"tradeNo": "T1", "status": status, "amount": "300"})
    assert outcome.state == state


def test_query_8000_means_not_known():
    assert outcomes.from_query("8000", "order not found", None) is None


@pytest.mark.parametrize("code,data", [("5000", None), ("0000", None), ("0000", {"tradeNo": "T1"})])
def test_unusable_query_answer_is_retried_not_guessed(code, data):
    with pytest.raises(AmbiguousError):
        outcomes.from_query(code, "?", data)


def test_partial_payment_keeps_paid_amount():
    outcome = outcomes.from_query("0000", "ok", {"status": "0001", "amount": "150"})
    assert outcome.fields["paidAmount"] == "150"


def test_states_never_move_backwards():
    assert states.can_move(states.QUEUED, states.SUBMITTING)
    assert states.can_move(states.SUBMITTING, states.PAYING)
    assert states.can_move(states.PAYING, states.SUCCEEDED)
    for terminal in states.TERMINAL:
        for target in states.ALL:
            assert not states.can_move(terminal, target), (terminal, target)
    assert not states.can_move(states.PAYING, states.SUBMITTING)
    assert not states.can_move(states.PAYING, states.QUEUED)
    assert not states.can_move(states.PARTIALLY_PAID, states.PAYING)
