"""The verifying webhook receiver over real HTTP: one server on a free port, reset before every test.

Requests are signed with the reference package (``standardwebhooks``), never with our own signer,
so these tests say nothing about the sender and everything about what a merchant would accept.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from worker.local.redis_server import free_port
from worker.sandbox.receiver import Malformed, NotVerified, make_receiver, verify
from worker.waiting import wait_until

pytestmark = pytest.mark.integration

TIMEOUT = 5


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


SECRET = new_secret()


@pytest.fixture(scope="module")
def server():
    srv = make_receiver("127.0.0.1", 0, secrets=[SECRET], path="/webhooks")
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def clean(server):
    control(server, "POST", "/_receiver/secrets", {"secrets": [SECRET]})
    control(server, "POST", "/_receiver/reset")


@pytest.fixture
def base(server):
    return server.url


def control(server, method: str, path: str, body: dict | None = None):
    answer = requests.request(method, server.url + path, json=body, timeout=TIMEOUT)
    answer.raise_for_status()
    return answer.json()


def event_body(kind: str = "checkout.succeeded", trade_no: str = "T1", sequence: int = 3, **data) -> bytes:
    state = kind.split(".", 1)[1]
    return json.dumps({"type": kind, "timestamp": "2025-01-01T00:00:00.000Z",
                       "data": {"tradeNo": trade_no, "state": state, "sequence": sequence, **data}},
                      separators=(",", ":")).encode()


def signed(body: bytes, *secrets: str, msg_id: str | None = None, when: datetime | None = None) -> dict:
    """Standard Webhooks headers, one ``v1,`` signature per secret (space-separated)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    when = when or datetime.now(timezone.utc)
    signature = " ".join(Webhook(s).sign(msg_id, when, body.decode()) for s in secrets or (SECRET,))
    return {"content-type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(int(when.timestamp())), "webhook-signature": signature}


def deliver(base: str, body: bytes, headers: dict) -> requests.Response:
    return requests.post(base + "/webhooks", data=body, headers=headers, timeout=TIMEOUT)


def stats(base: str) -> dict:
    return requests.get(base + "/_receiver/stats", timeout=TIMEOUT).json()


def events(base: str) -> list[dict]:
    return requests.get(base + "/_receiver/events", timeout=TIMEOUT).json()


# -- verification ------------------------------------------------------------------------------------
def test_a_verified_webhook_is_answered_204_and_recorded_with_its_attempt(base):
    body = event_body("checkout.succeeded", "T-OK", 4)
    headers = signed(body)
    answer = deliver(base, body, headers)
    assert answer.status_code == 204 and answer.content == b""
    [event] = events(base)
    assert event.pop("at") > 0
    assert event == {"webhook_id": headers["webhook-id"], "type": "checkout.succeeded", "tradeNo": "T-OK",
                     "sequence": 4, "state": "succeeded", "attempt": 1}
    assert deliver(base, body, signed(body, msg_id=headers["webhook-id"])).status_code == 204  # a redelivery
    assert [e["attempt"] for e in events(base)] == [1, 2]
    assert stats(base) == {"verified": 2, "rejected": 0, "duplicates": 1,
                           "by_type": {"checkout.succeeded": 2}, "failed_on_purpose": 0, "dropped": 0}


def _wrong_secret(body, headers):
    return body, signed(body, new_secret(), msg_id=headers["webhook-id"])


def _tampered_body(body, headers):
    return body.replace(b"T1", b"T2"), headers


def _other_id(body, headers):
    return body, {**headers, "webhook-id": "msg_other"}


def _too_old(body, headers):
    return body, signed(body, when=datetime.now(timezone.utc) - timedelta(minutes=10))


def _no_signature(body, headers):
    return body, {k: v for k, v in headers.items() if k != "webhook-signature"}


def _garbage_signature(body, headers):
    return body, {**headers, "webhook-signature": "not-a-signature"}


@pytest.mark.parametrize("spoil", [_wrong_secret, _tampered_body, _other_id, _too_old, _no_signature,
                                   _garbage_signature])
def test_a_request_that_does_not_verify_is_refused_401_and_counted(base, spoil):
    body = event_body()
    body, headers = spoil(body, signed(body))
    answer = deliver(base, body, headers)
    assert answer.status_code == 401, answer.text
    assert events(base) == []
    assert stats(base)["rejected"] == 1 and stats(base)["verified"] == 0


def test_with_two_secrets_either_verifies_and_a_third_does_not(server, base):
    old, new, other = SECRET, new_secret(), new_secret()
    assert control(server, "POST", "/_receiver/secrets", {"secrets": [new, old]}) == {"secrets": 2}
    body = event_body()
    assert deliver(base, body, signed(body, old)).status_code == 204
    assert deliver(base, body, signed(body, new)).status_code == 204
    assert deliver(base, body, signed(body, other)).status_code == 401
    assert (stats(base)["verified"], stats(base)["rejected"]) == (2, 1)


@pytest.mark.parametrize("order", ["matching first", "matching last"])
def test_a_header_with_two_signatures_verifies_when_one_of_them_matches(base, order):
    body = event_body()
    headers = signed(body, new_secret(), SECRET) if order == "matching last" else signed(body, SECRET, new_secret())
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert deliver(base, body, headers).status_code == 204
    assert stats(base)["verified"] == 1


def test_replaced_secrets_take_effect_and_bad_ones_change_nothing(server, base):
    body, new = event_body(), new_secret()
    for bad in ({"secrets": ["s3cr3t-plain"]}, {"secrets": "whsec_QUJD"}, {"secrets": [new, 42]}, {}):
        answer = requests.post(base + "/_receiver/secrets", json=bad, timeout=TIMEOUT)
        assert answer.status_code == 400 and "s3cr3t" not in answer.text
    assert deliver(base, body, signed(body)).status_code == 204  # still the old secret
    control(server, "POST", "/_receiver/secrets", {"secrets": [new]})
    assert deliver(base, body, signed(body)).status_code == 401
    assert deliver(base, body, signed(body, new)).status_code == 204
    control(server, "POST", "/_receiver/reset")  # a reset keeps the secrets
    assert deliver(base, body, signed(body, new)).status_code == 204


def test_a_signed_body_that_is_not_an_event_is_refused_400():
    for body in (b"not json", b"[1,2]", b'{"data": {}}'):
        with pytest.raises(Malformed):
            verify(body, signed(body), [SECRET])


def test_the_verify_helper_returns_the_payload_or_raises():
    body = event_body("checkout.paying", "T9", 1)
    headers = {name.upper(): value for name, value in signed(body).items()}  # header names are case-blind
    assert verify(body, headers, [new_secret(), SECRET])["data"]["tradeNo"] == "T9"
    with pytest.raises(NotVerified):
        verify(body, headers, [new_secret()])
    with pytest.raises(NotVerified):
        verify(body, headers, [])
    with pytest.raises(ValueError) as bad:
        verify(body, headers, ["s3cr3t"])
    assert "s3cr3t" not in str(bad.value) and not isinstance(bad.value, NotVerified)


# -- faults --------------------------------------------------------------------------------------------
def test_down_for_drops_connections_then_it_answers_again(server, base):
    body = event_body()
    headers = signed(body)
    faults = control(server, "POST", "/_receiver/faults", {"down_for": 1.5})["faults"]
    assert 0 < faults["down_for"] <= 1.5
    with pytest.raises(requests.ConnectionError):
        deliver(base, body, headers)
    assert stats(base)["dropped"] == 1  # the control API still answers while it is down
    tries = [1]

    def accepted() -> bool:
        tries[0] += 1
        try:
            return deliver(base, body, headers).status_code == 204
        except requests.ConnectionError:
            return False
    wait_until(accepted, timeout=10, interval=0.2, what="the receiver to answer again")
    now = stats(base)
    assert now["dropped"] == tries[0] - 1 and now["verified"] == 1 and now["rejected"] == 0
    assert events(base)[0]["attempt"] == tries[0]  # dropped attempts count: the sender made them
    assert control(server, "GET", "/_receiver/faults")["faults"]["down_for"] == 0


def test_fail_first_answers_503_with_retry_after_for_each_new_webhook_id(server, base):
    body = event_body()
    seen_before = signed(body)
    assert deliver(base, body, seen_before).status_code == 204
    control(server, "POST", "/_receiver/faults", {"fail_first": 2, "status": 503, "retry_after": 7})
    for msg_id in ("msg_a", "msg_b"):
        for attempt in (1, 2):
            answer = deliver(base, body, signed(body, msg_id=msg_id))
            assert answer.status_code == 503 and answer.headers["Retry-After"] == "7", (msg_id, attempt)
        assert deliver(base, body, signed(body, msg_id=msg_id)).status_code == 204
    # an id seen before the fault was set is not new: its redelivery goes through
    assert deliver(base, body, signed(body, msg_id=seen_before["webhook-id"])).status_code == 204
    assert [(e["webhook_id"], e["attempt"]) for e in events(base)] == [
        (seen_before["webhook-id"], 1), ("msg_a", 3), ("msg_b", 3), (seen_before["webhook-id"], 2)]
    now = stats(base)
    assert now["failed_on_purpose"] == 4 and now["verified"] == 4 and now["duplicates"] == 1


def test_fail_first_without_retry_after_and_a_forgery_is_refused_not_failed(server, base):
    control(server, "POST", "/_receiver/faults", {"fail_first": 1, "status": 500})
    body = event_body()
    assert deliver(base, body, signed(body, new_secret())).status_code == 401
    answer = deliver(base, body, signed(body))
    assert answer.status_code == 500 and "Retry-After" not in answer.headers
    assert (stats(base)["rejected"], stats(base)["failed_on_purpose"]) == (1, 1)


def test_gone_once_answers_410_once(server, base):
    control(server, "POST", "/_receiver/faults", {"gone_once": True})
    body = event_body()
    headers = signed(body)
    assert deliver(base, body, headers).status_code == 410
    assert control(server, "GET", "/_receiver/faults")["faults"]["gone_once"] is False
    assert deliver(base, body, headers).status_code == 204
    assert events(base)[0]["attempt"] == 2 and stats(base)["failed_on_purpose"] == 1


def test_faults_merge_and_delete_clears_them(server, base):
    control(server, "POST", "/_receiver/faults", {"fail_first": 3, "status": 502})
    faults = control(server, "POST", "/_receiver/faults", {"gone_once": True})["faults"]
    assert faults == {"down_for": 0, "fail_first": 3, "status": 502, "retry_after": None, "gone_once": True}
    cleared = control(server, "DELETE", "/_receiver/faults")["faults"]
    assert cleared == {"down_for": 0, "fail_first": 0, "status": 503, "retry_after": None, "gone_once": False}
    body = event_body()
    assert deliver(base, body, signed(body)).status_code == 204


@pytest.mark.parametrize("bad", [{}, {"drop": True}, {"down_for": -1}, {"down_for": "5"},
                                 {"fail_first": "2"}, {"fail_first": -1}, {"status": 200},
                                 {"retry_after": 1.5}, {"gone_once": 1}])
def test_bad_faults_are_refused_400_and_change_nothing(server, base, bad):
    answer = requests.post(base + "/_receiver/faults", json=bad, timeout=TIMEOUT)
    assert answer.status_code == 400 and answer.json()["error"]
    assert control(server, "GET", "/_receiver/faults")["faults"]["fail_first"] == 0


# -- stats, events, reset, HTTP ------------------------------------------------------------------------
def test_stats_count_by_type_and_events_keep_the_order_of_arrival(base):
    kinds = ["checkout.paying", "checkout.succeeded", "checkout.paying", "checkout.failed"]
    for n, kind in enumerate(kinds):
        body = event_body(kind, f"T{n}", n + 1)
        assert deliver(base, body, signed(body)).status_code == 204
    disabled = json.dumps({"type": "webhook.endpoint_disabled", "timestamp": "2025-01-01T00:00:00Z",
                           "data": {"endpointId": "default", "reason": "410"}}).encode()
    assert deliver(base, disabled, signed(disabled)).status_code == 204
    now = stats(base)
    assert now["verified"] == 5 and now["duplicates"] == 0
    assert now["by_type"] == {"checkout.paying": 2, "checkout.succeeded": 1, "checkout.failed": 1,
                              "webhook.endpoint_disabled": 1}
    got = events(base)
    assert [(e["type"], e["tradeNo"], e["sequence"]) for e in got[:4]] == [
        (kind, f"T{n}", n + 1) for n, kind in enumerate(kinds)]
    assert got[4]["tradeNo"] is None and got[4]["state"] is None
    assert [e["at"] for e in got] == sorted(e["at"] for e in got)


def test_reset_forgets_events_counts_attempts_and_faults(server, base):
    body = event_body()
    headers = signed(body)
    deliver(base, body, headers)
    deliver(base, body, signed(body, new_secret()))
    control(server, "POST", "/_receiver/faults", {"fail_first": 5})
    assert control(server, "POST", "/_receiver/reset") == {"ok": True}
    assert events(base) == []
    assert stats(base) == {"verified": 0, "rejected": 0, "duplicates": 0, "by_type": {},
                           "failed_on_purpose": 0, "dropped": 0}
    assert deliver(base, body, headers).status_code == 204  # fail_first is gone too
    assert events(base)[0]["attempt"] == 1  # and the webhook-id's earlier attempt


def test_concurrent_deliveries_are_all_counted(base):
    def one(n: int) -> int:
        body = event_body("checkout.paying", f"C{n}", 1)
        return deliver(base, body, signed(body)).status_code

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(one, range(64))) == {204}
    assert stats(base)["verified"] == 64 and len({e["webhook_id"] for e in events(base)}) == 64


