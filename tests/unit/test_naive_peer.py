"""The naive peer of BENCHMARKS.md table 1 (``bench/naive_app.py``) does not cheat: it sends
the gateway the very body our gateway client would send for the same job at the same instant
(same fields, same timestamp, same MD5 ``sign``), and the sandbox gateway accepts it.

Pure logic: the peer's one HTTP call is replaced by a recorder; the sandbox's ``checkout`` is
its real answer function (no HTTP there either).
"""

import json

import pytest
import requests

from bench import naive_app
from bench.procs import APP_SECRET, MERCHANT_NO
from worker.config.settings import Settings
from worker.gateway.client import CHECKOUT_PATH, GatewayClient
from worker.runtime.wiring import checkout_schema
from worker.sandbox import gateway as sandbox_gateway

NOW = 1_724_142_041.682
ENV = {
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "VEXORA_BASE_URL": "http://gateway.invalid",
    "VEXORA_MERCHANT_NO": MERCHANT_NO,
    "VEXORA_APP_SECRET": APP_SECRET,
    "VEXORA_NOTIFY_URL": "https://shop.example/vexora/notify",
}
PAYLOAD = {  # bench.procs.Bench.payload()'s shape: what enqueue_checkout and the peer's producer get
    "tradeNo": "Bnaive0000000001", "userId": "user-1", "amount": "300", "mobile": "09012345678",
    "firstname": "タロウ", "lastname": "ヤマダ", "email": "taro@example.com", "channelCode": "EWALLET",
    "wayCode": "PAYPAY", "ipAddress": "8.1.0.2", "returnUrl": "https://shop.example/thanks",
    "remark": "bench",
}


class Recorder:
    """Stands for the peer's ``requests.Session``: keeps what would be POSTed, answers as told."""

    def __init__(self, *statuses: int):
        self.statuses = list(statuses) or [200]
        self.sent: list[tuple[str, dict]] = []

    def post(self, url, data, timeout):
        self.sent.append((url, json.loads(data)))
        reply = requests.Response()
        reply.status_code = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        reply._content = b'{"code": "0000"}'
        return reply


@pytest.fixture
def peer(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(naive_app.time, "time", lambda: NOW)
    recorder = Recorder()
    monkeypatch.setattr(naive_app, "_session", lambda: recorder)
    return recorder


def _ours() -> dict:
    settings = Settings.from_env(ENV)
    fields = checkout_schema(settings).load(PAYLOAD)
    return GatewayClient(settings, clock=lambda: NOW).signed(fields)


def test_the_peer_posts_what_our_client_signs(peer):
    naive_app.checkout.run(**PAYLOAD)
    [(url, body)] = peer.sent
    assert url == ENV["VEXORA_BASE_URL"] + CHECKOUT_PATH
    assert body == _ours()
    assert body["sign"] == _ours()["sign"] and len(body["sign"]) == 32


def test_signed_body_matches_the_client_for_any_secret_and_instant():
    settings = Settings.from_env(ENV)
    fields = {"tradeNo": "T-1", "amount": "1500", "remark": "", "userId": None, "sign": "old",
              "timestamp": "1", "firstname": "ハナコ"}
    for now in (0.0, NOW, 2_000_000_000.999):
        ours = GatewayClient(settings, clock=lambda: now).signed(fields)
        assert naive_app.signed_body(fields, APP_SECRET, now) == ours
    assert naive_app.signed_body(fields, "another", NOW)["sign"] != \
        GatewayClient(settings, clock=lambda: NOW).signed(fields)["sign"]


def test_the_sandbox_creates_the_peers_order(peer):
    naive_app.checkout.run(**PAYLOAD)
    [(_, body)] = peer.sent
    sandbox = sandbox_gateway.Sandbox()
    config = sandbox_gateway.GatewayConfig({MERCHANT_NO: APP_SECRET}, "http://sandbox.invalid")
    answer = sandbox_gateway.checkout(sandbox, config, MERCHANT_NO, body)
    assert answer["code"] == "0000", answer
    assert sandbox.totals()["created"] == 1
    tampered = {**body, "amount": "301"}
    assert sandbox_gateway.checkout(sandbox, config, MERCHANT_NO, tampered)["msg"] == "sign error"


def test_transient_answers_are_retried_and_signed_anew(peer, monkeypatch):
    monkeypatch.setattr(naive_app._post.retry, "sleep", lambda seconds: None)
    peer.statuses = [503, 429, 200]
    naive_app.checkout.run(**PAYLOAD)
    assert len(peer.sent) == 3
    assert all(body == _ours() for _, body in peer.sent)
