"""Issue 20, findings 2 and 4, end to end (sandbox, a Celery worker, gunicorn): a resolve applies
only to the record the operator saw (ETag / If-Match, the /ops form's version), a resolve to
succeeded records the amount confirmed, and a paid callback for a tradeNo with no job lands in the
review queue."""

from __future__ import annotations

import re

import pytest

from worker.domain import states
from worker.waiting import wait_until
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration

TOKEN = "conditional-token"
USER = "olivia"


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    s = Stack(redis_url, tmp_path_factory.mktemp("conditional"), VEXORA_API_TOKEN=TOKEN).start(workers=1, web=True)
    try:
        yield s
    finally:
        s.stop()


def api(stack, method: str, path: str, headers=None, **kwargs):
    return stack.http.request(method, stack.web_url + path, timeout=30,
                              headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})}, **kwargs)


def ops(stack, method: str, path: str, **kwargs):
    return stack.http.request(method, stack.web_url + path, auth=(USER, TOKEN), timeout=30,
                              allow_redirects=False, **kwargs)


def flagged(stack, status: str = "00032") -> str:
    """A paying job flagged by a callback with a status nobody documented (still open)."""
    trade_no = stack.enqueue(payload())
    stack.wait_state(trade_no, states.PAYING)
    stack.drop_callbacks(trade_no)  # only the test's callbacks arrive
    assert stack.notify(stack.callback(trade_no, status)).status_code == 200
    wait_until(lambda: (stack.record(trade_no) or {}).get("needsReview"), timeout=20, what="the flag")
    return trade_no


def late(stack, trade_no: str, status: str, check) -> None:
    """A genuine callback that arrives while the operator is deciding, and is applied."""
    assert stack.notify(stack.callback(trade_no, status)).status_code == 200
    wait_until(lambda: check(stack.record(trade_no)), timeout=20, what=f"the late {status}")


def test_a_late_payment_between_read_and_resolve_is_412_and_the_job_stays_succeeded(stack):
    trade_no = flagged(stack)
    read = api(stack, "GET", f"/v1/checkouts/{trade_no}")
    etag = read.headers["ETag"]
    assert re.fullmatch(r'"\d+"', etag) and etag == f'"{read.json()["version"]}"'
    late(stack, trade_no, "0000", lambda r: r["state"] == states.SUCCEEDED)

    body = {"state": "failed", "reason": "gateway support: never paid", "operator": "alice"}
    missing = api(stack, "POST", f"/v1/checkouts/{trade_no}/resolve", json=body)
    assert missing.status_code == 428, missing.text
    assert missing.headers["Content-Type"].startswith("application/problem+json")
    stale = api(stack, "POST", f"/v1/checkouts/{trade_no}/resolve", json=body, headers={"If-Match": etag})
    assert stale.status_code == 412, stale.text
    assert stale.headers["Content-Type"].startswith("application/problem+json")
    assert stale.headers["ETag"] != etag
    record = stack.record(trade_no)
    assert record["state"] == states.SUCCEEDED and record["needsReview"] is True
    assert "resolvedBy" not in record
    assert trade_no in [i["tradeNo"] for i in api(stack, "GET", "/v1/review").json()["items"]]


def test_a_flag_raised_between_read_and_resolve_survives(stack):
    trade_no = flagged(stack, "00032")
    etag = api(stack, "GET", f"/v1/checkouts/{trade_no}").headers["ETag"]
    late(stack, trade_no, "00033", lambda r: "00033" in r.get("reviewReason", ""))
    stale = api(stack, "POST", f"/v1/checkouts/{trade_no}/resolve", headers={"If-Match": etag},
                json={"state": "succeeded", "amount": "300", "reason": "paid per portal", "operator": "bob"})
    assert stale.status_code == 412, stale.text
    record = stack.record(trade_no)
    assert record["needsReview"] is True and "00033" in record["reviewReason"]
    assert record["state"] == states.PAYING
    assert trade_no in [i["tradeNo"] for i in api(stack, "GET", "/v1/review").json()["items"]]


