"""Several merchant accounts through the real pipeline (issue 21): the sandbox gateway, a Celery
worker and the web app (gunicorn) on an accounts file with two accounts.

- each account's jobs are signed with its own secret and sent with its own ``merchantNo`` (the
  sandbox refuses a wrong pairing, as the gateway does);
- a callback for an account-A job signed with B's secret is refused and moves nothing; one whose
  ``merchantNo`` names B is refused too;
- a callback signed with B's previous secret is accepted while ``previous_app_secret_env`` is set,
  and refused once it is removed (the web app restarted with the new file);
- the per-IP daily limit is counted per account;
- the ``vexora.checkout.enqueue`` task takes ``account`` (and a message without it is ``default``'s);
- a job's webhook events go only to its account's endpoints; the metrics carry the account;
- every problem of the file stops a process with one line each and no secret.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest
import requests

from worker.domain import states
from worker.gateway.client import CHECKOUT_PATH
from worker.signing import sign
from worker.waiting import wait_until

from tests.support.processes import python_cmd
from tests.support.stack import APP_SECRET, MERCHANT_NO, Stack, payload

B_MERCHANT = "M-TEST-0002"
B_SECRET = "b-sekret-MARKER-51d0"
B_OLD_SECRET = "b-old-sekret-MARKER-a3e9"

ACCOUNTS = f"""
[accounts.default]
merchant_no = "{MERCHANT_NO}"
app_secret_env = "VEXORA_APP_SECRET"
ip_limits = {{ daily_limit = 1 }}

