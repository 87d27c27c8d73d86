"""The sandbox gateway over real HTTP: one server on a free port, reset before every test."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from worker.sandbox import make_server
from worker.signing import sign
from worker.waiting import wait_until

pytestmark = pytest.mark.integration

MERCHANT = "M-TEST-001"
SECRET = "test-app-secret"
PUBLIC_URL = "http://sandbox.example.test:9999"
TIMEOUT = 5
_serial = itertools.count(1)


@pytest.fixture(scope="module")
def server():
    srv = make_server(merchant_no=MERCHANT, app_secret=SECRET, public_url=PUBLIC_URL)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def clean(server):
    requests.post(f"{server.base}/_sandbox/reset", timeout=TIMEOUT).raise_for_status()


@pytest.fixture
def base(server):
    return server.base


def new_trade_no() -> str:
    return f"20250101000000{next(_serial):06d}"


def checkout_body(trade_no: str | None = None, **overrides) -> dict:
    body = {"timestamp": str(int(time.time() * 1000)), "tradeNo": trade_no or new_trade_no(),
            "userId": "user-1", "amount": "300", "mobile": "09012345678", "firstname": "タロウ",
            "lastname": "ヤマダ", "email": "taro@example.com", "channelCode": "EWALLET",
            "wayCode": "PAYPAY", "ipAddress": "8.8.8.8", "notifyUrl": "http://merchant.test/notify",
            "returnUrl": "http://merchant.test/return", "remark": "r-1"}
    body.update(overrides)
    body = {key: value for key, value in body.items() if value is not None}
    body["sign"] = sign(body, SECRET)
    return body


def post(base, path, body, merchant=MERCHANT, timeout=TIMEOUT):
    return requests.post(f"{base}{path}", json=body, headers={"merchantNo": merchant},
                         timeout=timeout)


def checkout(base, body, **kwargs):
    return post(base, "/v1/vexora/checkout", body, **kwargs)


def query(base, trade_no, merchant=MERCHANT):
    body = {"tradeNo": trade_no, "timestamp": str(int(time.time() * 1000))}
    body["sign"] = sign(body, SECRET)
    return post(base, "/v1/vexora/queryPayInResult", body, merchant=merchant)


def add_faults(base, *rules):
    response = requests.post(f"{base}/_sandbox/faults", json={"faults": list(rules)},
                             timeout=TIMEOUT)
    response.raise_for_status()
    return response.json()


def order(base, trade_no):
    response = requests.get(f"{base}/_sandbox/orders/{trade_no}", timeout=TIMEOUT)
    return response.json() if response.status_code == 200 else None


def stats(base):
    return requests.get(f"{base}/_sandbox/stats", timeout=TIMEOUT).json()


def counters(base, trade_no):
    return stats(base)["checkout"][trade_no]


# -- gateway behaviour ---------------------------------------------------------------------
def test_checkout_creates_a_paying_order_with_a_link_under_public_url(base):
    body = checkout_body()
    response = checkout(base, body)
    assert response.status_code == 200
    answer = response.json()
    assert (answer["code"], answer["msg"], answer["success"]) == ("0000", "success", True)
    assert isinstance(answer["timestamp"], int)
    data = answer["data"]
    assert data["tradeNo"] == body["tradeNo"]
    assert (data["status"], data["message"], data["remark"]) == ("0015", "Paying", "r-1")
    assert len(data["platFormTradeNo"]) == 16 and data["platFormTradeNo"].isalnum()
    assert data["paymentLink"] == f"{PUBLIC_URL}/cashier/{data['platFormTradeNo']}"
    assert response.headers["Content-Length"] == str(len(response.content))


def test_order_keeps_no_payer_data(base):
    body = checkout_body()
    checkout(base, body)
    kept = order(base, body["tradeNo"])
    assert kept["amount"] == "300" and kept["ipAddress"] == "8.8.8.8"
    for field in ("mobile", "firstname", "lastname", "email"):
        assert field not in kept
    assert "09012345678" not in str(kept)


def test_second_checkout_for_a_trade_no_is_refused_and_counted(base):
    body = checkout_body()
    assert checkout(base, body).json()["code"] == "0000"
    again = checkout(base, body).json()
    assert (again["code"], again["msg"], again["success"], again["data"]) == (
        "8000", "duplicate tradeNo", False, None)
    assert counters(base, body["tradeNo"]) == {"received": 2, "created": 1, "duplicates": 1,
                                               "faults": 0}


def test_unknown_merchant_is_refused(base):
    body = checkout_body()
    answer = checkout(base, body, merchant="someone-else").json()
    assert (answer["code"], answer["msg"], answer["data"]) == ("8000", "merchant not found", None)
    assert order(base, body["tradeNo"]) is None


def test_bad_sign_is_refused(base):
    body = checkout_body()
    body["amount"] = "3000"  # changed after signing
    answer = checkout(base, body).json()
    assert (answer["code"], answer["msg"]) == ("8000", "sign error")
    assert order(base, body["tradeNo"]) is None


@pytest.mark.parametrize("body", [[1, 2], {"nested": {"a": "b"}}, "text"])
def test_body_that_is_not_a_flat_object_is_refused(base, body):
    answer = checkout(base, body).json()
    assert (answer["code"], answer["msg"]) == ("8000", "invalid request")


@pytest.mark.parametrize(("field", "value"), [
    ("email", None), ("userId", ""), ("amount", "0"), ("amount", "3.5"), ("amount", "３００"),
    ("mobile", "9012345678"), ("mobile", "19012345678"), ("mobile", "0901234567x"),
    ("tradeNo", "T" * 33),
])
def test_invalid_field_is_named(base, field, value):
    body = checkout_body(**{field: value})
    answer = checkout(base, body).json()
    assert (answer["code"], answer["msg"]) == ("8000", f"{field} invalid")
    assert stats(base)["totals"]["created"] == 0


def test_query_answers_a_known_order_with_its_current_status(server, base):
    body = checkout_body()
    created = checkout(base, body).json()["data"]
    answer = query(base, body["tradeNo"]).json()
    assert answer["code"] == "0000"
    assert answer["data"] == {"tradeNo": body["tradeNo"], "status": "0015", "message": "Paying",
                              "platFormTradeNo": created["platFormTradeNo"], "amount": "300",
                              "orderAmount": "300"}
    server.sandbox.set_status(body["tradeNo"], "0001", "Partially paid", paid_amount="100")
    moved = query(base, body["tradeNo"]).json()["data"]
    assert (moved["status"], moved["message"], moved["amount"]) == ("0001", "Partially paid", "100")
    assert (moved["orderAmount"], moved["payAmount"]) == ("300", "100")


def test_query_unknown_order_and_bad_merchant(base):
    answer = query(base, "no-such-trade").json()
    assert (answer["code"], answer["msg"], answer["data"]) == ("8000", "order not found", None)
    assert query(base, "no-such-trade", merchant="x").json()["msg"] == "merchant not found"
    assert stats(base)["query"] == {"no-such-trade": 2}


# -- faults --------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [None, 503])
def test_http_error_answers_the_status_and_creates_nothing(base, status):
    rule = {"kind": "http_error"} | ({"status": status} if status else {})
    add_faults(base, rule)
    body = checkout_body()
    response = checkout(base, body)
    assert response.status_code == (status or 502)
    assert response.headers["Content-Type"].startswith("text/html")
    assert order(base, body["tradeNo"]) is None
    assert counters(base, body["tradeNo"])["faults"] == 1


def test_retry_after_answers_429_with_the_header(base):
    add_faults(base, {"kind": "retry_after", "delay": 7.9})
    body = checkout_body()
    response = checkout(base, body)
    assert (response.status_code, response.headers["Retry-After"]) == (429, "7")
    assert order(base, body["tradeNo"]) is None


@pytest.mark.parametrize("create", [True, False])
def test_code_5000_creates_the_order_only_when_asked(base, create):
    add_faults(base, {"kind": "code_5000", "create": create})
    body = checkout_body()
    answer = checkout(base, body).json()
    assert (answer["code"], answer["msg"], answer["success"], answer["data"]) == (
        "5000", "system exception", False, None)
    assert (order(base, body["tradeNo"]) is not None) is create


def test_slow_after_create_times_the_client_out_but_the_order_exists(base):
    add_faults(base, {"kind": "slow_after_create", "delay": 1.0})
    body = checkout_body()
    with pytest.raises(requests.ReadTimeout):
        checkout(base, body, timeout=0.3)
    assert order(base, body["tradeNo"])["status"] == "0015"
    assert checkout(base, body).json()["msg"] == "duplicate tradeNo"


@pytest.mark.parametrize("create", [True, False])
def test_drop_closes_the_connection_without_an_answer(base, create):
    add_faults(base, {"kind": "drop", "create": create})
    body = checkout_body()
    with pytest.raises(requests.ConnectionError):
        checkout(base, body)
    assert (order(base, body["tradeNo"]) is not None) is create


def test_latency_delays_then_answers_normally(base):
    add_faults(base, {"kind": "latency", "delay": 0.2})
    started = time.monotonic()
    answer = checkout(base, checkout_body()).json()
    assert time.monotonic() - started >= 0.2
    assert answer["code"] == "0000"


def test_rule_applies_times_then_goes_away(base):
    add_faults(base, {"kind": "http_error", "times": 2})
    codes = [checkout(base, checkout_body()).status_code for _ in range(3)]
    assert codes == [502, 502, 200]
    assert requests.get(f"{base}/_sandbox/faults", timeout=TIMEOUT).json()["faults"] == []


def test_rule_with_times_minus_one_stays(base):
    add_faults(base, {"kind": "http_error", "times": -1})
    assert [checkout(base, checkout_body()).status_code for _ in range(3)] == [502] * 3
    assert len(requests.get(f"{base}/_sandbox/faults", timeout=TIMEOUT).json()["faults"]) == 1
    requests.delete(f"{base}/_sandbox/faults", timeout=TIMEOUT).raise_for_status()
    assert checkout(base, checkout_body()).status_code == 200


def test_rule_matches_its_trade_no_only(base):
    target, other = checkout_body(), checkout_body()
    add_faults(base, {"kind": "http_error", "tradeNo": target["tradeNo"]})
    assert checkout(base, other).status_code == 200
    assert checkout(base, target).status_code == 502
    assert checkout(base, target).json()["code"] == "0000"


def test_rule_fires_before_merchant_and_sign_checks(base):
    add_faults(base, {"kind": "http_error"})
    assert checkout(base, checkout_body(), merchant="nobody").status_code == 502


def test_query_rule_leaves_checkout_alone(base):
    body = checkout_body()
    add_faults(base, {"endpoint": "query", "kind": "code_5000"})
    assert checkout(base, body).json()["code"] == "0000"
    assert query(base, body["tradeNo"]).json()["code"] == "5000"
    assert query(base, body["tradeNo"]).json()["code"] == "0000"


@pytest.mark.parametrize("rule", [{"kind": "boom"}, {"kind": "latency", "times": 0},
                                  {"kind": "latency", "delay": -1}, {"kind": "drop", "create": 1},
                                  {"kind": "http_error", "endpoint": "payout"}, "latency"])
def test_bad_rule_is_refused_and_nothing_is_added(base, rule):
    response = requests.post(f"{base}/_sandbox/faults",
                             json={"faults": [{"kind": "latency"}, rule]}, timeout=TIMEOUT)
    assert response.status_code == 400 and response.json()["error"]
    assert requests.get(f"{base}/_sandbox/faults", timeout=TIMEOUT).json()["faults"] == []


def test_chaos_injects_faults_until_turned_off_and_rules_win(base):
    chaos = requests.post(f"{base}/_sandbox/chaos", json={"rates": {"http_error": 1.0}, "seed": 1},
                          timeout=TIMEOUT)
    assert chaos.json()["chaos"]["rates"] == {"http_error": 1.0}
    assert checkout(base, checkout_body()).status_code == 502
    add_faults(base, {"kind": "code_5000"})
    assert checkout(base, checkout_body()).json()["code"] == "5000"
    requests.post(f"{base}/_sandbox/chaos", json={"rates": {}}, timeout=TIMEOUT)
    assert checkout(base, checkout_body()).json()["code"] == "0000"
    assert stats(base)["totals"]["faults"] == 2


def test_chaos_refuses_rates_above_one(base):
    response = requests.post(f"{base}/_sandbox/chaos",
                             json={"rates": {"http_error": 0.7, "drop": 0.5}}, timeout=TIMEOUT)
    assert response.status_code == 400


def chaos(base, body) -> requests.Response:
    return requests.post(f"{base}/_sandbox/chaos", json=body, timeout=TIMEOUT)


def test_query_chaos_answers_an_html_403_to_queries_and_leaves_checkouts_alone(base):
    bodies = [checkout_body() for _ in range(3)]
    setting = chaos(base, {"query": {"rates": {"http_error": 1.0}, "status": 403}}).json()
    assert setting["chaos"]["query"] == {"rates": {"http_error": 1.0}, "status": 403,
                                         "delay": 2.0}
    assert setting["chaos"]["rates"] == {}  # checkout chaos stays off
    for body in bodies:
        assert checkout(base, body).json()["code"] == "0000"
        answer = query(base, body["tradeNo"])
        assert answer.status_code == 403
        assert answer.headers["Content-Type"].startswith("text/html")
        assert answer.text.startswith("<html>") and "403 Forbidden" in answer.text
        with pytest.raises(ValueError):
            answer.json()
    totals = stats(base)["totals"]
    assert (totals["queries"], totals["query_faults"], totals["faults"]) == (3, 3, 3)
    for body in bodies:
        assert counters(base, body["tradeNo"]) == {"received": 1, "created": 1, "duplicates": 0,
                                                   "faults": 0}
    listed = requests.get(f"{base}/_sandbox/faults", timeout=TIMEOUT).json()["chaos"]
    assert listed["query"]["status"] == 403
    chaos(base, {"rates": {}}).raise_for_status()  # a setting without query turns it off
    assert query(base, bodies[0]["tradeNo"]).json()["code"] == "0000"


def test_query_chaos_draws_every_kind_and_http_error_defaults_to_502(base):
    body = checkout_body()
    checkout(base, body)
    chaos(base, {"query": {"rates": {"http_error": 1.0}}}).raise_for_status()
    assert query(base, body["tradeNo"]).status_code == 502
    chaos(base, {"query": {"rates": {"code_5000": 1.0}}}).raise_for_status()
    assert query(base, body["tradeNo"]).json()["code"] == "5000"
    chaos(base, {"delay": 3, "query": {"rates": {"retry_after": 1.0}}}).raise_for_status()
    answer = query(base, body["tradeNo"])  # the query delay defaults to the top-level one
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "3")
    assert stats(base)["totals"]["query_faults"] == 3


def test_checkout_chaos_leaves_queries_alone(base):
    body = checkout_body()
    checkout(base, body)
    chaos(base, {"rates": {"http_error": 1.0}}).raise_for_status()
    assert checkout(base, checkout_body()).status_code == 502
    assert query(base, body["tradeNo"]).json()["code"] == "0000"
    assert stats(base)["totals"]["query_faults"] == 0


def test_query_rule_faults_count_as_query_faults_only(base):
    body = checkout_body()
    checkout(base, body)
    add_faults(base, {"endpoint": "query", "kind": "http_error", "status": 403})
    assert query(base, body["tradeNo"]).status_code == 403
    totals = stats(base)["totals"]
    assert (totals["faults"], totals["query_faults"]) == (1, 1)
    assert counters(base, body["tradeNo"])["faults"] == 0


@pytest.mark.parametrize(("query_chaos", "message"), [
    ([], "query must be an object"), ({"rate": {"http_error": 1.0}}, "query must be an object"),
    ({"rates": {"boom": 1.0}}, "rates must map"), ({"rates": {"drop": 1.5}}, "each rate"),
    ({"status": 99}, "query status"), ({"status": "403"}, "query status"),
    ({"status": True}, "query status"), ({"delay": -1}, "query delay"),
])
def test_bad_query_chaos_is_refused_and_changes_nothing(base, query_chaos, message):
    chaos(base, {"rates": {"latency": 0.1}, "query": {"rates": {"drop": 0.2}}}).raise_for_status()
    before = requests.get(f"{base}/_sandbox/faults", timeout=TIMEOUT).json()
    response = chaos(base, {"rates": {}, "query": query_chaos})
    assert response.status_code == 400 and message in response.json()["error"]
    assert requests.get(f"{base}/_sandbox/faults", timeout=TIMEOUT).json() == before


# -- control API ---------------------------------------------------------------------------
def test_stats_totals_add_up(base):
    first, second = checkout_body(), checkout_body()
    add_faults(base, {"kind": "http_error", "tradeNo": second["tradeNo"]})
    checkout(base, first)
    checkout(base, first)
    checkout(base, second)
    checkout(base, second)
    query(base, first["tradeNo"])
    assert stats(base)["totals"] == {"received": 4, "created": 2, "duplicates": 1, "faults": 1,
                                     "queries": 1, "query_faults": 0}
    assert counters(base, second["tradeNo"]) == {"received": 2, "created": 1, "duplicates": 0,
                                                 "faults": 1}


def test_reset_forgets_orders_stats_rules_and_chaos(base):
    body = checkout_body()
    checkout(base, body)
    add_faults(base, {"kind": "drop"})
    requests.post(f"{base}/_sandbox/chaos", json={"rates": {"drop": 1.0}}, timeout=TIMEOUT)
    requests.post(f"{base}/_sandbox/reset", timeout=TIMEOUT).raise_for_status()
    assert order(base, body["tradeNo"]) is None
    assert stats(base) == {"checkout": {}, "query": {}, "totals": {
        "received": 0, "created": 0, "duplicates": 0, "faults": 0, "queries": 0,
        "query_faults": 0},
        "callbacks": {"scheduled": 0, "delivered": 0, "attempts": 0, "dropped": 0, "gave_up": 0}}
    listed = requests.get(f"{base}/_sandbox/faults", timeout=TIMEOUT).json()
    assert listed == {"faults": [], "chaos": {"rates": {}, "delay": 2.0, "seed": None, "query": {
        "rates": {}, "status": 502, "delay": 2.0}}}
    assert checkout(base, body).json()["code"] == "0000"


def test_unknown_path_is_404_and_unknown_method_is_405(base):
    assert requests.get(f"{base}/nope", timeout=TIMEOUT).status_code == 404
    assert requests.post(f"{base}/_sandbox/nope", json={}, timeout=TIMEOUT).status_code == 404
    assert requests.get(f"{base}/_sandbox/orders/none", timeout=TIMEOUT).status_code == 404
    assert requests.delete(f"{base}/_sandbox/stats", timeout=TIMEOUT).status_code == 404
    assert requests.put(f"{base}/_sandbox/faults", timeout=TIMEOUT).status_code == 405
    assert requests.request("PURGE", f"{base}/", timeout=TIMEOUT).status_code == 405


def test_access_log_names_method_path_and_status_only(base, caplog):
    caplog.set_level(logging.INFO, logger="worker.sandbox")
    requests.post(f"{base}/v1/vexora/checkout?debug=1", json=checkout_body(),
                  headers={"merchantNo": MERCHANT}, timeout=TIMEOUT)
    # written by the server's own thread: the test does not rely on when, within the answer
    wait_until(lambda: any("checkout" in r.getMessage() for r in caplog.records), timeout=5,
               what="the access log line")
    lines = [r.getMessage() for r in caplog.records]
    assert "POST /v1/vexora/checkout 200" in lines
    assert not any("09012345678" in line or "debug" in line for line in lines)


def test_concurrent_checkouts_for_one_trade_no_create_it_once(base):
    body = checkout_body()
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda _: checkout(base, body).json()["code"], range(8)))
    assert sorted(codes) == ["0000"] + ["8000"] * 7
    assert counters(base, body["tradeNo"]) == {"received": 8, "created": 1, "duplicates": 7,
                                               "faults": 0}
