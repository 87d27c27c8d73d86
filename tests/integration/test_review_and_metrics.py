"""Issue 13: the review queue over HTTP and the CLI, and /metrics equal to the store after an
end-to-end run with two workers (real sandbox, workers, gunicorn)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from worker.domain import states
from worker.waiting import wait_until
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

TOKEN = "review-token"


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    s = Stack(redis_url, tmp_path_factory.mktemp("review"), VEXORA_API_TOKEN=TOKEN).start(workers=2, web=True)
    try:
        yield s
    finally:
        s.stop()


def api(stack, method: str, path: str, headers=None, **kwargs):
    return stack.http.request(method, stack.web_url + path, timeout=30,
                              headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})}, **kwargs)


def test_a_job_the_reconciler_cannot_settle_is_listed_and_resolved_with_who_and_why(stack):
    trade_no = stack.unsettled()
    listed = api(stack, "GET", "/v1/review").json()
    item = next(i for i in listed["items"] if i["tradeNo"] == trade_no)
    assert item["state"] == states.UNKNOWN and "horizon" in item["reviewReason"]
    assert item["amount"] == "300" and item["ageSeconds"] >= 0
    assert "mobile" not in json.dumps(listed) and "email" not in json.dumps(listed)

    etag = {"If-Match": api(stack, "GET", f"/v1/checkouts/{trade_no}").headers["ETag"]}
    assert api(stack, "POST", f"/v1/checkouts/{trade_no}/resolve", headers=etag,
               json={"state": "succeeded", "operator": "alice"}).status_code == 422
    answer = api(stack, "POST", f"/v1/checkouts/{trade_no}/resolve", headers=etag,
                 json={"state": "failed", "reason": "gateway support: never paid", "operator": "alice"})
    assert answer.status_code == 200, answer.text
    record = answer.json()
    assert record["state"] == states.FAILED and record["needsReview"] is False
    # who resolved is the principal (the deprecated token here), never the body's "operator" (issue 21)
    assert record["resolvedBy"] == "token:VEXORA_API_TOKEN" and record["resolvedReason"] == "gateway support: never paid"
    last = [h for h in record["history"] if h["to"] == states.FAILED][-1]
    assert last["detail"]["operator"] == "token:VEXORA_API_TOKEN" and last["detail"]["why"] == "gateway support: never paid"
    assert trade_no not in [i["tradeNo"] for i in api(stack, "GET", "/v1/review").json()["items"]]
    # not in review any more: 409
    again = api(stack, "POST", f"/v1/checkouts/{trade_no}/resolve",
                headers={"If-Match": api(stack, "GET", f"/v1/checkouts/{trade_no}").headers["ETag"]},
                json={"state": "succeeded", "amount": "300", "reason": "x", "operator": "bob"})
    assert again.status_code == 409


def test_query_now_applies_the_gateways_answer_by_the_normal_rules(stack):
    trade_no = stack.paying()
    stack.drop_callbacks(trade_no)
    stack.set_gateway_status(trade_no, "0000", "250")  # short: partially paid and flagged
    answer = api(stack, "POST", f"/v1/checkouts/{trade_no}/query").json()
    assert answer["gateway"] == "0000" and answer["result"] == states.PARTIALLY_PAID
    assert answer["record"]["needsReview"] is True
    assert api(stack, "POST", "/v1/checkouts/NOSUCHJOB/query").status_code == 404


def test_the_cli_lists_and_resolves(stack):
    trade_no = stack.paying()
    stack.notify(stack.callback(trade_no, "00032"))  # undocumented status: flagged, stays open
    wait_until(lambda: (stack.record(trade_no) or {}).get("needsReview"), timeout=20, what="the flag")
    env = stack.env
    listed = subprocess.run([sys.executable, "-m", "worker.cli", "review", "--json"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert trade_no in listed.stdout, listed.stderr
    resolve = [sys.executable, "-m", "worker.cli", "review", "resolve", trade_no, "--state", "succeeded",
               "--amount", "300", "--reason", "paid per gateway portal", "--operator", "carol"]
    shown = subprocess.run(resolve[:6], env=env, capture_output=True, text=True, timeout=60)
    version = stack.record(trade_no)["version"]
    # without --version: the record and its version only, nothing changed
    assert shown.returncode == 2 and f"--version {version}" in shown.stderr and trade_no in shown.stdout
    assert stack.record(trade_no)["needsReview"] is True
    stale = subprocess.run([*resolve, "--version", str(version - 1)], env=env, capture_output=True, text=True,
                           timeout=60)
    assert stale.returncode == 1 and "changed since you read it" in stale.stderr
    assert stack.record(trade_no)["state"] == states.PAYING
    done = subprocess.run([*resolve, "--version", str(version)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    record = stack.record(trade_no)
    assert record["state"] == states.SUCCEEDED and record["resolvedAmount"] == "300"


def _metrics(stack) -> dict:
    text = stack.http.get(stack.web_url + "/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_parse_and_equal_the_store_after_an_end_to_end_run(stack):
    jobs = [stack.paying() for _ in range(6)]
    stack.set_gateway_status(jobs[0], "0000")
    stack.wait_state(jobs[0], states.SUCCEEDED)
    store = stack.runtime.store

    def equal():
        m = _metrics(stack)
        for state in states.OPEN:
            if m.get(("vexora_jobs", (("account", "default"), ("state", state)))) != store.redis.zcard(store.keys.entered(state)):
                return False
        live = {s: 0 for s in states.OPEN}
        for key in store.redis.scan_iter(match="vexora:job:*", count=1000):
            if key.count(b":") == 2:
                state = store.redis.hget(key, "state").decode()
                if state in live:
                    live[state] += 1
        jobs_ok = all(m[("vexora_jobs", (("account", "default"), ("state", s)))] == n for s, n in live.items())
        review_ok = m[("vexora_jobs_needing_review", ())] == store.redis.scard(store.keys.review)
        into_succeeded = sum(v for (name, labels), v in m.items()
                             if name == "vexora_transitions_total" and ("to", "succeeded") in labels)
        succeeded = sum(1 for key in store.redis.scan_iter(match="vexora:job:*", count=1000)
                        if key.count(b":") == 2 and store.redis.hget(key, "state") == b"succeeded")
        created = m.get(("vexora_transitions_total", (("account", "default"), ("from", "new"), ("to", "queued"))))
        all_jobs = sum(1 for key in store.redis.scan_iter(match="vexora:job:*", count=1000) if key.count(b":") == 2)
        requests = sum(v for (name, labels), v in m.items()
                       if name == "vexora_gateway_requests_total" and ("op", "checkout") in labels)
        sent = sum(c["received"] for c in stack.stats()["checkout"].values())
        # the web app's and the workers' own counts arrive with their next flush too
        flushed = (m.get(("vexora_callbacks_total", (("account", "default"), ("result", "accepted"))), 0) >= 1
                   and m.get(("vexora_gateway_request_duration_seconds_count", (("op", "checkout"),)), 0) >= 6)
        return (jobs_ok and review_ok and into_succeeded == succeeded and created == all_jobs
                and requests == sent and flushed)
    wait_until(equal, timeout=30, interval=0.5, what="/metrics to equal the store (workers flush every 5 s)")
    text = stack.http.get(stack.web_url + "/metrics", timeout=10).text
    for job in jobs:
        assert job not in text  # no tradeNo as a label, ever
