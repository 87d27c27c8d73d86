"""Settlement end to end (issue 10): every path to a final state goes through one set of rules.

Real sandbox gateway, real worker, the web app under gunicorn; the reconciler is run by the test
(one pass at a time, with settings that make every open job due) so each scenario is exact.
"""

from __future__ import annotations

import json

import pytest
import redis

from worker.client import enqueue_checkout, get_checkout
from worker.domain import states
from worker.domain.errors import InvalidError
from worker.flows.reconcile import Reconciler
from worker.flows.settle import Settler
from worker.store.limits import canonical_ip, ip_hash
from worker.waiting import wait_until
from tests.support.stack import APP_SECRET, Stack, payload

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    s = Stack(redis_url, tmp_path_factory.mktemp("settlement")).start(web=True)
    try:
        yield s
    finally:
        s.stop()


def reconcile(stack) -> dict:
    """One reconciler pass in this process, every open job due at once."""
    rt = stack.runtime
    settings = stack.settings.replace(paying_query_after=0, queued_redrive_after=3600)
    return Reconciler(settings, rt.store, rt.gateway, lambda t: rt.send("vexora.checkout.submit", t),
                      Settler(rt.store, rt.limits)).run()


def flagged(stack, trade_no: str) -> dict:
    return wait_until(lambda: (r := stack.record(trade_no)) and r.get("needsReview") and r.get("reviewReason") and r,
                      timeout=20, what=f"{trade_no} to be flagged for review")


def review_events(stack, trade_no: str) -> list[dict]:
    return [json.loads(e["detail"]) for _, e in stack.runtime.store.events(count=100_000)
            if e["tradeNo"] == trade_no and json.loads(e["detail"]).get("kind") == "needs_review"]


# -- 1. partially_paid is open --------------------------------------------------------------------
def test_a_second_partial_payment_moves_the_job_again_with_the_larger_amount(stack):
    trade_no = stack.paying()
    stack.notify(stack.callback(trade_no, "0001", "100.00"))
    stack.wait_state(trade_no, states.PARTIALLY_PAID)
    stack.notify(stack.callback(trade_no, "0001", "200.00"))
    record = wait_until(lambda: (r := stack.record(trade_no))["paidAmount"] == "200" and r,
                        timeout=20, what="the second partial payment")
    assert [h["to"] for h in record["history"]][-2:] == ["partially_paid", "partially_paid"]
    stack.notify(stack.callback(trade_no, "0001", "150.00"))  # a stale one changes nothing
    stack.notify(stack.callback(trade_no, "0000", "300.00"))
    record = stack.wait_state(trade_no, states.SUCCEEDED)
    assert record["paidAmount"] == "300" and record["gatewayPaidAmount"] == "300.00"
    assert [h["to"] for h in record["history"]].count("partially_paid") == 2


def test_a_failure_after_a_partial_payment_fails_the_job_and_asks_for_a_person(stack):
    trade_no = stack.paying()
    stack.notify(stack.callback(trade_no, "0001", "100.00"))
    stack.wait_state(trade_no, states.PARTIALLY_PAID)
    stack.notify(stack.callback(trade_no, "00029"))
    stack.wait_state(trade_no, states.FAILED)
    record = flagged(stack, trade_no)  # the flag's reason and event follow the move at once
    assert record["state"] == states.FAILED and "refund" in record.get("reviewReason", "")


def test_a_partial_payment_whose_final_callback_is_lost_is_settled_by_query(stack):
    trade_no = stack.paying()
    stack.set_gateway_status(trade_no, "0001", "150")
    stack.wait_state(trade_no, states.PARTIALLY_PAID)
    stack.drop_callbacks(trade_no)
    stack.set_gateway_status(trade_no, "0000", "300")  # its callback never arrives
    done = reconcile(stack)
    assert done.get(f"settled_{states.SUCCEEDED}", 0) >= 1, done
    record = stack.record(trade_no)
    assert record["state"] == states.SUCCEEDED and record["paidAmount"] == "300"
    assert trade_no not in stack.runtime.store.open_jobs(states.PARTIALLY_PAID)


