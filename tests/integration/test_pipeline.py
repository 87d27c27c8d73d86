"""The checkout pipeline end to end: real Redis, a real Celery worker, the sandbox over HTTP.

Every test checks the sandbox's own counts: what it received, created, and refused as a
duplicate. ``duplicates == 0`` is the proof that no checkout was sent for a tradeNo the gateway
already had.
"""

from __future__ import annotations

import pytest

from worker.domain import states
from worker.domain.errors import DuplicateTradeNoError, InvalidError
from worker.waiting import wait_until
from tests.support.stack import APP_SECRET, MARKERS, payload

pytestmark = pytest.mark.integration


def test_happy_path_reaches_paying_with_the_sandbox_payment_link(stack):
    trade_no = stack.enqueue(payload())
    record = stack.wait_state(trade_no, states.PAYING)
    assert record["paymentLink"].startswith(stack.sandbox_url + "/cashier/")
    assert record["platFormTradeNo"] and record["gatewayStatus"] == "0015"
    assert record["attempts"] == 1
    assert [(h["from"], h["to"]) for h in record["history"]] == [
        (None, "queued"), ("queued", "submitting"), ("submitting", "paying")]
    assert stack.sent(trade_no) == {"received": 1, "created": 1, "duplicates": 0, "faults": 0}
    # payer data is masked on the record and the stored payload is purged once created
    assert record["contact"]["mobile"] == "090****4321"
    assert "payload" not in record and stack.runtime.store.load(trade_no).payload is None
    events = [e for _, e in stack.runtime.store.events(count=10_000) if e["tradeNo"] == trade_no]
    assert [e["to"] for e in events] == ["queued", "submitting", "paying"]


def test_generated_trade_no_when_absent(stack):
    trade_no = stack.enqueue(payload(tradeNo=None))
    assert len(trade_no) == 32 and trade_no.isdigit()
    stack.wait_state(trade_no, states.PAYING)


INVALID = {
    "amount": {"amount": "1.5"},
    "mobile": {"mobile": "+819012345678"},
    "firstname": {"firstname": "たろう"},
    "lastname": {"lastname": "Yamada"},
    "email": {"email": "not-an-email"},
    "channelCode": {"channelCode": "BANK"},
    "wayCode": {"wayCode": "LINEPAY"},
    "ipAddress": {"ipAddress": "192.168.0.1"},
    "returnUrl": {"returnUrl": "ftp://merchant.example/"},
    "userId": {"userId": ""},
    "remark": {"remark": "x" * 1000},
    "unknownField": {"unknownField": "1"},
}


@pytest.mark.parametrize("field", sorted(INVALID))
def test_each_invalid_field_is_rejected_and_never_sent(stack, field):
    trade_no = stack.enqueue(payload(**INVALID[field]))
    record = stack.wait_state(trade_no, states.REJECTED)
    assert field in record["errors"], record["errors"]
    assert stack.sent(trade_no)["received"] == 0
    assert record["attempts"] == 0


def test_missing_field_is_rejected_with_its_name(stack):
    job = payload()
    del job["email"]
    trade_no = stack.enqueue(job)
    assert "email" in stack.wait_state(trade_no, states.REJECTED)["errors"]
    assert stack.sent(trade_no)["received"] == 0


def test_502s_are_retried_to_success(stack):
    job = payload()
    stack.faults({"kind": "http_error", "status": 502, "times": 2, "tradeNo": job["tradeNo"]})
    trade_no = stack.enqueue(job)
    record = stack.wait_state(trade_no, states.PAYING)
    assert record["paymentLink"]
    assert stack.sent(trade_no) == {"received": 3, "created": 1, "duplicates": 0, "faults": 2}
    # each 5xx is ambiguous, so the gateway was asked before each resend
    assert stack.stats()["query"].get(trade_no) == 2


def test_dropped_connection_before_create_is_retried_to_success(stack):
    job = payload()
    stack.faults({"kind": "drop", "create": False, "times": 1, "tradeNo": job["tradeNo"]})
    trade_no = stack.enqueue(job)
    stack.wait_state(trade_no, states.PAYING)
    assert stack.sent(trade_no) == {"received": 2, "created": 1, "duplicates": 0, "faults": 1}


def test_429_retry_after_is_retried_to_success(stack):
    job = payload()
    stack.faults({"kind": "retry_after", "delay": 0, "times": 1, "tradeNo": job["tradeNo"]})
    trade_no = stack.enqueue(job)
    stack.wait_state(trade_no, states.PAYING)
    assert stack.sent(trade_no)["received"] == 2
    assert stack.stats()["query"].get(trade_no) is None  # a 429 is known not to have created it


def test_slow_answer_after_create_is_never_created_twice(stack):
    job = payload()
    # the worker's read timeout is 1 s: it gives up, the order exists at the gateway
    stack.faults({"kind": "slow_after_create", "delay": 2.5, "times": 1, "tradeNo": job["tradeNo"]})
    trade_no = stack.enqueue(job)
    record = stack.wait_state(trade_no, states.PAYING, states.UNKNOWN)
    assert record["state"] == states.PAYING  # settled by the query
    assert record["platFormTradeNo"]
    assert stack.sent(trade_no) == {"received": 1, "created": 1, "duplicates": 0, "faults": 1}


