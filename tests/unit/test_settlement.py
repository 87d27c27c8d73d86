"""The settlement rules, one table: every kind of report on every state a job can be in.

Each row: the state the job is in, the report (source, status, paid amount), what was paid so far,
then the expected target (None: no move), whether a person is asked to look, and whether the move
counts a success for the payer's IP. The order amount is 300 throughout.
"""

import pytest

from worker.domain import states
from worker.domain.settlement import CALLBACK, CREATE, QUERY, Report, amount_verdict, decide, status_kind

S, U, P, PP = states.SUBMITTING, states.UNKNOWN, states.PAYING, states.PARTIALLY_PAID
OK, FAIL, DEC, REJ, Q = states.SUCCEEDED, states.FAILED, states.DECLINED, states.REJECTED, states.QUEUED
LINK = {"paymentLink": "https://gw.example/c/1", "platFormTradeNo": "p1"}

ROWS = [
    # current, source, status, paid, paid so far -> target, review, counts a success
    # paying
    (S, CREATE, "0015", None, None, P, False, False),
    (U, QUERY, "0015", None, None, P, False, False),
    (P, CALLBACK, "0015", None, None, None, False, False),
    (PP, QUERY, "0015", None, "100", None, False, False),
    # paid in full: succeeded and counted, from every open state
    (S, CREATE, "0000", "300", None, OK, False, True),
    (U, QUERY, "0000", "300", None, OK, False, True),
    (P, CALLBACK, "0000", "300.00", None, OK, False, True),
    (PP, QUERY, "0000", "300", "150", OK, False, True),
    # paid more than ordered: succeeded, counted, flagged
    (P, CALLBACK, "0000", "400", None, OK, True, True),
    # "paid" but short: partially paid and flagged, never succeeded
    (P, CALLBACK, "0000", "150", None, PP, True, False),
    (U, QUERY, "0000", "150", None, PP, True, False),
    (S, CREATE, "0000", "150", None, PP, True, False),
    # paid without an amount: nothing final
    (S, CREATE, "0000", None, None, U, False, False),
    (P, QUERY, "0000", None, None, None, True, False),
    (U, QUERY, "0001", None, None, None, True, False),
    # partial payments: open, and may grow
    (P, CALLBACK, "0001", "150", None, PP, False, False),
    (S, CREATE, "0001", "150", None, PP, False, False),
    (PP, CALLBACK, "0001", "200", "150", PP, False, False),
    (PP, CALLBACK, "0001", "150", "150", None, False, False),
    (PP, CALLBACK, "0001", "100", "150", None, False, False),
    (P, CALLBACK, "0001", "300", None, PP, True, False),
    (P, CALLBACK, "0001", "0", None, PP, True, False),
    # failed
    (S, CREATE, "00029", None, None, FAIL, False, False),
    (P, CALLBACK, "00029", None, None, FAIL, False, False),
    (U, QUERY, "0029", None, None, FAIL, False, False),
    (PP, CALLBACK, "00029", None, "150", FAIL, True, False),
    # unrecognised statuses never end a payment
    (S, CREATE, "00032", None, None, U, True, False),
    (P, CALLBACK, "00032", None, None, None, True, False),
    (U, QUERY, "0100019", None, None, None, True, False),
    (PP, QUERY, "00032", None, "150", None, True, False),
    (P, CALLBACK, "", None, None, None, True, False),
    # closed jobs never move; money on a job closed unpaid is a conflict for a person
    (FAIL, CALLBACK, "0000", "300", None, None, True, False),
    (DEC, QUERY, "0001", "100", None, None, True, False),
    (REJ, CALLBACK, "0000", "300", None, None, True, False),
    (OK, CALLBACK, "0000", "300.00", "300", None, False, False),
    (OK, CALLBACK, "0000", "250", "300", None, True, False),
    (OK, CALLBACK, "00029", None, "300", None, True, False),
    (OK, CALLBACK, "0001", "150", "300", None, False, False),
    (OK, CALLBACK, "0015", None, "300", None, False, False),
    (FAIL, CALLBACK, "00029", None, None, None, False, False),
    (Q, CALLBACK, "0000", "300", None, None, True, False),
]