def test_unknown_paths_methods_and_bodies(base):
    assert requests.get(base + "/webhooks", timeout=TIMEOUT).status_code == 405
    assert requests.put(base + "/_receiver/stats", timeout=TIMEOUT).status_code == 405
    assert requests.get(base + "/_receiver/nothing", timeout=TIMEOUT).status_code == 404
    assert requests.post(base + "/elsewhere", data=b"{}", timeout=TIMEOUT).status_code == 404
    assert requests.post(base + "/_receiver/faults", data=b"{not json", timeout=TIMEOUT).status_code == 400
    big = b"x" * ((1 << 20) + 1)
    assert deliver(base, big, {"webhook-id": "msg_big"}).status_code == 413
    assert stats(base)["rejected"] == 1


def test_logs_carry_method_path_and_status_only(base, caplog):
    body = event_body(contact="090****4321", remark="ヤマダ様")
    headers = signed(body)
    with caplog.at_level(logging.INFO, logger="worker.sandbox.receiver"):
        deliver(base, body, headers)
        deliver(base, body, signed(body, new_secret()))
    text = caplog.text
    assert "POST /webhooks 204" in text and "POST /webhooks 401" in text
    for secret_or_data in ("4321", "ヤマダ", headers["webhook-signature"].split(",", 1)[1], SECRET, "T1"):
        assert secret_or_data not in text


