"""The batch form of ``POST /v1/checkouts`` (a JSON array) on the real web app under gunicorn, a real
worker and the sandbox: each item validated as the single form validates one and answered on its
own, in order; the same scope, account and idempotency rules."""

from __future__ import annotations

import json

import pytest

from worker.domain import states
from worker.store.apikeys import ApiKeys
from worker.web.openapi import BATCH_MAX_ITEMS
from tests.support.stack import MARKERS, MERCHANT_NO, Stack, payload

pytestmark = pytest.mark.integration

PATH = "/v1/checkouts"


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("batch")
    accounts = log_dir / "accounts.toml"  # two accounts: default and b
    accounts.write_text(f'[accounts.default]\nmerchant_no = "{MERCHANT_NO}"\napp_secret_env = "VEXORA_APP_SECRET"\n\n'
                        '[accounts.b]\nmerchant_no = "M-BATCH-0002"\napp_secret_env = "ACCOUNT_B_SECRET"\n',
                        encoding="utf-8")
    s = Stack(redis_url, log_dir, VEXORA_ACCOUNTS_FILE=str(accounts), VEXORA_MERCHANT_NO="",
              ACCOUNT_B_SECRET="b-secret-for-the-batch-test").start(web=True)
    try:
        yield s
    finally:
        s.stop()


def key(stack, account: str, *scopes: str) -> str:
    return ApiKeys(stack.runtime.redis, stack.runtime.store.keys).create("batch test", account, scopes)[1]


@pytest.fixture(scope="module")
def writer(stack) -> str:
    return key(stack, "default", "checkouts:write", "checkouts:read")


def post(stack, body, key_text, **headers):
    return stack.http.post(stack.web_url + PATH, json=body, timeout=30,
                           headers={"Authorization": f"Bearer {key_text}", **headers})


def test_each_item_is_answered_on_its_own_in_order(stack, writer):
    taken = payload()
    assert post(stack, taken, writer).status_code == 202
    fresh = [payload(), payload()]
    bad = payload(mobile="7777", email="nope")
    items = [fresh[0], taken, {**taken, "amount": "999"}, bad, "not an object", payload(tradeNo=None),
             {**payload(), "surprise": "field"}, fresh[1]]
    answer = post(stack, items, writer)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    results = body["results"]
    assert [r["result"] for r in results] == ["created", "duplicate", "conflict", "invalid", "invalid",
                                             "created", "invalid", "created"]
    assert body["counts"] == {"created": 3, "duplicate": 1, "conflict": 1, "invalid": 3}
    assert results[0] == {"tradeNo": fresh[0]["tradeNo"], "result": "created", "state": "queued",
                          "statusUrl": f"{stack.web_url}/v1/checkouts/{fresh[0]['tradeNo']}"}
    assert results[1]["tradeNo"] == taken["tradeNo"] and results[1]["state"] in states.ALL
    assert results[2] == {"tradeNo": taken["tradeNo"], "result": "conflict",
                          "errors": {"tradeNo": ["already used by another job with a different payload"]}}
    assert results[3]["tradeNo"] == bad["tradeNo"] and set(results[3]["errors"]) == {"mobile", "email"}
    assert results[4] == {"tradeNo": None, "result": "invalid", "errors": {"_schema": ["must be an object"]}}
    assert len(results[5]["tradeNo"]) == 32  # generated, as the single form does
    assert list(results[6]["errors"]) == ["surprise"]
    # the errors name rules, never the values sent
    assert "7777" not in answer.text and not any(m in answer.text for m in MARKERS.values())
    # nothing stored for the invalid ones; the conflict left the first payload alone
    assert stack.record(bad["tradeNo"]) is None and stack.record(items[6]["tradeNo"]) is None
    assert stack.runtime.store.load(taken["tradeNo"]).payload["amount"] == taken["amount"]
    # the created ones run, as a single checkout does
    for result in (results[0], results[5], results[7]):
        stack.wait_state(result["tradeNo"], states.PAYING)
    record = stack.http.get(results[0]["statusUrl"], headers={"Authorization": f"Bearer {writer}"}, timeout=15)
    assert record.status_code == 200 and record.json()["state"] == "paying"


def test_the_same_batch_again_is_all_duplicates(stack, writer):
    jobs = [payload() for _ in range(5)]
    first = post(stack, jobs, writer).json()
    again = post(stack, jobs, writer).json()
    assert first["counts"]["created"] == 5 and again["counts"]["duplicate"] == 5
    assert [r["tradeNo"] for r in again["results"]] == [j["tradeNo"] for j in jobs]


def test_limits_and_shapes(stack, writer):
    too_many = post(stack, [payload() for _ in range(BATCH_MAX_ITEMS + 1)], writer)
    assert too_many.status_code == 413 and too_many.headers["Content-Type"] == "application/problem+json"
    assert post(stack, [], writer).status_code == 422
    assert post(stack, "text", writer).status_code == 400
    # the single form keeps its own size limit; a batch may be longer
    big = payload(remark="x" * 100)
    many = [payload() for _ in range(200)]
    assert len(json.dumps(many)) > stack.settings.callback_max_bytes
    answer = post(stack, many, writer)
    assert answer.status_code == 200 and answer.json()["counts"]["created"] == 200
    assert post(stack, big, writer).status_code == 202
    assert stack.http.post(stack.web_url + PATH, data=json.dumps({**payload(), "pad": "y" * 70_000}),
                           headers={"Authorization": f"Bearer {writer}", "Content-Type": "application/json"},
                           timeout=15).status_code == 413


def test_scope_and_account_rules_are_the_single_forms(stack, writer):
    reader = key(stack, "default", "checkouts:read")
    assert post(stack, [payload()], reader).status_code == 403
    assert post(stack, [payload()], "vxk_nope_nope").status_code == 401
    # a key of one account may not name another
    assert post(stack, [payload()], writer, **{"Vexora-Account": "b"}).status_code == 422
    every = key(stack, "*", "checkouts:write")
    assert post(stack, [payload()], every).status_code == 422  # names no account
    job = payload()
    answer = post(stack, [job], every, **{"Vexora-Account": "b"})
    assert answer.status_code == 200 and answer.json()["results"][0]["result"] == "created"
    assert stack.runtime.store.load(job["tradeNo"]).account == "b"
    # the same payload under the default account is another job: the tradeNo is taken
    assert post(stack, [job], writer).json()["results"][0]["result"] == "conflict"
