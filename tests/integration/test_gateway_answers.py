"""What the gateway's answers prove, end to end (issue 20, findings 5 and 6).

Real sandbox gateway, a real Celery worker, the web app under gunicorn; the reconciler is run by
the test, one pass at a time, every open job due at once.

- ``8000`` is several errors: only a query ``8000`` that says the order does not exist means "not
  known"; a sign error (or any other ``8000``) is no answer, and after an ambiguous attempt a job
  is never ``declined``.
- A query answer whose only amount is the plain ``amount`` (which may be the order's) never
  settles a partially paid or flagged job.
"""

from __future__ import annotations

import pytest

from worker.domain import states
from worker.flows.reconcile import Reconciler
from worker.flows.settle import Settler
from worker.waiting import wait_until
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    s = Stack(redis_url, tmp_path_factory.mktemp("gateway-answers")).start(web=True)
    try:
        yield s
    finally:
        s.stop()


def reconcile(stack, **settings) -> dict:
    """One reconciler pass in this process, every open job due at once."""
    rt = stack.runtime
    settings = stack.settings.replace(paying_query_after=0, queued_redrive_after=3600,
                                      reconcile_backoff_base=0.001, reconcile_backoff_max=0.001, **settings)
    return Reconciler(settings, rt.store, rt.gateway, lambda t: rt.send("vexora.checkout.submit", t),
                      Settler(rt.store, rt.limits)).run()


def visited(record: dict) -> list[str]:
    return [h["to"] for h in record["history"] if h["to"]]


# -- the sandbox's query variants -------------------------------------------------------------------
def test_the_sandbox_answers_each_8000_variant_and_amount_only_on_the_query(stack):
    trade_no = stack.paying()
    gateway = stack.runtime.gateway
    for message in ("sign error", "order not found", "merchant blocked"):
        stack.faults({"endpoint": "query", "tradeNo": trade_no, "kind": "code_8000", "message": message})
        reply = gateway.query(trade_no)
        assert (reply.code, reply.msg, reply.data) == ("8000", message, None)
    stack.set_gateway_status(trade_no, "0001", "120")
    stack.faults({"endpoint": "query", "tradeNo": trade_no, "kind": "amount_only"},
                 {"endpoint": "query", "tradeNo": trade_no, "kind": "amount_only", "amount": "paid"})
    order_amount, paid = gateway.query(trade_no).data, gateway.query(trade_no).data
    assert (order_amount["paidAmount"], order_amount["paidAmountKey"], order_amount["orderAmount"]) == (
        "300", "amount", None)
    assert (paid["paidAmount"], paid["paidAmountKey"]) == ("120", "amount")
    explicit = gateway.query(trade_no).data  # the rules are used up: every name again
    assert (explicit["paidAmount"], explicit["paidAmountKey"], explicit["orderAmount"]) == ("120", "payAmount", "300")
    refused = stack.http.post(stack.sandbox_url + "/_sandbox/faults", timeout=5,
                              json={"faults": [{"endpoint": "checkout", "kind": "amount_only"}]})
    assert refused.status_code == 400 and "query endpoint only" in refused.json()["error"]


# -- finding 5: 8000 after an ambiguous attempt ---------------------------------------------------
def test_a_read_timeout_then_a_sign_error_on_the_query_leaves_the_job_unknown_never_declined(stack):
    job = payload()
    trade_no = job["tradeNo"]
    # the order is created but its answer comes too late; every query is refused as a sign error
    stack.faults({"tradeNo": trade_no, "kind": "slow_after_create", "delay": 2.0},
                 {"tradeNo": trade_no, "endpoint": "query", "kind": "code_8000", "message": "sign error",
                  "times": -1})
    stack.enqueue(job)
    record = stack.wait_state(trade_no, states.UNKNOWN, states.DECLINED, timeout=40)
    assert record["state"] == states.UNKNOWN and record["gatewayCode"] == "8000", record
    assert stack.sent(trade_no)["created"] == 1
    # the reconciler keeps asking, sends nothing again, and flags it once refused long enough
    assert reconcile(stack, refused_review_after=2).get("query_refused") == 1
    assert not stack.record(trade_no)["needsReview"]
    wait_until(lambda: reconcile(stack, refused_review_after=2).get("query_refused"), timeout=10,
               what="a second check of the job")
    record = stack.record(trade_no)
    assert record["state"] == states.UNKNOWN and record["needsReview"] is True
    assert "refusing queries" in record["reviewReason"]
    assert stack.sent(trade_no)["received"] == 1  # no checkout sent again
    # once the gateway answers, its record settles the job
    stack.faults()
    wait_until(lambda: reconcile(stack).get(f"settled_{states.PAYING}"), timeout=10, what="the job settled")
    record = stack.record(trade_no)
    assert record["state"] == states.PAYING and states.DECLINED not in visited(record)
    assert stack.sent(trade_no)["created"] == 1 and stack.sent(trade_no)["duplicates"] == 0


