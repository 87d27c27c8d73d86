"""Issue 20, finding 1, end to end: the sandbox gateway, the web app under gunicorn and a Celery
worker. A genuine callback, signed by the gateway with the real secret, cannot be re-split onto
another order; a remark that could help is refused at enqueue; a callback naming another
``platFormTradeNo`` than the job's is never applied.

On the code before this rule, the issue's re-split was answered ``OK`` and moved VICTIM
(``paying`` → ``partially_paid`` here, the sandbox's failed callback saying ``0.00`` paid;
``succeeded`` with a gateway that puts the order amount in a failed callback)."""

from __future__ import annotations

import uuid

import pytest

from tests.support.forgery import Receiver, attack_remark, create_at_sandbox, issue_resplit, render
from tests.support.stack import APP_SECRET, Stack, payload
from worker.domain import states
from worker.gateway.signing import verify
from worker.waiting import wait_until

pytestmark = pytest.mark.integration

TOKEN = "forgery-test-token"


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    s = Stack(redis_url, tmp_path_factory.mktemp("forged"), VEXORA_API_TOKEN=TOKEN).start(web=True)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def drained(stack) -> None:
    """Wait until the callbacks queue has moved past everything posted so far: a marker job's
    callback, posted last, has been applied (one worker)."""
    marker = stack.paying()
    assert stack.notify(stack.callback(marker, "0000")).text == "OK"
    stack.wait_state(marker, states.SUCCEEDED)


def test_the_issues_re_split_of_a_genuine_failed_callback_is_refused_and_changes_nothing(stack, receiver):
    victim = stack.paying()
    before = stack.record(victim)
    # the attacker's own order A, remark chosen by them, callbacks to a URL they control
    attacker = "A" + uuid.uuid4().hex[:20]
    create_at_sandbox(stack, attacker, attack_remark(victim), receiver.url)
    stack.set_gateway_status(attacker, "00029")  # A fails: the gateway signs and sends its callback
    genuine = wait_until(lambda: receiver.callbacks().get(attacker), timeout=20, what="A's genuine callback")
    assert genuine["remark"] == attack_remark(victim) and genuine["status"] == "00029"
    assert verify(genuine, APP_SECRET)  # signed by the gateway, with the real secret

    forged = issue_resplit(genuine, victim)
    assert verify(forged, APP_SECRET)  # the same text: the genuine signature fits the forgery
    answer = stack.notify(render(forged))
    assert answer.status_code == 400 and answer.text != "OK"
    assert answer.json()["undocumentedFields"] == 1

    # A's genuine callback itself carries '=' in its remark: refused too, never queued
    assert stack.notify(render(genuine)).status_code == 400

    drained(stack)
    after = stack.record(victim)
    assert after["state"] == states.PAYING and not after.get("needsReview")
    assert after["history"] == before["history"]
    assert (after["platFormTradeNo"], after.get("gatewayStatus")) == (before["platFormTradeNo"], "0015")
    assert stack.record(attacker) is None
    logs = stack.logs()
    assert "callback_refused" in logs
    assert forged["zzz"] not in logs and attack_remark(victim) not in logs


def test_a_remark_that_could_shift_a_boundary_is_refused_at_enqueue(stack):
    job = payload(remark=attack_remark("T" + uuid.uuid4().hex[:20]))
    answer = stack.http.post(stack.web_url + "/v1/checkouts", json=job, timeout=15,
                             headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 422
    assert list(answer.json()["errors"]) == ["remark"]
    assert attack_remark("") not in answer.text
    assert stack.record(job["tradeNo"]) is None and stack.sent(job["tradeNo"])["received"] == 0


def test_a_signed_callback_naming_another_platform_trade_no_is_flagged_not_applied(stack):
    trade_no = stack.paying()
    held = stack.record(trade_no)["platFormTradeNo"]
    other = "Z" * 16
    answer = stack.notify(stack.callback(trade_no, "0000", platFormTradeNo=other))
    assert (answer.status_code, answer.text) == (200, "OK")  # genuine as far as the web app can tell
    record = wait_until(lambda: (r := stack.record(trade_no)) and r.get("needsReview") and r,
                        timeout=20, what="the review flag")
    assert record["state"] == states.PAYING and record["platFormTradeNo"] == held
    assert other in record["reviewReason"] and held in record["reviewReason"]
    [flag] = [h for h in record["history"] if h["detail"].get("kind") == "needs_review"]
    assert flag["detail"]["check"] == "platFormTradeNo" and flag["detail"]["platFormTradeNo"] == other

    # the gateway's own callback, with the job's id, still settles it
    assert stack.notify(stack.callback(trade_no, "0000")).text == "OK"
    assert stack.wait_state(trade_no, states.SUCCEEDED)["platFormTradeNo"] == held


def test_a_job_without_a_platform_trade_no_takes_the_callbacks(stack):
    # the create answer was lost: the job is unknown and holds no gateway id yet
    trade_no = stack.unsettled()
    assert not stack.record(trade_no).get("platFormTradeNo")
    assert stack.notify(stack.callback(trade_no, "0000", platFormTradeNo="P" * 16)).text == "OK"
    assert stack.wait_state(trade_no, states.SUCCEEDED)["platFormTradeNo"] == "P" * 16


def test_the_sandbox_sends_the_orders_remark_on_callbacks(stack, receiver):
    trade_no = "R" + uuid.uuid4().hex[:20]
    create_at_sandbox(stack, trade_no, "order 42", receiver.url)
    stack.set_gateway_status(trade_no, "0000", "300")
    callback = wait_until(lambda: receiver.callbacks().get(trade_no), timeout=20, what="the callback")
    assert callback["remark"] == "order 42" and verify(callback, APP_SECRET)