def test_dropped_answer_after_create_is_never_created_twice(stack):
    job = payload()
    stack.faults({"kind": "drop", "create": True, "times": 1, "tradeNo": job["tradeNo"]})
    trade_no = stack.enqueue(job)
    stack.wait_state(trade_no, states.PAYING)
    assert stack.sent(trade_no) == {"received": 1, "created": 1, "duplicates": 0, "faults": 1}


def test_8000_is_declined_after_exactly_one_attempt(stack):
    job = payload()
    stack.faults({"kind": "code_8000", "times": 1, "tradeNo": job["tradeNo"]})
    trade_no = stack.enqueue(job)
    record = stack.wait_state(trade_no, states.DECLINED)
    assert record["gatewayCode"] == "8000" and record["message"]
    assert record["attempts"] == 1
    assert stack.sent(trade_no)["received"] == 1


def test_5000_leaves_the_job_unknown_for_the_reconciler(stack):
    job = payload()
    stack.faults({"kind": "code_5000", "create": True, "times": 1, "tradeNo": job["tradeNo"]})
    trade_no = stack.enqueue(job)
    record = stack.wait_state(trade_no, states.UNKNOWN)
    assert record["gatewayCode"] == "5000" and record["attempts"] == 1
    assert stack.sent(trade_no) == {"received": 1, "created": 1, "duplicates": 0, "faults": 1}
    # the payload is kept: the reconciler may still have to send it
    assert stack.runtime.store.load(trade_no).payload is not None


def test_gateway_down_longer_than_the_retry_budget_ends_unknown_not_lost(stack):
    job = payload()
    stack.faults({"kind": "http_error", "status": 503, "times": -1, "tradeNo": job["tradeNo"]})
    trade_no = stack.enqueue(job)
    record = stack.wait_state(trade_no, states.UNKNOWN)
    assert record["attempts"] == 4 and record["httpStatus"] == 503
    assert stack.sent(trade_no) == {"received": 4, "created": 0, "duplicates": 0, "faults": 4}


def test_reenqueue_is_idempotent_and_a_different_payload_is_refused(stack):
    job = payload()
    assert stack.enqueue(job) == job["tradeNo"]
    stack.wait_state(job["tradeNo"], states.PAYING)
    assert stack.enqueue(dict(job)) == job["tradeNo"]
    with pytest.raises(DuplicateTradeNoError) as refused:
        stack.enqueue({**job, "amount": "999"})
    assert "tradeNo" in refused.value.errors
    assert stack.record(job["tradeNo"])["state"] == states.PAYING
    assert stack.sent(job["tradeNo"])["received"] == 1


def test_a_trade_no_that_cannot_be_a_key_is_refused_at_once(stack):
    # the schema's own tradeNo rule, before anything is stored (tests/integration/test_settlement.py)
    for bad in ("", 123, "x" * 100, "T" * 33, "a:b"):
        with pytest.raises(InvalidError):
            stack.enqueue(payload(tradeNo=bad))


def test_no_log_line_carries_the_secret_or_payer_data(stack):
    trade_no = stack.enqueue(payload())
    stack.wait_state(trade_no, states.PAYING)
    logs = stack.logs()
    assert trade_no in logs  # the logs are really there
    for marker in (APP_SECRET, *MARKERS.values()):
        assert marker not in logs


def test_enqueue_task_for_producers_in_other_languages(stack):
    job = payload()
    result = stack.runtime.celery.send_task("vexora.checkout.enqueue", kwargs=job)
    assert result.get(timeout=30) == {"tradeNo": job["tradeNo"]}
    stack.wait_state(job["tradeNo"], states.PAYING)
    # the worker shows only the tradeNo of such a payload in its task events and logs
    assert MARKERS["email"] not in stack.logs()


def test_enqueue_task_reports_a_refused_payload_without_its_values(stack):
    job = payload()
    stack.enqueue(job)
    result = stack.runtime.celery.send_task("vexora.checkout.enqueue", kwargs={**job, "amount": "999"})
    answer = result.get(timeout=30)
    assert answer["tradeNo"] is None and "tradeNo" in answer["errors"]
    assert "999" not in str(answer)


def test_a_malformed_enqueue_message_is_dropped_without_logging_its_payload(stack):
    job = payload()
    # a string eta goes out as it is; the worker cannot parse it and rejects the message
    stack.runtime.celery.send_task("vexora.checkout.enqueue", kwargs=job, eta="not-a-date")
    wait_until(lambda: "invalid task message" in stack.logs().lower() or "Received invalid" in stack.logs(),
               timeout=30, what="the worker to reject the message")
    logs = stack.logs()
    for marker in MARKERS.values():
        assert marker not in logs
    assert stack.record(job["tradeNo"]) is None
