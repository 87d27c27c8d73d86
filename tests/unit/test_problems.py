"""Error answers are RFC 9457 problem documents everywhere but on ``/vexora/notify`` (the
gateway's plain text) — checked on the app itself, without Redis (a Redis that cannot answer is
part of the test: 503). The producer API's 409 and 422 over real HTTP: tests/integration/test_api.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from werkzeug.exceptions import TooManyRequests, UnsupportedMediaType

from worker.config.settings import Settings
from worker.runtime.wiring import Runtime
from worker.signing import sign
from worker.web import create_app
from tests.support.stack import APP_SECRET, payload

TOKEN = "unit-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NO_REDIS = "redis://127.0.0.1:9/0"  # the discard port: refused at once
SECRET_IN_EXCEPTION = "hidden-secret-5c1e"
MEMBERS = {"type", "title", "status", "detail", "instance"}


def make_app(**overrides):
    settings = Settings(**{"app_secret": APP_SECRET, "api_token": TOKEN, "metrics": False, "redis_url": NO_REDIS,
                           "callback_max_bytes": 1024, "notify_url": "https://shop.example/notify", **overrides})
    app = create_app(settings, runtime=Runtime(settings))

    # routes that only a test needs, for the statuses no view of the app raises today
    @app.get("/_test/415")
    def unsupported():
        raise UnsupportedMediaType("send application/json")

    @app.get("/_test/429")
    def too_many():
        raise TooManyRequests("slow down", retry_after=7)

    @app.get("/_test/500")
    def crash():
        raise RuntimeError(f"boom with {SECRET_IN_EXCEPTION}")

    return app


@pytest.fixture(scope="module")
def client():
    return make_app().test_client()


def allowed(answer) -> set[str]:
    return {method.strip() for method in answer.headers["Allow"].split(",")}


def assert_problem(answer, status: int, path: str) -> dict:
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert answer.mimetype == "application/problem+json", answer.headers
    body = json.loads(answer.get_data())
    assert MEMBERS <= set(body), body
    assert body["status"] == status and body["type"] == "about:blank" and body["instance"] == path, body
    assert isinstance(body["title"], str) and body["title"] and isinstance(body["detail"], str), body
    assert body["error"] == body["detail"], "the pre-RFC 9457 member stays for existing clients"
    return body


CASES = [
    # (method, path, request kwargs, status)
    ("POST", "/v1/checkouts", {"data": b"[1]", "content_type": "application/json"}, 401),
    ("POST", "/v1/checkouts", {"data": b"x=1", "content_type": "text/plain", "headers": AUTH}, 400),
    ("POST", "/v1/checkouts", {"data": b'"a string"', "content_type": "application/json", "headers": AUTH}, 400),
    ("POST", "/v1/checkouts", {"data": b"{" + b" " * 2000 + b"}", "content_type": "application/json",
                               "headers": AUTH}, 413),
    ("GET", "/v1/checkouts", {"headers": AUTH}, 405),
    ("GET", "/no/such/path", {}, 404),
    ("GET", "/v1/checkouts/T1", {"headers": AUTH}, 503),  # Redis does not answer
    ("GET", "/v1/review", {"headers": AUTH}, 503),
    ("GET", "/v1/webhooks/endpoints", {"headers": AUTH}, 503),
    ("POST", "/v1/webhooks/replay", {"json": {}, "headers": AUTH}, 400),
    ("POST", "/v1/webhooks/replay", {"json": {"since": "not a time"}, "headers": AUTH}, 422),
    ("GET", "/v1/webhooks/endpoints", {}, 401),
    ("GET", "/healthz", {}, 503),
    ("GET", "/_test/415", {}, 415),
    ("GET", "/_test/429", {}, 429),
    ("GET", "/_test/500", {}, 500),
]


@pytest.mark.parametrize("method,path,kwargs,status", CASES, ids=[f"{c[3]}-{c[0]} {c[1]}" for c in CASES])
def test_errors_are_problem_documents(client, method, path, kwargs, status):
    body = assert_problem(client.open(path, method=method, **kwargs), status, path)
    assert SECRET_IN_EXCEPTION not in json.dumps(body)


def test_titles_are_rfc_9110_names_and_headers_survive(client):
    assert assert_problem(client.post("/v1/checkouts", data=b"{" + b" " * 2000 + b"}", headers=AUTH,
                                      content_type="application/json"), 413, "/v1/checkouts")["title"] \
        == "Content Too Large"
    answer = client.post("/v1/checkouts", json={"tradeNo": "T1"}, headers=AUTH)
    body = assert_problem(answer, 422, "/v1/checkouts")
    assert body["title"] == "Unprocessable Content"
    assert isinstance(body["errors"], dict) and "mobile" in body["errors"]  # the documented 422 member
    assert allowed(client.get("/v1/checkouts")) == {"OPTIONS", "POST"}
    assert client.get("/_test/429").headers["Retry-After"] == "7"
    assert client.get("/v1/review").headers.get("WWW-Authenticate", "").startswith("Bearer")
    # the 503 the client retries with carries its tradeNo, at the top level as before
    job = payload(tradeNo="RETRY-ME-1")
    body = assert_problem(client.post("/v1/checkouts", json=job, headers=AUTH), 503, "/v1/checkouts")
    assert body["tradeNo"] == "RETRY-ME-1"


def test_a_500_shows_no_exception_text(client):
    answer = client.get("/_test/500")
    assert SECRET_IN_EXCEPTION not in answer.get_data(as_text=True)
    assert assert_problem(answer, 500, "/_test/500")["detail"] == "internal error"


def test_metrics_errors_are_problem_documents():
    off = make_app().test_client().get("/metrics")
    assert_problem(off, 404, "/metrics")
    guarded = make_app(metrics=True, metrics_token="m-token").test_client().get("/metrics")
    assert_problem(guarded, 401, "/metrics")
    assert guarded.headers["WWW-Authenticate"].startswith("Bearer")


# -- /vexora/notify: the gateway's plain text, whatever goes wrong -------------------------------
class _BrokenBroker:
    """A runtime whose broker fails in a way nobody planned for (a 500)."""

    task_messages = None  # not the store's Redis: the web app sends with ``send``

    def send(self, *_args, **_kwargs):
        raise RuntimeError(f"unplanned failure {SECRET_IN_EXCEPTION}")


def signed_callback() -> bytes:
    fields = {"platFormTradeNo": "P1", "tradeNo": "T1", "amount": "300.00", "status": "0000",
              "message": "Success", "timestamp": "1700000000000"}
    fields["sign"] = sign(fields, APP_SECRET)
    return json.dumps(fields).encode()


@pytest.mark.parametrize("case,status,text", [
    ("unsigned", 401, "invalid signature"),
    ("not json", 400, "malformed callback: body is not JSON"),
    ("too large", 413, "request body too large"),
    ("GET", 405, "method not allowed"),
    ("broker crashes", 500, "internal error"),
])
def test_notify_answers_stay_plain_text(case, status, text):
    app = create_app(Settings(app_secret=APP_SECRET, metrics=False, redis_url=NO_REDIS, callback_max_bytes=1024),
                     runtime=_BrokenBroker())
    client = app.test_client()
    if case == "GET":
        answer = client.get("/vexora/notify")
        assert allowed(answer) == {"OPTIONS", "POST"}
    else:
        body = {"unsigned": b"{}", "not json": b"{nope", "too large": b"{" + b" " * 2000 + b"}",
                "broker crashes": signed_callback()}[case]
        answer = client.post("/vexora/notify", data=body, content_type="application/json")
    assert (answer.status_code, answer.mimetype, answer.get_data(as_text=True)) == (status, "text/plain", text)


def test_the_readme_shows_the_422_the_api_answers():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    shown = json.loads(re.search(r"^422, Content-Type: application/problem\+json.*?\n(\{.*?\}\})\n```", readme,
                                 flags=re.S | re.M).group(1))
    curl = json.loads(re.search(r"-d '(\{.*?\})'", readme, flags=re.S).group(1))
    answer = make_app().test_client().post("/v1/checkouts", json={**curl, "mobile": "7777"}, headers=AUTH)
    assert assert_problem(answer, 422, "/v1/checkouts") == shown