[accounts.shop-b]
merchant_no = "{B_MERCHANT}"
app_secret_env = "SHOP_B_SECRET"
{{previous}}
ip_limits = {{ daily_limit = 1 }}
"""


def accounts_file(path, *, previous: bool):
    path.write_text(ACCOUNTS.replace("{previous}", 'previous_app_secret_env = "SHOP_B_OLD_SECRET"' if previous
                                     else ""), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("accounts")
    s = Stack(redis_url, log_dir, VEXORA_ACCOUNTS_FILE=accounts_file(log_dir / "accounts.toml", previous=True),
              VEXORA_MERCHANT_NO="", SHOP_B_SECRET=B_SECRET, SHOP_B_OLD_SECRET=B_OLD_SECRET,
              VEXORA_WEBHOOK_ALLOW_PRIVATE="true")
    s.log_dir_path = log_dir
    # two endpoints, one per account, before any job moves (the move records events only then)
    endpoints = s.runtime.webhook_endpoints
    for endpoint_id, account in (("ep_a", "default"), ("ep_b", "shop-b")):
        record = endpoints.add(f"http://127.0.0.1:9/{account}", endpoint_id=endpoint_id)
        endpoints._save({**record, "account": account})
    s.start(web=True)
    # start() flushed Redis: add them again
    for endpoint_id, account in (("ep_a", "default"), ("ep_b", "shop-b")):
        record = endpoints.add(f"http://127.0.0.1:9/{account}", endpoint_id=endpoint_id)
        endpoints._save({**record, "account": account})
    yield s
    s.stop()
    logs = s.logs()
    for secret in (APP_SECRET, B_SECRET, B_OLD_SECRET):
        assert secret not in logs


def order(stack: Stack, trade_no: str) -> dict:
    return stack.http.get(f"{stack.sandbox_url}/_sandbox/orders/{trade_no}", timeout=5).json()


def test_each_accounts_jobs_are_signed_with_its_secret_and_merchant_no(stack):
    a = stack.paying()
    b = stack.enqueue_for("shop-b", payload())
    stack.wait_state(b, states.PAYING)
    assert stack.record(a)["account"] == "default" and stack.record(b)["account"] == "shop-b"
    assert order(stack, a)["merchantNo"] == MERCHANT_NO
    assert order(stack, b)["merchantNo"] == B_MERCHANT
    # the gateway (here the sandbox) refuses a merchantNo with another merchant's signature
    body = {**payload(), "notifyUrl": stack.settings.notify_url, "timestamp": "1"}
    body["sign"] = sign(body, APP_SECRET)
    refused = stack.http.post(stack.sandbox_url + CHECKOUT_PATH, json=body, headers={"merchantNo": B_MERCHANT},
                              timeout=5).json()
    assert (refused["code"], refused["msg"]) == ("8000", "sign error")


def test_an_unknown_account_is_refused_at_enqueue(stack):
    from worker.client import InvalidError
    with pytest.raises(InvalidError) as caught:
        stack.enqueue_for("shop-z", payload())
    assert list(caught.value.errors) == ["account"]


def test_a_callback_signed_with_another_accounts_secret_moves_nothing(stack):
    a = stack.paying()
    answer = stack.notify(stack.callback(a, secret=B_SECRET))
    assert answer.status_code == 401
    # signed with A's own secret but naming B's merchant: refused too
    answer = stack.notify(stack.callback(a, merchantNo=B_MERCHANT))
    assert answer.status_code == 400 and answer.text != "OK"
    record = stack.record(a)
    assert record["state"] == states.PAYING and "callbackAt" not in record
    # naming its own merchant, with its own secret: applied
    assert stack.notify(stack.callback(a, merchantNo=MERCHANT_NO)).text == "OK"
    stack.wait_state(a, states.SUCCEEDED)


def test_the_previous_secret_is_accepted_only_while_it_is_set(stack):
    b1 = stack.enqueue_for("shop-b", payload())
    b2 = stack.enqueue_for("shop-b", payload())
    stack.wait_state(b1, states.PAYING)
    stack.wait_state(b2, states.PAYING)
    assert stack.notify(stack.callback(b1, secret=B_OLD_SECRET)).text == "OK"
    stack.wait_state(b1, states.SUCCEEDED)

    # the rotation is over: the file no longer names the previous secret; restart the web app
    web = next(p for p in stack.processes if p.name == "web")
    web.stop()
    stack.processes.remove(web)
    stack.env["VEXORA_ACCOUNTS_FILE"] = accounts_file(stack.log_dir_path / "accounts-after.toml", previous=False)
    stack.start_web()
    assert stack.notify(stack.callback(b2, secret=B_OLD_SECRET)).status_code == 401
    assert stack.record(b2)["state"] == states.PAYING
    assert stack.notify(stack.callback(b2, secret=B_SECRET)).text == "OK"
    stack.wait_state(b2, states.SUCCEEDED)


def test_the_per_ip_limit_is_counted_per_account(stack):
    ip = f"8.8.{uuid.uuid4().int % 250 + 1}.{uuid.uuid4().int % 250 + 1}"
    first = stack.paying(ipAddress=ip)
    second = stack.enqueue(payload(ipAddress=ip))  # the default account's second today: over its 1
    assert stack.wait_state(second, states.REJECTED)["errors"] == {
        "ipAddress": ["daily limit reached: at most 1 transactions per payer IP a day"]}
    other = stack.enqueue_for("shop-b", payload(ipAddress=ip))  # shop-b's first: its own count
    stack.wait_state(other, states.PAYING)
    assert stack.sent(second)["received"] == 0 and stack.sent(first)["created"] == 1


def test_the_enqueue_task_takes_the_account(stack):
    celery = stack.runtime.celery
    job_b, job_default = payload(), payload()
    result_b = celery.send_task("vexora.checkout.enqueue", kwargs={**job_b, "account": "shop-b"}, queue="checkout")
    result_default = celery.send_task("vexora.checkout.enqueue", kwargs=job_default, queue="checkout")
    assert result_b.get(timeout=30) == {"tradeNo": job_b["tradeNo"]}
    assert result_default.get(timeout=30) == {"tradeNo": job_default["tradeNo"]}
    assert stack.wait_state(job_b["tradeNo"], states.PAYING)["account"] == "shop-b"
    assert stack.wait_state(job_default["tradeNo"], states.PAYING)["account"] == "default"
    assert order(stack, job_b["tradeNo"])["merchantNo"] == B_MERCHANT
    refused = celery.send_task("vexora.checkout.enqueue", kwargs={**payload(), "account": "shop-z"}, queue="checkout")
    assert refused.get(timeout=30)["errors"] == {"account": ["not an account of this deployment"]}


def test_a_jobs_webhook_events_go_to_its_accounts_endpoints_only(stack):
    a = stack.paying()
    b = stack.enqueue_for("shop-b", payload())
    stack.wait_state(b, states.PAYING)
    dispatcher = stack.runtime.webhook_dispatcher
    while dispatcher.fan_out(500):
        pass
    redis = stack.runtime.redis
    events = {i.decode(): f[b"tradeNo"].decode() for i, f in redis.xrange(dispatcher.outbox)}
    delivered: dict[str, set[str]] = {}
    for member in redis.zrange(dispatcher.due_key, 0, -1):
        event_id, endpoint = member.decode().split("|")
        delivered.setdefault(events.get(event_id, "?"), set()).add(endpoint)
    assert delivered[a] == {"ep_a"} and delivered[b] == {"ep_b"}


def test_the_metrics_carry_the_account(stack):
    b = stack.enqueue_for("shop-b", payload())
    stack.wait_state(b, states.PAYING)
    stack.notify(stack.callback(b, secret=APP_SECRET))  # A's secret on B's job: refused, counted as B's

    def scraped():
        text = requests.get(stack.web_url + "/metrics", timeout=5).text
        wanted = ('vexora_transitions_total{account="shop-b",from="submitting",to="paying"}',
                  'vexora_jobs{account="shop-b",state="paying"}',
                  'vexora_callbacks_total{account="shop-b",result="bad_signature"}')
        return text if all(w in text for w in wanted) else None

    text = wait_until(scraped, timeout=20, what="per-account metrics (flushed every 5 s)")
    assert 'vexora_jobs{account="default",state="paying"}' in text


def test_every_problem_of_the_accounts_file_is_one_line_without_a_secret(stack, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(f"""
[accounts.default]
merchant_no = "{MERCHANT_NO}"
app_secret_env = "VEXORA_APP_SECRET"
app_secret = "{B_SECRET}"

