"""The automatic payer's scripted sequences, step by step, without HTTP or threads: a real
``Sandbox`` behind a notifier stand-in that records callbacks and holds timers until the test runs
them. Also the ``--autopay`` parser and the once-per-order paid count.
"""

from __future__ import annotations

import pytest

from worker.sandbox import cashier
from worker.sandbox import IpLimitReached, Sandbox, SandboxServer

IP = "10.1.1.1"


class Notifier:
    """Records ``notify`` calls and holds ``call_later`` actions for the test to run."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str | None, bool]] = []  # (status, paidAmount, lost)
        self.timers: list[tuple[float, object]] = []

    def notify(self, order, *, lost=False):
        self.sent.append((order["status"], order["paidAmount"], lost))

    def call_later(self, delay, action):
        self.timers.append((delay, action))

    def run_timers(self) -> list[float]:
        """Run every held action, including those they schedule; the delays, in order."""
        delays = []
        while self.timers:
            delay, action = self.timers.pop(0)
            delays.append(delay)
            action()
        return delays


class Server:
    """What the cashier module needs; ``move_order`` is the real server's."""

    move_order = SandboxServer.move_order

    def __init__(self, mix: dict, delay: float = 0.25) -> None:
        self.sandbox = Sandbox()
        self.notifier = Notifier()
        self.autopay = cashier.Autopay({"mix": mix, "delay": delay})


def new_order(sandbox: Sandbox, trade_no: str = "T1", amount: str = "300") -> str:
    sandbox.create_order({"tradeNo": trade_no, "ipAddress": IP, "amount": amount,
                                 "notifyUrl": "http://merchant.test/n",
                                 "returnUrl": "http://merchant.test/r"}, "http://sandbox.test")
    return trade_no


@pytest.mark.parametrize(("outcome", "sent"), [
    ("paid", [("0000", "300", False)]),
    ("partial", [("0001", "150", False)]),
    ("failed", [("00029", None, False)]),
    ("partial_then_paid", [("0001", "150", False), ("0000", "300", True)]),
    ("unknown_then_paid", [("00032", None, False), ("0000", "300", False)]),
    ("paid_short", [("0000", "150", False)]),
    ("paid_over", [("0000", "400", False)]),
])
def test_each_outcome_plays_its_steps_one_delay_apart(outcome, sent):
    server = Server({outcome: 1.0})
    trade_no = new_order(server.sandbox)
    cashier.autopay_order(server, trade_no)
    assert server.notifier.run_timers() == [0.25] * len(sent)
    assert server.notifier.sent == sent
    final = server.sandbox.order(trade_no)
    assert (final["status"], final["paidAmount"]) == sent[-1][:2]


def test_the_unknown_step_says_unknown_error():
    server = Server({"unknown_then_paid": 1.0})
    trade_no = new_order(server.sandbox)
    cashier.autopay_order(server, trade_no)
    server.notifier.timers.pop(0)[1]()  # the first step only
    assert server.sandbox.order(trade_no)["message"] == "unknown error"


def test_a_step_leaves_an_order_someone_else_moved():
    server = Server({"partial_then_paid": 1.0})
    trade_no = new_order(server.sandbox)
    cashier.autopay_order(server, trade_no)
    server.notifier.timers.pop(0)[1]()
    server.move_order(trade_no, "00029", "Failed")  # e.g. a scripted status in between
    server.notifier.run_timers()
    assert server.sandbox.order(trade_no)["status"] == "00029"
    assert [status for status, _, _ in server.notifier.sent] == ["0001", "00029"]


def test_a_step_after_a_reset_does_nothing():
    server = Server({"unknown_then_paid": 1.0})
    cashier.autopay_order(server, new_order(server.sandbox))
    server.notifier.timers.pop(0)[1]()
    server.sandbox.reset()
    assert server.notifier.run_timers() == [0.25]  # ran, found no order, scheduled nothing more
    assert len(server.notifier.sent) == 1


def test_paid_counts_once_per_order_for_the_ip_limits():
    sandbox = Sandbox(ip_limits=True)
    first = new_order(sandbox, "T1")
    for status in ("0000", "0001", "0000"):
        sandbox.set_status(first, status, "moved")
    for trade_no in ("T2", "T3"):
        sandbox.set_status(new_order(sandbox, trade_no), "0000", "Success")
    with pytest.raises(IpLimitReached):  # three orders paid, however often the first was
        new_order(sandbox, "T4")


@pytest.mark.parametrize("text", ["partial_then_paid=0.5,unknown_then_paid=0.5",
                                  "paid_short=0.2, paid_over=0.2,paid=0.6"])
def test_parse_mix_accepts_the_sequence_names(text):
    mix = cashier.parse_mix(text)
    assert set(mix) <= set(cashier.AUTOPAY_OUTCOMES) and sum(mix.values()) == pytest.approx(1)


@pytest.mark.parametrize("text", ["paid_twice=1", "partial_then_paid=0.7,paid=0.7"])
def test_parse_mix_refuses_unknown_names_and_too_much(text):
    with pytest.raises(ValueError):
        cashier.parse_mix(text)


def test_steps_left_counts_down_and_reset_forgets_them():
    autopay = cashier.Autopay({"mix": {"partial_then_paid": 1.0}, "delay": 0})
    assert autopay.steps_left("T1") == 0
    assert autopay.steps_left("T1", 2) == 2 and autopay.steps_left("T2", 1) == 1
    assert autopay.steps_left("T1", 1) == 1
    assert autopay.steps_left("T1", 0) == 0 and autopay.steps_left("T2") == 1
    autopay.reset()
    assert autopay.steps_left("T2") == 0