def test_a_resolve_to_succeeded_records_the_amount_confirmed(stack):
    trade_no = flagged(stack)
    etag = api(stack, "GET", f"/v1/checkouts/{trade_no}").headers["ETag"]
    body = {"state": "succeeded", "reason": "paid per gateway portal", "operator": "carol"}
    without = api(stack, "POST", f"/v1/checkouts/{trade_no}/resolve", json=body, headers={"If-Match": etag})
    assert without.status_code == 422 and "amount" in without.json()["errors"]
    weak = api(stack, "POST", f"/v1/checkouts/{trade_no}/resolve", json={**body, "amount": "300"},
               headers={"If-Match": f"W/{etag}"})
    assert weak.status_code == 412  # a weak tag never matches (strong comparison)
    done = api(stack, "POST", f"/v1/checkouts/{trade_no}/resolve", json={**body, "amount": "300"},
               headers={"If-Match": etag})
    assert done.status_code == 200, done.text
    record = done.json()
    assert record["state"] == states.SUCCEEDED and record["needsReview"] is False
    # who resolved is the principal (the deprecated token here), never the body's "operator" (issue 21)
    assert record["resolvedAmount"] == "300" and record["resolvedBy"] == "token:VEXORA_API_TOKEN"
    assert done.headers["ETag"] == f'"{record["version"]}"' != etag
    moved = [h for h in record["history"] if h["to"] == states.SUCCEEDED][-1]
    assert moved["detail"]["amount"] == "300" and record["history"][-1]["detail"]["kind"] == "review_resolved"
    assert trade_no not in stack.runtime.store.flagged()


def test_the_ops_form_with_a_stale_version_is_refused(stack):
    trade_no = flagged(stack)
    form = ops(stack, "GET", f"/ops/jobs/{trade_no}/resolve")
    assert form.status_code == 200
    version = re.search(r'name="version" value="(\d+)"', form.text).group(1)
    token = re.search(r'name="csrf" value="([0-9a-f]{64})"', form.text).group(1)
    assert version == str(stack.record(trade_no)["version"])
    late(stack, trade_no, "0000", lambda r: r["state"] == states.SUCCEEDED)

    fields = {"csrf": token, "state": "failed", "reason": "never paid", "operator": USER, "version": version}
    confirm = ops(stack, "POST", f"/ops/jobs/{trade_no}/resolve/confirm", data=fields)
    assert confirm.status_code == 409 and "Changed since you looked" in confirm.text
    done = ops(stack, "POST", f"/ops/jobs/{trade_no}/resolve", data=fields)
    assert done.status_code == 409 and "nothing was changed" in done.text
    record = stack.record(trade_no)
    assert record["state"] == states.SUCCEEDED and record["needsReview"] is True

    # the form opened again carries the version it shows now, and goes through
    fresh = re.search(r'name="version" value="(\d+)"', ops(stack, "GET", f"/ops/jobs/{trade_no}/resolve").text)
    again = ops(stack, "POST", f"/ops/jobs/{trade_no}/resolve",
                data={**fields, "state": "succeeded", "amount": "300", "version": fresh.group(1)})
    assert again.status_code == 303, again.text
    assert stack.record(trade_no)["resolvedAmount"] == "300"


def test_a_paid_callback_for_an_unknown_trade_no_lands_in_the_review_queue(stack):
    trade_no = "NOJOB" + payload()["tradeNo"][-10:]
    assert stack.notify(stack.callback(trade_no, "0000", "500.00")).status_code == 200

    def listed():
        return next((o for o in api(stack, "GET", "/v1/review").json()["orphans"] if o["tradeNo"] == trade_no), None)
    orphan = wait_until(listed, timeout=20, what="the orphan in the review queue")
    assert orphan["status"] == "0000" and orphan["source"] == "callback" and orphan["reports"] == 1
    assert orphan["paidAmount"] == "500.00"
    page = ops(stack, "GET", "/ops")
    assert f'data-trade-no="{trade_no}"' in page.text and "Money reported for no job" in page.text
    assert stack.runtime.store.redis.ttl(stack.runtime.store.keys.orphan(trade_no)) == -1

    done = api(stack, "POST", f"/v1/review/orphans/{trade_no}/dismiss",
               json={"reason": "refunded at the gateway", "operator": "dave"})
    assert done.status_code == 200, done.text
    assert listed() is None
    assert api(stack, "POST", f"/v1/review/orphans/{trade_no}/dismiss",
               json={"reason": "again", "operator": "dave"}).status_code == 409
