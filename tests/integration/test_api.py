"""The producer HTTP API on the real web app (gunicorn), worker and sandbox — and curl."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from worker.domain import states
from tests.support.stack import MARKERS, Stack, payload

pytestmark = pytest.mark.integration

TOKEN = "api-token-for-tests"


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    s = Stack(redis_url, tmp_path_factory.mktemp("api"), VEXORA_API_TOKEN=TOKEN).start(web=True)
    try:
        yield s
    finally:
        s.stop()


def post(stack, body, token=TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return stack.http.post(stack.web_url + "/v1/checkouts", json=body, headers=headers, timeout=15)


def get(stack, trade_no, token=TOKEN):
    return stack.http.get(f"{stack.web_url}/v1/checkouts/{trade_no}",
                          headers={"Authorization": f"Bearer {token}"}, timeout=15)


def assert_problem(answer, status: int, path: str) -> dict:
    """An RFC 9457 problem document, with ``error`` kept for clients written before."""
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "application/problem+json", answer.headers
    body = answer.json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body), body
    assert (body["type"], body["status"], body["instance"]) == ("about:blank", status, path), body
    assert body["error"] == body["detail"], body
    return body


def test_post_202_then_the_job_reaches_paying(stack):
    job = payload()
    answer = post(stack, job)
    assert answer.status_code == 202
    body = answer.json()
    assert body["tradeNo"] == job["tradeNo"] and body["state"] == "queued"
    assert body["statusUrl"] == f"{stack.web_url}/v1/checkouts/{job['tradeNo']}"
    assert answer.headers["Location"] == body["statusUrl"]
    stack.wait_state(job["tradeNo"], states.PAYING)
    record = get(stack, job["tradeNo"]).json()
    assert record["state"] == "paying" and record["paymentLink"]
    assert not any(marker in json.dumps(record, ensure_ascii=False) for marker in MARKERS.values())


def test_a_generated_trade_no_when_absent(stack):
    answer = post(stack, payload(tradeNo=None))
    assert answer.status_code == 202 and len(answer.json()["tradeNo"]) == 32


def test_invalid_fields_are_422_and_nothing_is_stored(stack):
    job = payload(mobile="7777", email="nope", amount="1.5")
    answer = post(stack, job)
    body = assert_problem(answer, 422, "/v1/checkouts")
    # the documented shape: field errors under the top-level `errors`, as before problem documents
    assert set(body["errors"]) == {"mobile", "email", "amount"}
    assert all(isinstance(v, list) and v for v in body["errors"].values()), body
    assert (body["title"], body["detail"]) == ("Unprocessable Content", "invalid checkout")
    assert "7777" not in answer.text
    assert stack.record(job["tradeNo"]) is None and stack.sent(job["tradeNo"])["received"] == 0


def test_idempotent_on_trade_no(stack):
    job = payload()
    first, again = post(stack, job), post(stack, job)
    assert first.status_code == again.status_code == 202
    assert again.json()["tradeNo"] == job["tradeNo"]
    conflict = post(stack, {**job, "amount": "999"})
    assert "tradeNo" in assert_problem(conflict, 409, "/v1/checkouts")["errors"]
    stack.wait_state(job["tradeNo"], states.PAYING)
    assert stack.sent(job["tradeNo"])["created"] == 1


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_a_bearer_token_is_required(stack, token):
    answer = post(stack, payload(), token=token)
    assert_problem(answer, 401, "/v1/checkouts")
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert_problem(get(stack, "anything", token=token or ""), 401, "/v1/checkouts/anything")


def test_unknown_checkout_is_404_and_non_object_body_400(stack):
    assert_problem(get(stack, "NOPE"), 404, "/v1/checkouts/NOPE")
    for body in (b"1", b'"text"', b"null", b"not json"):
        answer = stack.http.post(stack.web_url + "/v1/checkouts", data=body,
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        assert_problem(answer, 400, "/v1/checkouts")
    # an array is the batch form (tests/integration/test_api_batch.py): its items answered one by one
    answer = stack.http.post(stack.web_url + "/v1/checkouts", data=b"[1]",
                             headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.json()["results"] == [
        {"tradeNo": None, "result": "invalid", "errors": {"_schema": ["must be an object"]}}]


def test_routing_errors_are_problem_documents_too(stack):
    """Over gunicorn: an unknown path, a wrong method (its Allow kept) and a body over the limit."""
    assert_problem(stack.http.get(stack.web_url + "/v2/nothing", timeout=5), 404, "/v2/nothing")
    answer = stack.http.delete(stack.web_url + "/v1/checkouts", timeout=5)
    assert_problem(answer, 405, "/v1/checkouts")
    assert "POST" in answer.headers["Allow"]
    big = b'{"pad": "' + b"x" * (stack.settings.callback_max_bytes + 1) + b'"}'
    answer = stack.http.post(stack.web_url + "/v1/checkouts", data=big, timeout=15,
                             headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert assert_problem(answer, 413, "/v1/checkouts")["title"] == "Content Too Large"


def test_openapi_is_served_without_a_token(stack):
    document = stack.http.get(stack.web_url + "/v1/openapi.json", timeout=5).json()
    assert document["openapi"].startswith("3.") and "/v1/checkouts" in document["paths"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_a_curl_command_gets_a_job_to_paying(stack):
    job = payload()
    out = subprocess.run(
        ["curl", "-sS", "-X", "POST", f"{stack.web_url}/v1/checkouts",
         "-H", f"Authorization: Bearer {TOKEN}", "-H", "Content-Type: application/json",
         "--data-binary", json.dumps(job, ensure_ascii=False)],
        capture_output=True, text=True, timeout=30, check=True).stdout
    assert json.loads(out)["tradeNo"] == job["tradeNo"]
    assert stack.wait_state(job["tradeNo"], states.PAYING)["paymentLink"]