def test_a_create_8000_after_a_dropped_request_is_never_declined(stack):
    job = payload()
    trade_no = job["tradeNo"]
    # the first request is lost on the way (ambiguous), the second is refused with an 8000
    stack.faults({"tradeNo": trade_no, "kind": "drop", "create": False},
                 {"tradeNo": trade_no, "kind": "code_8000", "message": "amount invalid", "times": -1})
    stack.enqueue(job)
    record = stack.wait_state(trade_no, states.UNKNOWN, states.DECLINED, timeout=40)
    assert record["state"] == states.UNKNOWN and record["gatewayCode"] == "8000", record
    history = [h["detail"].get("reason", "") for h in record["history"]]
    assert any("may already exist" in reason for reason in history), history
    # the gateway does not know it and keeps refusing: a person decides, nothing is sent again
    received = stack.sent(trade_no)["received"]
    done = reconcile(stack, refused_review_after=1)
    assert done.get("refused_needs_review") == 1, done
    record = stack.record(trade_no)
    assert record["state"] == states.UNKNOWN and record["needsReview"] is True
    assert "refused the checkout" in record["reviewReason"]
    assert stack.sent(trade_no)["received"] == received and stack.sent(trade_no)["created"] == 0


def test_a_create_8000_saying_duplicate_trade_no_is_settled_by_query(stack):
    # the gateway already holds the order (sent by a request this job never heard of)
    job = payload()
    trade_no = job["tradeNo"]
    assert stack.runtime.gateway.checkout({**job, "notifyUrl": stack.settings.notify_url}).code == "0000"
    stack.enqueue(job)
    record = stack.wait_state(trade_no, states.PAYING, states.DECLINED, states.UNKNOWN, timeout=40)
    assert record["state"] == states.PAYING, record  # its record, not "declined"
    assert stack.sent(trade_no)["created"] == 1 and stack.sent(trade_no)["duplicates"] == 1


def test_a_duplicate_trade_no_the_query_does_not_know_is_unknown_not_declined(stack):
    job = payload()
    trade_no = job["tradeNo"]
    stack.faults({"tradeNo": trade_no, "kind": "code_8000", "message": "duplicate tradeNo"})
    stack.enqueue(job)
    record = stack.wait_state(trade_no, states.UNKNOWN, states.DECLINED, timeout=40)
    assert record["state"] == states.UNKNOWN, record


# -- finding 6: a plain amount may be the order's --------------------------------------------------
def test_a_query_with_only_the_orders_amount_never_closes_a_partial_payment(stack):
    trade_no = stack.paying()
    stack.set_gateway_status(trade_no, "0001", "250")
    record = stack.wait_state(trade_no, states.PARTIALLY_PAID)
    assert record["paidAmount"] == "250" and not record["needsReview"]
    stack.drop_callbacks(trade_no)
    stack.set_gateway_status(trade_no, "0000", "250")  # "paid", 250 of 300; its callback is lost
    # the gateway page names no paid amount: its "amount" is the order's, 300
    stack.faults({"endpoint": "query", "tradeNo": trade_no, "kind": "amount_only", "times": -1})
    done = reconcile(stack)
    assert not done.get(f"settled_{states.SUCCEEDED}"), done
    record = stack.record(trade_no)
    assert record["state"] == states.PARTIALLY_PAID and record["paidAmount"] == "250"
    assert record["needsReview"] is True and "not named as paid" in record["reviewReason"]
    assert states.SUCCEEDED not in visited(record)


def test_a_flagged_job_sent_again_is_judged_as_flagged_by_its_submits_query(stack):
    # A job already flagged (its first request was ambiguous) is sent again: the resend's query
    # answers paid with only the plain amount, the order's. A flagged job is never settled by that
    # (docs/gateway.md §Amounts): the submit must judge the job as it is, flagged, not as it
    # claimed it (before this, the resend held a copy without the flag and moved it to succeeded).
    rt = stack.runtime
    job = payload()
    trade_no = job["tradeNo"]
    stack.drop_callbacks(trade_no)
    # the order exists at the gateway (the first, ambiguous request created it), paid 250 of 300
    assert rt.gateway.checkout({**job, "notifyUrl": stack.settings.notify_url}).code == "0000"
    stack.set_gateway_status(trade_no, "0000", "250")
    stack.faults({"endpoint": "query", "tradeNo": trade_no, "kind": "amount_only", "times": -1})
    # the job as our store knows it: created, one request counted, flagged, queued to be sent again
    rt.store.create(trade_no, job, contact={}, amount=job["amount"])
    rt.store.count_attempt(trade_no)
    assert rt.store.flag(trade_no, "checked by a person first")
    state = rt.submitter.submit(trade_no)  # in this process: the real store and sandbox
    record = stack.record(trade_no)
    assert state != states.SUCCEEDED and record["state"] != states.SUCCEEDED, record
    assert record["needsReview"] is True
    assert stack.sent(trade_no)["created"] == 1  # the resend asked first, sent nothing