[accounts.shop-b]
merchant_no = "{MERCHANT_NO}"
app_secret_env = "SHOP_B_UNSET"
""", encoding="utf-8")
    env = {**stack.env, "VEXORA_ACCOUNTS_FILE": str(path)}
    for argv in (["-m", "worker.cli", "webhooks", "list"], ["-m", "celery", "-A", "worker", "inspect", "ping"]):
        done = subprocess.run(python_cmd(*argv), env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        for secret in (APP_SECRET, B_SECRET):
            assert secret not in done.stdout + done.stderr
        lines = [line.strip() for line in done.stderr.splitlines() if "VEXORA_ACCOUNTS_FILE" in line]
        assert lines == [
            "VEXORA_ACCOUNTS_FILE: accounts.default: unknown key 'app_secret': a secret never sits in the "
            "file, name its variable in app_secret_env",
            "VEXORA_ACCOUNTS_FILE: accounts.shop-b.merchant_no: the same as accounts.default's: one "
            "merchant number belongs to one account",
            "VEXORA_ACCOUNTS_FILE: accounts.shop-b.app_secret_env: the variable SHOP_B_UNSET is not set",
        ], done.stderr


def test_a_loopback_gateway_without_vexora_env_sandbox_refuses_placeholders(stack):
    """Sandbox only when said: a loopback VEXORA_BASE_URL (a production egress proxy, say) no
    longer lets a process start with change-me; VEXORA_ENV=sandbox does."""
    env = {k: v for k, v in stack.env.items() if k not in ("VEXORA_ENV", "VEXORA_ACCOUNTS_FILE")}
    env.update({"VEXORA_BASE_URL": "http://127.0.0.1:9", "VEXORA_MERCHANT_NO": "M-1",
                "VEXORA_APP_SECRET": "change-me"})
    done = subprocess.run(python_cmd("-m", "worker.cli", "webhooks", "list"), env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "VEXORA_APP_SECRET: is a placeholder" in done.stderr, done.stderr
    done = subprocess.run(python_cmd("-m", "worker.cli", "webhooks", "list"), env={**env, "VEXORA_ENV": "sandbox"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
