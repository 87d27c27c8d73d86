"""Signed webhooks end to end (issue 12): real sandbox, workers, beat, web app and a real receiver
that verifies every message with the `standardwebhooks` package and misbehaves on demand."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from worker.domain import states
from worker.local.redis_server import free_port
from worker.sandbox.receiver import make_receiver
from worker.waiting import wait_until
from worker.webhooks.signing import new_secret
from tests.support.stack import MARKERS, Stack, payload

pytestmark = pytest.mark.integration

TOKEN = "webhooks-token"
FINAL = {states.SUCCEEDED, states.FAILED, states.PARTIALLY_PAID, states.REJECTED, states.DECLINED}


class Receiver:
    """A verifying receiver in a thread of this process, driven over its control API."""

    def __init__(self, secrets: list[str]):
        self.port = free_port()
        self.server = make_receiver("127.0.0.1", self.port, secrets=secrets, path="/webhooks")
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def control(self, http, method: str, path: str, **body):
        answer = http.request(method, self.url + path, json=body or None, timeout=10)
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def events(self, http) -> list[dict]:
        return http.get(self.url + "/_receiver/events", timeout=10).json()

    def stats(self, http) -> dict:
        return http.get(self.url + "/_receiver/stats", timeout=10).json()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def secret():
    return new_secret()


@pytest.fixture(scope="module")
def receiver(secret):
    r = Receiver([secret])
    yield r
    r.close()


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory, receiver, secret):
    s = Stack(redis_url, tmp_path_factory.mktemp("webhooks"), VEXORA_API_TOKEN=TOKEN,
              VEXORA_WEBHOOK_URL=receiver.url + "/webhooks", VEXORA_WEBHOOK_SECRET=secret,
              VEXORA_WEBHOOK_ALLOW_PRIVATE="true", VEXORA_WEBHOOK_RETRY_SCHEDULE="0.5,0.5,1,1,2,2,3",
              VEXORA_WEBHOOK_DISPATCH_INTERVAL="0.5", VEXORA_WEBHOOK_CLAIM_SECONDS="5",
              VEXORA_VISIBILITY_TIMEOUT="6", VEXORA_LEASE_SECONDS="4")
    s.start(workers=0, web=True, beat=True)
    s.start_worker(concurrency=8)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def _clean_receiver(receiver, stack):
    receiver.control(stack.http, "DELETE", "/_receiver/faults")
    stack.http.post(stack.sandbox_url + "/_sandbox/autopay", json={"mix": {}}, timeout=5).raise_for_status()
    yield


def final_event_arrived(receiver, stack, trade_nos: list[str]) -> bool:
    arrived = {(e["tradeNo"], e["type"]) for e in receiver.events(stack.http)}
    for trade_no in trade_nos:
        record = stack.record(trade_no)
        if record is None or record["state"] not in FINAL or (trade_no, f"checkout.{record['state']}") not in arrived:
            return False
    return True


def test_every_outcome_arrives_verified_through_downtime_and_503s(stack, receiver):
    receiver.control(stack.http, "POST", "/_receiver/faults", fail_first=2, status=503)
    stack.http.post(stack.sandbox_url + "/_sandbox/autopay",
                    json={"mix": {"paid": 0.6, "failed": 0.2, "partial": 0.2}, "delay": 0.2, "seed": 3},
                    timeout=5).raise_for_status()
    jobs = [stack.enqueue(payload()) for _ in range(12)]
    jobs.append(stack.enqueue(payload(amount="1.5")))  # rejected, with its field errors
    wait_until(lambda: stack.record(jobs[0])["state"] in FINAL, timeout=30, what="the first outcome")
    # the 503s come first: a request dropped while the receiver is down still counts as an attempt,
    # so a receiver that went down before any first attempt would never answer one 503
    wait_until(lambda: receiver.stats(stack.http)["failed_on_purpose"] > 0, timeout=30, what="a 503 answered")
    receiver.control(stack.http, "POST", "/_receiver/faults", down_for=3)  # the receiver goes away a while
    # each event retries on its own schedule: a job's final event may arrive before its paying one
    wait_until(lambda: final_event_arrived(receiver, stack, jobs)
               and final_event_arrived_types(receiver, stack, jobs[:-1], "checkout.paying"),
               timeout=90, interval=0.5, what="every job's paying and final events at the receiver")
    stats = receiver.stats(stack.http)
    events = receiver.events(stack.http)
    assert stats["rejected"] == 0 and stats["failed_on_purpose"] > 0
    # a job's events arrive with increasing sequences; paying comes before the outcome
    for trade_no in jobs[:-1]:
        mine = sorted({(e["sequence"], e["type"]) for e in events if e["tradeNo"] == trade_no})
        assert mine[0][1] == "checkout.paying" and [s for s, _ in mine] == sorted({s for s, _ in mine})
    rejected = [e for e in events if e["tradeNo"] == jobs[-1]]
    assert [e["type"] for e in rejected][:1] == ["checkout.rejected"]
    # no payer data in any body that was sent, nor in what the receiver recorded
    bodies = [stack.runtime.redis.get(k) for k in stack.runtime.redis.scan_iter(match="vexora:webhooks:body:*")]
    text = b"".join(b for b in bodies if b).decode() + json.dumps(events, ensure_ascii=False)
    for marker in MARKERS.values():
        assert marker not in text and json.dumps(marker)[1:-1] not in text
    assert all(any(a["status"] in (204, 200) for a in stack.runtime.webhook_dispatcher.attempts(t)) for t in jobs)


def test_a_refused_event_shows_our_reason_not_the_receivers_answer_and_replays(stack, receiver):
    """Issue 20: a permanent 4xx fails the delivery at once; GET /v1/checkouts/<t>/webhooks shows
    its status and a reason of ours, none of the receiver's body; POST /v1/webhooks/replay of
    its window delivers it once the receiver is fixed."""
    receiver.control(stack.http, "POST", "/_receiver/faults", fail_first=1, status=422)
    since = time.time()
    trade_no = stack.enqueue(payload())
    stack.wait_state(trade_no, states.PAYING)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def shown():
        answer = stack.http.get(f"{stack.web_url}/v1/checkouts/{trade_no}/webhooks", headers=headers, timeout=10)
        return [a for a in answer.json()["attempts"] if a["status"] == 422]
    refused = wait_until(shown, timeout=30, what="the refused attempt")
    assert refused[0]["reason"] == "unprocessable" and "failing on purpose" not in json.dumps(refused)
    assert b"failing on purpose" not in b"".join(
        stack.runtime.redis.lrange(stack.runtime.webhook_dispatcher.attempts_key(trade_no), 0, -1))
    receiver.control(stack.http, "DELETE", "/_receiver/faults")
    replayed = stack.http.post(f"{stack.web_url}/v1/webhooks/replay", headers=headers,
                               json={"since": since, "until": time.time()}, timeout=10)
    assert replayed.status_code in (200, 202), replayed.text
    wait_until(lambda: final_event_arrived_types(receiver, stack, [trade_no], "checkout.paying"), timeout=30,
               what="the replayed event")


def test_attempts_are_listed_by_the_cli_and_the_api(stack, receiver):
    trade_no = stack.enqueue(payload())
    stack.wait_state(trade_no, states.PAYING)
    wait_until(lambda: stack.runtime.webhook_dispatcher.attempts(trade_no), timeout=20, what="an attempt")
    answer = stack.http.get(f"{stack.web_url}/v1/checkouts/{trade_no}/webhooks",
                            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()
    assert answer["attempts"][0]["type"] == "checkout.paying" and answer["attempts"][0]["endpoint"] == "default"
    out = subprocess.run([sys.executable, "-m", "worker.cli", "webhooks", "attempts", trade_no], env=stack.env,
                         capture_output=True, text=True, timeout=60)
    assert "checkout.paying" in out.stdout and "attempt=1" in out.stdout, out.stderr


def test_the_api_get_checkout_the_cli_and_a_webhook_give_the_same_typed_record(stack, receiver):
    """One job, read four ways: GET /v1/checkouts/<tradeNo>, get_checkout, `vexora-checkout status`
    and the body its checkout.succeeded webhook was sent with (the record as it was at the change,
    without history, with the sequence). Each is the schema's typed record and the document's."""
    from jsonschema import Draft202012Validator

    from schemas import CheckoutEventDataSchema, CheckoutRecordSchema
    from schemas.record import HIDDEN
    from worker.client import get_checkout

    stack.http.post(stack.sandbox_url + "/_sandbox/autopay", json={"mix": {"paid": 1.0}, "delay": 0.1},
                    timeout=5).raise_for_status()
    trade_no = stack.enqueue(payload(amount="300"))
    stack.wait_state(trade_no, states.SUCCEEDED)
    attempts = stack.runtime.webhook_dispatcher.attempts
    wait_until(lambda: any(a["type"] == "checkout.succeeded" for a in attempts(trade_no)), timeout=30,
               what="the checkout.succeeded webhook")
    hook_id = next(a["webhookId"] for a in attempts(trade_no) if a["type"] == "checkout.succeeded")
    dispatcher = stack.runtime.webhook_dispatcher
    event_id = next(i.decode() for i, f in dispatcher.redis.xrange(dispatcher.outbox)
                    if f[b"tradeNo"].decode() == trade_no and f[b"type"] == b"checkout.succeeded")
    sent = json.loads(stack.runtime.redis.get(dispatcher.body_key(event_id)))
    assert hook_id == f"msg_{trade_no}_{sent['data']['sequence']}"  # (tradeNo, sequence): issue 20

    headers = {"Authorization": f"Bearer {TOKEN}"}
    api = stack.http.get(f"{stack.web_url}/v1/checkouts/{trade_no}", headers=headers, timeout=10).json()
    python = get_checkout(trade_no, runtime=stack.runtime)
    cli = subprocess.run([sys.executable, "-m", "worker.cli", "status", trade_no], env=stack.env,
                         capture_output=True, text=True, timeout=60)
    assert api == python == json.loads(cli.stdout), cli.stderr
    data = sent["data"]
    assert data["sequence"] >= 2  # paying came first
    assert {k: v for k, v in data.items() if k != "sequence"} == {k: v for k, v in api.items() if k != "history"}

    # typed: numbers are numbers, times epoch ms, amounts yen text beside the gateway's own text
    assert api["state"] == "succeeded" and api["needsReview"] is False
    assert api["amount"] == "300" and api["paidAmount"] == "300" and api["gatewayPaidAmount"] == "300.00"
    for name in ("createdAt", "updatedAt", "callbackAt", "attempts", "latencyMs"):
        assert type(api[name]) is int, name
    assert api["createdAt"] <= api["updatedAt"] and 0 < api["updatedAt"] - api["createdAt"] < 60_000
    assert all(type(entry["at"]) is int for entry in api["history"])
    assert [e["to"] for e in api["history"] if e["to"]][-1] == "succeeded"
    assert not set(api) & HIDDEN and not set(data) & HIDDEN
    assert api["contact"]["mobile"] == "090****4321" and MARKERS["email"] not in json.dumps(api)
    CheckoutRecordSchema().load(api)  # unknown = RAISE: nothing undeclared
    CheckoutEventDataSchema().load(data)

    # and the document the web app serves describes each, and the other answers of this API
    document = stack.http.get(f"{stack.web_url}/v1/openapi.json", timeout=10).json()
    served = {path: stack.http.get(stack.web_url + path, headers=headers, timeout=10).json()
              for path in ("/v1/webhooks/endpoints", f"/v1/checkouts/{trade_no}/webhooks", "/v1/review")}
    for component, instance in (("CheckoutRecord", api), ("CheckoutEventData", data), ("CheckoutEvent", sent),
                                ("WebhookAttempts", served[f"/v1/checkouts/{trade_no}/webhooks"]),
                                ("ReviewQueue", served["/v1/review"])):
        schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
        errors = [e.message for e in Draft202012Validator(schema).iter_errors(instance)]
        assert errors == [], (component, errors)
    endpoints = {"type": "array", "items": {"$ref": "#/components/schemas/WebhookEndpoint"},
                 "components": document["components"]}
    assert served["/v1/webhooks/endpoints"] and not list(
        Draft202012Validator(endpoints).iter_errors(served["/v1/webhooks/endpoints"]))


def test_replay_resends_exactly_the_window(stack, receiver):
    before = [stack.enqueue(payload()) for _ in range(2)]
    for t in before:
        stack.wait_state(t, states.PAYING)
    wait_until(lambda: final_event_arrived_types(receiver, stack, before, "checkout.paying"), timeout=30,
               what="the first jobs' events")
    since = time.time()
    window = [stack.enqueue(payload()) for _ in range(3)]
    for t in window:
        stack.wait_state(t, states.PAYING)
    wait_until(lambda: final_event_arrived_types(receiver, stack, window, "checkout.paying"), timeout=30,
               what="the window's events")
    until = time.time()
    after = stack.enqueue(payload())
    stack.wait_state(after, states.PAYING)
    wait_until(lambda: final_event_arrived_types(receiver, stack, [after], "checkout.paying"), timeout=30,
               what="the later job's event, before the receiver forgets everything")
    receiver.control(stack.http, "POST", "/_receiver/reset")
    out = subprocess.run([sys.executable, "-m", "worker.cli", "webhooks", "replay", "--since", f"{since:.3f}",
                          "--until", f"{until:.3f}", "--all"], env=stack.env, capture_output=True, text=True,
                         timeout=60)
    assert "3 deliveries scheduled" in out.stdout, out.stdout + out.stderr
    wait_until(lambda: len(receiver.events(stack.http)) >= 3, timeout=30, what="the replayed events")
    got = {e["tradeNo"] for e in receiver.events(stack.http)}
    assert got == set(window)


def final_event_arrived_types(receiver, stack, trade_nos, kind) -> bool:
    arrived = {(e["tradeNo"], e["type"]) for e in receiver.events(stack.http)}
    return all((t, kind) in arrived for t in trade_nos)


def test_a_410_disables_the_endpoint_and_the_others_are_told(stack, receiver, secret):
    other = Receiver([])
    try:
        added = stack.http.post(stack.web_url + "/v1/webhooks/endpoints", json={"url": other.url + "/webhooks"},
                                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert added.status_code == 201, added.text
        other.control(stack.http, "POST", "/_receiver/secrets", secrets=[added.json()["secret"]])
        receiver.control(stack.http, "POST", "/_receiver/faults", gone_once=True)
        trade_no = stack.enqueue(payload())
        stack.wait_state(trade_no, states.PAYING)

        def told():
            return [e for e in other.events(stack.http) if e["type"] == "webhook.endpoint_disabled"]
        wait_until(told, timeout=30, what="the other endpoint to hear of the disabled one")
        default = stack.runtime.webhook_endpoints.get("default")
        assert default["enabled"] is False and "410" in default["disabledReason"]
        assert other.stats(stack.http)["rejected"] == 0
    finally:
        stack.runtime.webhook_endpoints.set_enabled("default", True)
        for record in stack.runtime.webhook_endpoints.all():
            if record["id"] != "default":
                stack.runtime.webhook_endpoints.set_enabled(record["id"], False)
        other.close()


def test_after_a_rotation_the_old_and_the_new_secret_both_verify(stack, receiver, secret):
    rotated = stack.http.post(stack.web_url + "/v1/webhooks/endpoints/default/rotate",
                              headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    try:
        for secrets in ([secret], [new]):  # a receiver that knows only one of them
            receiver.control(stack.http, "POST", "/_receiver/secrets", secrets=secrets)
            receiver.control(stack.http, "POST", "/_receiver/reset")
            trade_no = stack.enqueue(payload())
            wait_until(lambda: final_event_arrived_types(receiver, stack, [trade_no], "checkout.paying"),
                       timeout=30, what="the event signed with both secrets")
            assert receiver.stats(stack.http)["rejected"] == 0
    finally:
        receiver.control(stack.http, "POST", "/_receiver/secrets", secrets=[secret, new])


def test_private_endpoint_urls_are_refused_unless_allowed(redis_url):
    from worker.webhooks.endpoints import Endpoints
    from worker.domain.errors import InvalidError
    import redis
    endpoints = Endpoints(redis.Redis.from_url(redis_url), "private-test", allow_private=False, rotation_grace=60)
    for url in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://169.254.169.254/latest"):
        with pytest.raises(InvalidError) as refused:
            endpoints.add(url)
        assert "url" in refused.value.errors


def test_a_worker_killed_between_the_change_and_the_delivery_loses_no_event(stack, receiver):
    receiver.control(stack.http, "POST", "/_receiver/faults", down_for=4)
    jobs = [stack.enqueue(payload()) for _ in range(6)]
    for t in jobs:
        stack.wait_state(t, states.PAYING)
    victim = next(p for p in reversed(stack.processes) if getattr(p, "worker_name", None) and p.alive)
    victim.kill()  # events recorded, deliveries failing or in flight: all of it dies with the worker
    stack.start_worker(concurrency=8)
    wait_until(lambda: final_event_arrived_types(receiver, stack, jobs, "checkout.paying"), timeout=60,
               interval=0.5, what="every event after the kill")


def test_a_pass_pushes_its_deliver_messages_itself_and_the_webhook_worker_runs_them(stack, receiver):
    """With the broker on the store's Redis, a pass writes its deliver tasks' messages into the
    broker's list itself (kombu's own format, one LPUSH for the pass), never through
    ``send_task``; the real worker (its beat passes do the same) runs them. Every test above goes
    through this path."""
    dispatcher = stack.runtime.webhook_dispatcher
    assert dispatcher.deliver_message is not None and dispatcher.broker_list == "webhooks"
    message = json.loads(dispatcher.deliver_message(["1-0|ep"]))
    assert message["headers"]["task"] == "vexora.webhooks.deliver"
    assert message["properties"]["delivery_info"]["routing_key"] == "webhooks"
    trade_no = stack.enqueue(payload())
    stack.wait_state(trade_no, states.PAYING)
    wait_until(lambda: final_event_arrived_types(receiver, stack, [trade_no], "checkout.paying"), timeout=30,
               what="the job's event")
    event_id = next(e["id"] for e in dispatcher.job_events(trade_no) if e["type"] == "checkout.paying")
    verified = receiver.stats(stack.http)["verified"]

    def no_send_task(members):
        raise AssertionError(f"send_task used for {members}")

    own, dispatcher.send_deliver = dispatcher.send_deliver, no_send_task
    try:
        assert dispatcher.resend(event_id) == 1
        # this process's passes (or the worker's beat passes, when they hold the lock) hand it out
        wait_until(lambda: dispatcher.run() is not None and receiver.stats(stack.http)["verified"] > verified,
                   timeout=30, what="the resent event")
    finally:
        dispatcher.send_deliver = own