# -- 2. a refusal after an ambiguous send is not declined --------------------------------------------
def test_a_403_page_from_the_query_after_a_timeout_leaves_the_job_unknown_not_declined(stack):
    job = payload()
    trade_no = job["tradeNo"]
    # the order is created, the answer comes too late (read timeout), and the query meets a WAF
    stack.faults({"tradeNo": trade_no, "kind": "slow_after_create", "delay": 2.0},
                 {"tradeNo": trade_no, "endpoint": "query", "kind": "http_error", "status": 403, "times": -1})
    stack.enqueue(job)
    record = stack.wait_state(trade_no, states.UNKNOWN, states.DECLINED, timeout=40)
    assert record["state"] == states.UNKNOWN and record["httpStatus"] == 403
    assert "payload" not in record and stack.runtime.store.load(trade_no).payload is not None
    stack.faults()
    assert reconcile(stack).get(f"settled_{states.PAYING}", 0) >= 1
    assert stack.record(trade_no)["state"] == states.PAYING
    assert stack.sent(trade_no)["created"] == 1 and stack.sent(trade_no)["duplicates"] == 0


# -- 3. every success counts for the payer's IP -------------------------------------------------
def test_successes_settled_by_query_count_for_the_ip_limit(stack):
    ip = "8.8.4.7"
    for _ in range(3):
        trade_no = stack.paying(ipAddress=ip)
        stack.drop_callbacks(trade_no)
        stack.set_gateway_status(trade_no, "0000")
    reconcile(stack)
    hashed = ip_hash(ip, APP_SECRET)
    assert stack.runtime.limits.counts(hashed)["ok"] == 3
    fourth = stack.enqueue(payload(ipAddress=ip))
    record = stack.wait_state(fourth, states.REJECTED)
    assert "3 successful" in record["errors"]["ipAddress"][0]
    assert stack.sent(fourth)["received"] == 0


# -- 4. one amount rule on every path -------------------------------------------------------------
def test_a_query_that_reports_a_short_payment_is_flagged_not_succeeded(stack):
    trade_no = stack.paying()
    stack.drop_callbacks(trade_no)
    stack.set_gateway_status(trade_no, "0000", "200")
    reconcile(stack)
    record = stack.record(trade_no)
    assert record["state"] == states.PARTIALLY_PAID and record["paidAmount"] == "200"
    assert record["needsReview"] is True and review_events(stack, trade_no)


# -- 5. unrecognised statuses never end a payment ----------------------------------------------------
def test_an_unrecognised_status_keeps_the_job_open_flagged_and_a_later_payment_settles_it(stack):
    trade_no = stack.paying()
    stack.notify(stack.callback(trade_no, "00032", "300.00"))
    record = flagged(stack, trade_no)
    assert record["state"] == states.PAYING and "00032" in record["reviewReason"]
    assert stack.runtime.store.load(trade_no) is not None
    stack.notify(stack.callback(trade_no, "00032", "300.00"))  # resent: flagged once
    stack.notify(stack.callback(trade_no, "0000", "300.00"))
    record = stack.wait_state(trade_no, states.SUCCEEDED)
    assert len(review_events(stack, trade_no)) == 1


def test_an_unrecognised_status_from_the_query_keeps_the_job_open(stack):
    trade_no = stack.paying()
    stack.drop_callbacks(trade_no)
    stack.set_gateway_status(trade_no, "0100019")
    reconcile(stack)
    record = stack.record(trade_no)
    assert record["state"] == states.PAYING and record["needsReview"] is True
    # still indexed for the reconciler (its next check scheduled ahead)
    assert trade_no in stack.runtime.store.open_jobs(states.PAYING, older_than_s=-86400, limit=100_000)


