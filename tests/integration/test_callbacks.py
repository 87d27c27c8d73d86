"""Gateway callbacks through the real web app (gunicorn) and worker: verified, queued, applied
exactly once, never backwards."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from worker.domain import states
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    s = Stack(redis_url, tmp_path_factory.mktemp("callbacks")).start(web=True)
    try:
        yield s
    finally:
        s.stop()


def transitions(record, to):
    return [h for h in record["history"] if h["to"] == to]


def test_paid_callback_moves_the_job_to_succeeded(stack):
    trade_no = stack.paying()
    answer = stack.notify(stack.callback(trade_no, "0000", "300.00"))
    assert (answer.status_code, answer.text, answer.headers["Content-Type"].split(";")[0]) == \
        (200, "OK", "text/plain")
    record = stack.wait_state(trade_no, states.SUCCEEDED)
    assert record["paidAmount"] == "300" and record["gatewayPaidAmount"] == "300.00"
    assert record["gatewayStatus"] == "0000"
    assert not record.get("needsReview")


def test_failed_callback_keeps_code_and_message(stack):
    trade_no = stack.paying()
    assert stack.notify(stack.callback(trade_no, "00029")).text == "OK"
    record = stack.wait_state(trade_no, states.FAILED)
    assert record["gatewayStatus"] == "00029" and record["message"] == "Failed"


def test_partial_payment_records_the_paid_amount(stack):
    trade_no = stack.paying()
    stack.notify(stack.callback(trade_no, "0001", "150.00"))
    record = stack.wait_state(trade_no, states.PARTIALLY_PAID)
    assert record["paidAmount"] == "150" and record["gatewayPaidAmount"] == "150.00" and not record["needsReview"]


def test_a_paid_amount_other_than_requested_is_put_in_front_of_a_person(stack):
    short, over = stack.paying(), stack.paying()
    stack.notify(stack.callback(short, "0000", "299.00"))
    stack.notify(stack.callback(over, "0000", "301.00"))
    # "paid" but short is not succeeded: a merchant ships on succeeded
    record = stack.wait_state(short, states.PARTIALLY_PAID)
    assert record["needsReview"] is True and "299.00" in record["reviewReason"]
    assert transitions(record, states.PARTIALLY_PAID)[0]["detail"]["amount"] == "under"
    from worker.waiting import wait_until
    wait_until(lambda: stack.record(short)["history"][-1]["detail"].get("kind") == "needs_review",
               timeout=20, what="the needs_review event, just after the move")
    record = stack.wait_state(over, states.SUCCEEDED)
    assert record["needsReview"] is True and record["paidAmount"] == "301"


def test_the_same_callback_five_times_is_one_transition(stack):
    trade_no = stack.paying()
    body = stack.callback(trade_no, "0000")
    assert [stack.notify(body).text for _ in range(5)] == ["OK"] * 5
    stack.wait_state(trade_no, states.SUCCEEDED)
    # the five messages are processed in order on the one worker; poll until all are done
    assert _settled_events(stack, trade_no) == ["queued", "submitting", "paying", "succeeded"]


def test_ten_concurrent_deliveries_are_one_transition(stack):
    trade_no = stack.paying()
    body = stack.callback(trade_no, "0000")
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: stack.notify(body).text, range(10)))
    assert answers == ["OK"] * 10
    record = stack.wait_state(trade_no, states.SUCCEEDED)
    assert len(transitions(record, states.SUCCEEDED)) == 1


def test_out_of_order_callbacks_never_move_backwards(stack):
    trade_no = stack.paying()
    stack.notify(stack.callback(trade_no, "0001", "150.00"))
    stack.wait_state(trade_no, states.PARTIALLY_PAID)
    stack.notify(stack.callback(trade_no, "0000", "300.00"))
    stack.wait_state(trade_no, states.SUCCEEDED)
    for late in (stack.callback(trade_no, "0015"), stack.callback(trade_no, "0001", "150.00"),
                 stack.callback(trade_no, "00029")):
        assert stack.notify(late).text == "OK"
    marker = stack.paying()  # a later job through the same queue: once it is done, so are those
    stack.notify(stack.callback(marker, "0000"))
    stack.wait_state(marker, states.SUCCEEDED)
    record = stack.record(trade_no)
    assert record["state"] == states.SUCCEEDED and record["gatewayStatus"] == "0000"
    assert [h["to"] for h in record["history"] if h["to"]][-2:] == ["partially_paid", "succeeded"]
    # a failure reported for a paid job is a conflict for a person, never applied
    assert record["needsReview"] is True and "00029" in record["reviewReason"]


def test_a_forged_signature_is_401_and_changes_nothing(stack):
    trade_no = stack.paying()
    forged = stack.callback(trade_no, "0000", secret="not-the-secret")
    answer = stack.notify(forged)
    assert answer.status_code == 401 and answer.text == "invalid signature"
    tampered = stack.callback(trade_no, "0001", "150.00").replace(b"150.00", b"300.00")
    assert stack.notify(tampered).status_code == 401
    unsigned = json.dumps({"tradeNo": trade_no, "status": "0000", "amount": "300"}).encode()
    assert stack.notify(unsigned).status_code == 401
    assert stack.record(trade_no)["state"] == states.PAYING


def test_a_number_reformatted_by_a_float_parser_would_not_verify(stack):
    # the gateway signs "300.00"; a receiver that parsed it as 300.0 would refuse it. We accept it.
    trade_no = stack.paying()
    assert stack.notify(stack.callback(trade_no, "0000", "300.00")).status_code == 200


@pytest.mark.parametrize("body,status", [
    (b"{not json", 400),
    (b"[1, 2, 3]", 400),
    (b'"a string"', 400),
    (b"", 400),
    (b"\xff\xfe\x00", 400),
    (b"[" * 100_000, 413),
    (b'{"tradeNo": "' + b"x" * 70_000 + b'"}', 413),
])
def test_malformed_and_oversized_bodies_are_refused(stack, body, status):
    assert stack.notify(body).status_code == status


def test_a_signed_but_malformed_callback_is_400(stack):
    trade_no = stack.paying()
    missing_status = stack.callback_fields(trade_no)
    del missing_status["status"]
    from worker.signing import callback_body
    from tests.support.stack import APP_SECRET
    answer = stack.notify(callback_body(missing_status, APP_SECRET))
    assert answer.status_code == 400 and "status" in answer.json()["fields"]
    assert stack.record(trade_no)["state"] == states.PAYING


def test_a_callback_for_an_unknown_trade_no_is_kept_as_an_orphan_event(stack):
    assert stack.notify(stack.callback("NOSUCHJOB123", "0000")).text == "OK"

    def orphan():
        return [e for _, e in stack.runtime.store.events(count=100_000)
                if e["tradeNo"] == "NOSUCHJOB123" and json.loads(e["detail"])["kind"] == "orphan_callback"]
    from worker.waiting import wait_until
    wait_until(orphan, timeout=20, what="the orphan event")
    assert stack.record("NOSUCHJOB123") is None


def test_a_paid_callback_for_a_failed_job_is_flagged_for_review(stack):
    trade_no = stack.paying()
    stack.notify(stack.callback(trade_no, "00029"))
    stack.wait_state(trade_no, states.FAILED)
    stack.notify(stack.callback(trade_no, "0000"))
    from worker.waiting import wait_until
    record = wait_until(lambda: (r := stack.record(trade_no)) and r.get("needsReview") and r,
                        timeout=20, what="the review flag")
    assert record["state"] == states.FAILED


def test_healthz(stack):
    answer = stack.http.get(stack.web_url + "/healthz", timeout=5)
    assert (answer.status_code, answer.text) == (200, "ok")


def _settled_events(stack, trade_no):
    """The job's state events, once the queue has drained past a marker job."""
    marker = stack.paying()
    stack.notify(stack.callback(marker, "0000"))
    stack.wait_state(marker, states.SUCCEEDED)
    return [e["to"] for _, e in stack.runtime.store.events(count=100_000)
            if e["tradeNo"] == trade_no and e["to"]]