@pytest.mark.parametrize("current,source,status,paid,so_far,target,review,counts", ROWS)
def test_the_settlement_table(current, source, status, paid, so_far, target, review, counts):
    fields = LINK if status == "0015" else {}
    decision = decide(current, Report(source, status, paid, fields), order_amount="300", paid_so_far=so_far)
    assert decision.target == target
    assert bool(decision.review) is review, decision.review
    assert decision.count_success is counts
    if target is not None:
        assert target == current and decision.increase or states.can_move(current, target)
        assert decision.fields["gatewayStatus"] == status


def test_a_create_answer_without_a_link_is_not_paying():
    assert decide(S, Report(CREATE, "0015", None, {}), order_amount="300").target == U


def test_a_link_in_a_late_create_answer_is_kept_for_a_job_a_callback_moved():
    decision = decide(PP, Report(CREATE, "0015", None, LINK), order_amount="300", paid_so_far="100")
    assert decision.target is None and decision.annotate == LINK


def test_purge_on_every_state_the_gateway_settled():
    assert decide(S, Report(CREATE, "0015", None, LINK), order_amount="300").purge
    assert not decide(S, Report(CREATE, "00032"), order_amount="300").purge


@pytest.mark.parametrize("status,kind", [("0000", "paid"), ("0001", "partial"), ("0015", "paying"),
                                         ("00029", "failed"), ("0029", "failed"), ("00032", "unrecognised"),
                                         (None, "unrecognised"), ("0", "unrecognised")])
def test_status_kinds(status, kind):
    assert status_kind(status) == kind


@pytest.mark.parametrize("kind,order,paid,verdict", [
    ("paid", "300", "300.00", "match"), ("paid", "300", "299", "under"), ("paid", "300", "301", "over"),
    ("paid", "300", None, "missing"), ("paid", "300", "abc", "missing"), ("paid", "300", "NaN", "missing"),
    ("partial", "300", "1", "partial"), ("partial", "300", "300", "over"), ("partial", "300", "0", "none_paid"),
    ("paying", "300", "300", "n/a"), ("failed", "300", None, "n/a"),
])
def test_amount_verdicts(kind, order, paid, verdict):
    assert amount_verdict(kind, order, paid) == verdict


# -- issue 20, finding 6: an amount that may be the order's never settles a flagged or partial job --
# current, status, plain amount, paid so far, flagged -> target, review
MAYBE_ORDER_ROWS = [
    (PP, "0000", "300", "250", False, None, True),     # the bug: 250 of 300 must not become succeeded
    (PP, "0000", "300.00", "250", False, None, True),
    (PP, "0001", "300", "250", False, None, True),     # nor a partial "of 300"
    (P, "0000", "300", None, True, None, True),        # flagged and open: a person decides
    (U, "0000", "300", None, True, None, True),
    (P, "0000", "300", None, False, OK, False),        # unflagged, 0000 for the order's amount: paid
    (U, "0000", "300", None, False, OK, False),
    (PP, "0001", "280", "250", False, PP, False),      # not the order's amount: what was paid
    (PP, "0000", "280", "250", False, PP, True),       # short, as any short 0000
    (OK, "0000", "300", "320", False, None, False),    # the order's amount says nothing against 320 paid
]


@pytest.mark.parametrize("current,status,amount,so_far,flagged,target,review", MAYBE_ORDER_ROWS)
def test_an_amount_that_may_be_the_orders(current, status, amount, so_far, flagged, target, review):
    report = Report(QUERY, status, amount, {}, amount_may_be_order=True)
    decision = decide(current, report, order_amount="300", paid_so_far=so_far, flagged=flagged)
    assert decision.target == target
    assert bool(decision.review) is review, decision.review
    assert decision.count_success is (target == OK)


def test_a_callbacks_amount_is_what_was_paid_even_when_flagged():
    report = Report(CALLBACK, "0000", "300.00")
    assert decide(PP, report, order_amount="300", paid_so_far="250", flagged=True).target == OK