# -- 6. one IP, however it is spelt; counted once per job --------------------------------------------
def test_every_spelling_of_an_ip_is_one_payer():
    spellings = ["2400:ab00::1", "2400:AB00::1", "2400:ab00:0::1", "2400:ab00:0:0:0:0:0:1"]
    assert {canonical_ip(s) for s in spellings} == {"2400:ab00::1"}
    assert canonical_ip("::ffff:133.0.0.1") == "133.0.0.1"
    assert len({ip_hash(s, APP_SECRET) for s in spellings}) == 1


def test_the_ten_transaction_limit_sees_one_ip_in_many_spellings(stack):
    spellings = ["2400:ab00::1", "2400:AB00::1", "2400:ab00:0::1"]
    for n in range(10):
        stack.paying(ipAddress=spellings[n % 3])
    trade_no = stack.enqueue(payload(ipAddress="2400:Ab00:0000::1"))
    record = stack.wait_state(trade_no, states.REJECTED)
    assert "10 transactions" in record["errors"]["ipAddress"][0]


def test_a_transaction_is_counted_once_per_job_even_when_redriven(stack):
    store, limits = stack.runtime.store, stack.runtime.limits
    job = payload(ipAddress="8.8.4.9")
    store.create(job["tradeNo"], job, contact={})
    hashed = ip_hash(job["ipAddress"], APP_SECRET)
    for _ in range(3):  # a crash after counting, before the attempt was recorded, then re-drives
        assert limits.take(hashed, job["tradeNo"], store.keys.job(job["tradeNo"])) is None
    assert limits.counts(hashed)["tx"] == 1


# -- 7. a tradeNo is checked before it becomes a key -------------------------------------------------
@pytest.mark.parametrize("bad", ["X:history", "X:payload", "a b", "ü", "x" * 33])
def test_a_trade_no_that_breaks_the_rule_is_refused_everywhere_before_anything_is_stored(stack, bad):
    before = set(stack.runtime.redis.keys("vexora:job:*"))
    with pytest.raises(InvalidError) as refused:
        enqueue_checkout(payload(tradeNo=bad), runtime=stack.runtime)
    assert list(refused.value.errors) == ["tradeNo"]
    with pytest.raises(InvalidError):
        stack.runtime.store.create(bad, payload(tradeNo=bad), contact={})
    answer = stack.runtime.celery.send_task("vexora.checkout.enqueue", kwargs=payload(tradeNo=bad)).get(timeout=30)
    assert answer["tradeNo"] is None and "tradeNo" in answer["errors"]
    assert set(stack.runtime.redis.keys("vexora:job:*")) == before
    assert get_checkout(bad, runtime=stack.runtime) is None


def test_a_job_named_like_another_jobs_key_cannot_break_it(stack):
    trade_no = stack.paying()
    with pytest.raises(InvalidError):
        enqueue_checkout(payload(tradeNo=f"{trade_no}:history"), runtime=stack.runtime)
    assert get_checkout(trade_no, runtime=stack.runtime)["state"] == states.PAYING


# -- 8. the producer API answers 503 when the broker refuses ---------------------------------------
def test_the_producer_api_answers_503_with_the_trade_no_when_the_broker_refuses(redis_url, tmp_path):
    from worker.local.redis_server import free_port
    token = "broker-down-token"
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: every publish is refused
    s = Stack(redis_url, tmp_path, VEXORA_API_TOKEN=token, VEXORA_BROKER_URL=dead)
    try:
        s.start(workers=0, web=True)
        job = payload()
        answer = s.http.post(s.web_url + "/v1/checkouts", json=job, timeout=60,
                             headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 503, answer.text
        assert answer.json()["tradeNo"] == job["tradeNo"]
        # stored and waiting: the same request later (or the reconciler's re-drive) queues it
        stored = redis.Redis.from_url(redis_url).hget(f"vexora:job:{{{job['tradeNo']}}}", "state")
        assert stored == b"queued"
    finally:
        s.stop()