def test_ten_transactions_per_ip_a_day_then_rejected_before_sending(stack):
    ip = "8.8.8.1"
    for _ in range(10):
        stack.paying(ipAddress=ip)
    trade_no = stack.enqueue(payload(ipAddress=ip))
    record = stack.wait_state(trade_no, states.REJECTED)
    assert "10 transactions" in record["errors"]["ipAddress"][0]
    assert stack.sent(trade_no)["received"] == 0


def test_three_successes_per_ip_a_day_then_rejected(stack):
    ip = "8.8.8.2"
    for _ in range(3):
        trade_no = stack.paying(ipAddress=ip)
        body = stack.callback(trade_no, "0000")
        stack.notify(body)
        stack.notify(body)  # a resent callback does not count twice
        stack.wait_state(trade_no, states.SUCCEEDED)
    stack.paying(ipAddress="8.8.8.3")  # another IP is not affected
    trade_no = stack.enqueue(payload(ipAddress=ip))
    record = stack.wait_state(trade_no, states.REJECTED)
    assert "3 successful" in record["errors"]["ipAddress"][0]
    assert stack.sent(trade_no)["received"] == 0


@pytest.mark.parametrize("status,state", [("0000", states.SUCCEEDED), ("0001", states.PARTIALLY_PAID),
                                          ("00029", states.FAILED)])
def test_the_sandbox_gateway_callbacks_settle_jobs(stack, status, state):
    trade_no = stack.paying()
    stack.set_gateway_status(trade_no, status)
    record = stack.wait_state(trade_no, state)
    assert record["gatewayStatus"] == status
    delivered = [c for c in stack.http.get(stack.sandbox_url + "/_sandbox/callbacks", timeout=5).json()["callbacks"]
                 if c["tradeNo"] == trade_no]
    assert delivered and delivered[0]["delivered"] and delivered[0]["attempts"] == 1


def test_logs_of_an_end_to_end_run_have_one_line_per_change_and_no_secrets(stack):
    from tests.support.stack import APP_SECRET, MARKERS

    trade_no = stack.paying()
    stack.set_gateway_status(trade_no, "0000")
    stack.wait_state(trade_no, states.SUCCEEDED)
    logs = stack.logs()  # sandbox, worker and web (gunicorn access log included)
    changes = [line for line in logs.splitlines() if "state_change" in line and f"tradeNo={trade_no}" in line]
    # "queued" is logged by the producer: here, this test process; the claim ("submitting"), a
    # step of the submit, only at DEBUG
    assert [line.split(" to=")[1].split()[0] for line in changes] == ["paying", "succeeded"]
    assert any("attempt=1" in line and "latencyMs=" in line for line in changes)
    for marker in (APP_SECRET, *MARKERS.values()):
        assert marker not in logs
