"""The callback endpoint's one Redis step (``callback_queue.lua``, ``JobStore.queue_callback``) on
a real redis-server: the job's account read and the task message pushed together; a message
exactly as ``send_task`` would have queued it; nothing pushed for a refused callback, refused and
counted as before. (That a real worker applies what the endpoint queued:
tests/integration/test_callbacks.py, whose stack's web takes this path.)"""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from worker.domain import states
from worker.domain.masking import mask_contact
from worker.store.keys import broker_queue
from worker.web.wsgi import create_app
from tests.support.stack import MERCHANT_NO, Stack, payload
from tests.unit.test_callback_boundaries import FakeMeter

pytestmark = pytest.mark.integration

B_MERCHANT = "M-TEST-0002"
B_SECRET = "b-sekret-MARKER-77c1"
ACCOUNTS = f"""
[accounts.default]
merchant_no = "{MERCHANT_NO}"
app_secret_env = "VEXORA_APP_SECRET"

[accounts.shop-b]
merchant_no = "{B_MERCHANT}"
app_secret_env = "SHOP_B_SECRET"
"""
QUEUE = "callbacks"


@pytest.fixture
def web(redis_url, tmp_path):
    """The web app (Flask's test client) on a database of its own, two accounts, no worker: what
    the endpoint queued stays in the broker's list."""
    (tmp_path / "accounts.toml").write_text(ACCOUNTS, encoding="utf-8")
    stack = Stack(redis_url.rsplit("/", 1)[0] + "/9", tmp_path, VEXORA_ACCOUNTS_FILE=str(tmp_path / "accounts.toml"),
                  VEXORA_MERCHANT_NO="", SHOP_B_SECRET=B_SECRET)
    runtime = stack.runtime
    runtime.redis.flushdb()
    runtime.__dict__["meter"] = FakeMeter()  # the counts, read here rather than from Redis
    assert runtime.task_messages is not None  # the broker is the store's Redis: the one-step path
    stack.client = create_app(stack.settings, runtime=runtime).test_client()
    yield stack
    runtime.redis.flushdb()


def paying(stack: Stack, account: str = "default") -> str:
    job = payload()
    trade_no = job["tradeNo"]
    store = stack.runtime.store
    store.create(trade_no, job, contact=mask_contact(job), amount=job["amount"], account=account)
    store.move(trade_no, states.SUBMITTING, claim_lease=60)
    store.move(trade_no, states.PAYING, fields={"platFormTradeNo": "p-" + trade_no[-8:]})
    return trade_no


def post(stack: Stack, body: bytes):
    return stack.client.post("/vexora/notify", data=body, content_type="application/json")


def queued(stack: Stack) -> list[dict]:
    """The broker list's messages, oldest first, as a worker would read them."""
    raw = stack.runtime.redis.lrange(broker_queue(QUEUE), 0, -1)
    return [json.loads(m) for m in reversed(raw)]


def args_of(message: dict) -> list:
    return json.loads(base64.b64decode(message["body"]))[0]


def counts(stack: Stack) -> dict:
    return {dict(labels)["result"] + "/" + dict(labels)["account"]: n
            for (_, labels), n in stack.runtime.meter.counts.items()}


def test_a_genuine_callback_is_queued_as_send_task_would_queue_it(web):
    trade_no = paying(web, "shop-b")
    fields = web.callback_fields(trade_no)
    # the same instant: two calls a millisecond apart would stamp two timestamps
    answer = post(web, web.callback(trade_no, secret=B_SECRET, timestamp=fields["timestamp"]))
    assert (answer.status_code, answer.get_data(), answer.content_type) == (200, b"OK", "text/plain; charset=utf-8")
    [message] = queued(web)
    assert message["headers"]["task"] == "vexora.callback.process"
    assert message["properties"]["delivery_info"]["routing_key"] == QUEUE
    # the verified fields without sign, numbers as their text, and the job's account: as before
    assert args_of(message) == [{**fields, "account": "shop-b"}]
    assert "sign" not in message["headers"]["argsrepr"]
    assert counts(web) == {"accepted/shop-b": 1}


def test_a_callback_for_no_job_is_queued_for_the_account_whose_secret_signed_it(web):
    trade_no = uuid.uuid4().hex[:16]
    assert post(web, web.callback(trade_no, secret=B_SECRET)).get_data() == b"OK"
    assert post(web, web.callback(trade_no)).get_data() == b"OK"
    assert [args_of(m)[0]["account"] for m in queued(web)] == ["shop-b", "default"]
    assert counts(web) == {"accepted/shop-b": 1, "accepted/default": 1}


@pytest.mark.parametrize("how,status,result", [
    ("another account's secret", 401, "bad_signature"),
    ("a forged signature", 401, "bad_signature"),
    ("another account's merchantNo", 400, "refused_merchant"),
    ("an undocumented field", 400, "refused_fields"),
    ("a malformed amount", 400, "invalid"),
])
def test_a_refused_callback_pushes_nothing_and_is_counted_as_the_jobs_account(web, how, status, result):
    trade_no = paying(web)  # default's job
    body = {
        "another account's secret": lambda: web.callback(trade_no, secret=B_SECRET),
        "a forged signature": lambda: web.callback(trade_no, secret="not-the-secret"),
        "another account's merchantNo": lambda: web.callback(trade_no, merchantNo=B_MERCHANT),
        "an undocumented field": lambda: web.callback(trade_no, extra="x"),
        "a malformed amount": lambda: web.callback(trade_no, amount="3e2"),
    }[how]()
    answer = post(web, body)
    assert answer.status_code == status and answer.get_data() != b"OK"
    assert queued(web) == []
    assert counts(web) == {f"{result}/default": 1}
    assert web.runtime.store.load(trade_no).state == states.PAYING


def test_the_store_step_pushes_only_for_the_jobs_account(web):
    store = web.runtime.store
    a = paying(web)
    assert store.queue_callback(a, [("shop-b", "m-b")], QUEUE) == (True, "default", False)
    assert queued_raw(web) == []
    assert store.queue_callback(a, [("shop-b", "m-b"), ("default", "m-a")], QUEUE) == (True, "default", True)
    assert queued_raw(web) == ["m-a"]
    # a record from before accounts is default's
    web.runtime.redis.hdel(store.keys.job(a), "account")
    assert store.queue_callback(a, [("default", "m-a2")], QUEUE) == (True, "default", True)
    # no job: the first account given
    assert store.queue_callback("no-such-job", [("shop-b", "m-n"), ("default", "m-x")], QUEUE) == (False, "shop-b", True)
    assert queued_raw(web) == ["m-a", "m-a2", "m-n"]
    with pytest.raises(ValueError):
        store.queue_callback(a, [], QUEUE)


def queued_raw(stack: Stack) -> list[str]:
    return [m.decode() for m in reversed(stack.runtime.redis.lrange(broker_queue(QUEUE), 0, -1))]
