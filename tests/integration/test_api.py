"""The producer HTTP API on the real web app (gunicorn), worker and sandbox — and curl."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from worker import states
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
    assert answer.status_code == 422
    assert set(answer.json()["errors"]) == {"mobile", "email", "amount"}
    assert "7777" not in answer.text
    assert stack.record(job["tradeNo"]) is None and stack.sent(job["tradeNo"])["received"] == 0


def test_idempotent_on_trade_no(stack):
    job = payload()
    first, again = post(stack, job), post(stack, job)
    assert first.status_code == again.status_code == 202
    assert again.json()["tradeNo"] == job["tradeNo"]
    conflict = post(stack, {**job, "amount": "999"})
    assert conflict.status_code == 409 and "tradeNo" in conflict.json()["errors"]
    stack.wait_state(job["tradeNo"], states.PAYING)
    assert stack.sent(job["tradeNo"])["created"] == 1


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_a_bearer_token_is_required(stack, token):
    answer = post(stack, payload(), token=token)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert get(stack, "anything", token=token or "").status_code == 401


def test_unknown_checkout_is_404_and_non_object_body_400(stack):
    assert get(stack, "NOPE").status_code == 404
    answer = stack.http.post(stack.web_url + "/v1/checkouts", data=b"[1]",
                             headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert answer.status_code == 400


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
