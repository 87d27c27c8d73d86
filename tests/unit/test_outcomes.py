"""The meaning of gateway answers' request-level codes (docs/gateway.md §Status and error codes) and the forward-only rule."""

import pytest

from schemas import QueryResponseSchema
from worker.domain import settlement
from worker.domain import states
from worker.domain.errors import AmbiguousError, OutcomeUnknownError
from worker.domain.settlement import Report
from worker.gateway import answers
from worker.gateway.answers import Outcome

LINK = "https://gw.example/cashier/abc"


def created(status="0015", **data):
    return {"tradeNo": "T1", "platFormTradeNo": "p1", "status": status, "message": "Paying",
            "paymentLink": LINK, "paidAmount": None, **data}


def test_a_created_checkout_is_a_report_with_link_and_platform_number():
    report = answers.from_checkout("0000", "success", created())
    assert isinstance(report, Report) and report.source == settlement.CREATE
    assert report.status == "0015"
    assert report.fields["paymentLink"] == LINK and report.fields["platFormTradeNo"] == "p1"
    assert report.fields["gatewayCode"] == "0000"
    decision = settlement.decide(states.SUBMITTING, report, order_amount="300")
    assert decision.target == states.PAYING and decision.fields["paymentLink"] == LINK


def test_8000_is_declined_with_code_and_message():
    outcome = answers.from_checkout("8000", "amount invalid", None)
    assert isinstance(outcome, Outcome) and outcome.state == states.DECLINED
    assert outcome.fields["gatewayCode"] == "8000" and outcome.fields["message"] == "amount invalid"


# -- issue 20, finding 5: 8000 is several errors; only "no such order" means not known ------------
@pytest.mark.parametrize("msg", ["duplicate tradeNo", "Duplicate TradeNo.", "  duplicate   tradeno "])
def test_a_create_8000_that_says_the_trade_no_exists_is_never_declined(msg):
    outcome = answers.from_checkout("8000", msg, None)
    assert outcome.state == states.UNKNOWN and outcome.reason == answers.REFUSED_AFTER_AMBIGUOUS


@pytest.mark.parametrize("msg", ["amount invalid", "sign error", "request refused by the gateway", None])
def test_a_create_8000_after_an_ambiguous_attempt_is_never_declined(msg):
    outcome = answers.from_checkout("8000", msg, None, after_ambiguous=True)
    assert outcome.state == states.UNKNOWN and outcome.reason == answers.REFUSED_AFTER_AMBIGUOUS
    assert outcome.fields["gatewayCode"] == "8000"


@pytest.mark.parametrize("msg,data", [
    ("order not found", None), ("Order not found.", None), ("ORDER DOES NOT EXIST", None),
    ("fail", {"message": "order not found"}),
])
def test_only_a_query_8000_that_says_the_order_does_not_exist_means_not_known(msg, data):
    assert answers.from_query("8000", msg, data) is None


@pytest.mark.parametrize("msg", ["sign error", "merchant not found", "invalid request",
                                 "request refused by the gateway", "order not found for this merchant config",
                                 "", None])
def test_any_other_query_8000_is_no_usable_answer(msg):
    with pytest.raises(AmbiguousError) as caught:
        answers.from_query("8000", msg, None)
    assert caught.value.code == "8000"


def test_more_not_found_messages_can_be_configured():
    with pytest.raises(AmbiguousError):
        answers.from_query("8000", "订单不存在", None)
    assert answers.from_query("8000", "订单不存在", None, not_found=("订单不存在",)) is None
    assert answers.from_query("8000", "Order Missing", None, not_found=("order missing",)) is None
    with pytest.raises(AmbiguousError):  # an extra message adds, never replaces
        answers.from_query("8000", "sign error", None, not_found=("order missing",))


def test_a_query_8000_error_text_is_short_and_printable():
    with pytest.raises(AmbiguousError) as caught:
        answers.from_query("8000", "x\n" * 500, None)
    assert len(caught.value.message) < 200 and "\n" not in caught.value.message


def test_5000_means_unknown_not_failed():
    with pytest.raises(OutcomeUnknownError):
        answers.from_checkout("5000", "system exception", None)


@pytest.mark.parametrize("code,data", [("0000", None), ("1234", None)])
def test_an_unrecognised_answer_is_unknown(code, data):
    assert answers.from_checkout(code, "?", data).state == states.UNKNOWN


@pytest.mark.parametrize("data", [created(paymentLink=None), created(status="0999"), created(status=None)])
def test_odd_create_data_leaves_the_job_unknown_never_final(data):
    decision = settlement.decide(states.SUBMITTING, answers.from_checkout("0000", "?", data), order_amount="300")
    assert decision.target == states.UNKNOWN


def test_query_8000_order_not_found_means_not_known():
    assert answers.from_query("8000", "order not found", None) is None


@pytest.mark.parametrize("code,data", [("5000", None), ("0000", None), ("0000", {"tradeNo": "T1"})])
def test_unusable_query_answer_is_retried_not_guessed(code, data):
    with pytest.raises(AmbiguousError):
        answers.from_query(code, "?", data)


@pytest.mark.parametrize("data,paid", [
    ({"amount": "150"}, "150"),
    ({"orderAmount": "300", "payAmount": "150"}, "150"),
    ({"amount": "300", "receivedAmount": "150"}, "150"),
    ({"amount": "300", "payAmount": "150"}, "150"),
    ({"orderAmount": "300"}, None),
])
def test_the_paid_amount_is_preferred_over_the_order_amount(data, paid):
    answer = QueryResponseSchema().load({"code": "0000", "data": {"tradeNo": "T1", "status": "0001", **data}})
    report = answers.from_query("0000", "ok", answer["data"])
    assert report.paid_amount == paid


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


def test_partially_paid_is_open():
    for target in (states.PARTIALLY_PAID, states.SUCCEEDED, states.FAILED):
        assert states.can_move(states.PARTIALLY_PAID, target)


# -- issue 20, finding 6: a query's plain amount may be the order's --------------------------------
def _query(data: dict) -> Report:
    answer = QueryResponseSchema().load({"code": "0000", "data": {"tradeNo": "T1", **data}})
    return answers.from_query("0000", "ok", answer["data"])


def test_a_plain_query_amount_is_marked_as_maybe_the_orders_and_a_named_one_is_not():
    assert _query({"status": "0000", "amount": "300"}).amount_may_be_order is True
    assert _query({"status": "0000", "amount": "300", "payAmount": "300"}).amount_may_be_order is False
    assert _query({"status": "0000", "receivedAmount": "300"}).amount_may_be_order is False


def test_a_plain_query_amount_equal_to_the_order_never_closes_a_partial_job():
    report = _query({"status": "0000", "amount": "300"})
    decision = settlement.decide(states.PARTIALLY_PAID, report, order_amount="300", paid_so_far="250")
    assert decision.target is None and decision.review and not decision.count_success
    # named as paid, the same answer settles it
    named = _query({"status": "0000", "amount": "300", "payAmount": "300"})
    assert settlement.decide(states.PARTIALLY_PAID, named, order_amount="300",
                             paid_so_far="250").target == states.SUCCEEDED