def test_a_bad_path_or_secret_is_refused_before_binding():
    for kwargs in ({"path": "webhooks"}, {"path": "/_receiver/x"}, {"secrets": ["whsec_"]},
                   {"secrets": "whsec_QUJD"}):
        with pytest.raises(ValueError):
            make_receiver("127.0.0.1", 0, **kwargs)


def test_with_no_secret_it_verifies_nothing_until_given_one():
    srv = make_receiver("127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        body = event_body()
        assert deliver(srv.url, body, signed(body)).status_code == 401
        control(srv, "POST", "/_receiver/secrets", {"secrets": [SECRET]})
        assert srv.webhook_url == srv.url + "/webhooks"
        assert deliver(srv.url, body, signed(body)).status_code == 204
    finally:
        srv.shutdown()
        srv.server_close()


# -- as a process --------------------------------------------------------------------------------------
def test_it_runs_as_a_process_with_secrets_from_the_environment_and_stops_on_sigterm(tmp_path):
    port, old, new = free_port(), new_secret(), new_secret()
    env = {**os.environ, "VEXORA_WEBHOOK_SECRET": f"{new} {old}", "PYTHONUNBUFFERED": "1"}
    out_path = tmp_path / "receiver.log"
    with open(out_path, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "worker.sandbox.receiver", "--port", str(port),
                                 "--path", "/hooks"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: f"webhook receiver listening on {url}\n" in out_path.read_text(), timeout=20,
                   what="the receiver to say it listens")
        body = event_body()
        for secret in (old, new):
            assert requests.post(url + "/hooks", data=body, headers=signed(body, secret),
                                 timeout=TIMEOUT).status_code == 204
        assert requests.get(url + "/_receiver/stats", timeout=TIMEOUT).json()["verified"] == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()
    log = out_path.read_text()
    assert "POST /hooks 204" in log and old not in log and new not in log


def test_the_process_refuses_to_start_without_a_good_secret():
    env = {k: v for k, v in os.environ.items() if k != "VEXORA_WEBHOOK_SECRET"}
    for extra in ([], ["--secret", "s3cr3t-plain"]):
        done = subprocess.run([sys.executable, "-m", "worker.sandbox.receiver", "--port", "0", *extra],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "secret" in done.stderr and "s3cr3t" not in done.stderr
