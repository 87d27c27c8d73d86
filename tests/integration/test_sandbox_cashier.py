"""The sandbox's cashier page, callbacks, lost callbacks, automatic payer and per-IP limits, over
real HTTP: the sandbox (time factor 0.01) and a merchant receiver that records every callback and
answers from a programmable script.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urljoin

import pytest
import requests

from worker.sandbox import make_server
from worker.signing import parse_json_keeping_numbers, sign, verify
from worker.waiting import wait_until

pytestmark = pytest.mark.integration

MERCHANT = "M-CASHIER-001"
SECRET = "cashier-secret"
TIMEOUT = 5
WAIT = 5  # seconds any expected callback may take; the schedule at 0.01 needs well under one
_serial = itertools.count(1)


# -- the merchant's callback receiver -------------------------------------------------------------
class Receiver(ThreadingHTTPServer):
    """Records each callback body (raw bytes); answers from ``script``, then 200 ``OK``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/notify"
        self.release = threading.Event()  # frees stalled answers at teardown
        self._lock = threading.Lock()
        self.reset()

    def reset(self, *script) -> None:
        """Answers to give, in order: (status, text) pairs or "stall" (never answer in time)."""
        with self._lock:
            self._bodies: list[bytes] = []
            self._script = list(script)

    def record(self, body: bytes):
        with self._lock:
            self._bodies.append(body)
            return self._script.pop(0) if self._script else (200, "OK")

    def bodies(self) -> list[bytes]:
        with self._lock:
            return list(self._bodies)


class ReceiverHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Receiver

    def do_POST(self) -> None:
        answer = self.server.record(self.rfile.read(int(self.headers["Content-Length"])))
        if answer == "stall":
            self.server.release.wait(5)
            self.close_connection = True
            return
        status, text = answer
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text.encode())))
        self.end_headers()
        self.wfile.write(text.encode())

    def log_message(self, format, *args) -> None:
        pass


def serve(server):
    # a short poll interval keeps shutdown (and so each teardown) quick
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    return server


def stop(server) -> None:
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def receiver():
    srv = serve(Receiver())
    yield srv
    srv.release.set()
    stop(srv)


@pytest.fixture(scope="module")
def server():
    srv = serve(make_server(merchant_no=MERCHANT, app_secret=SECRET, time_factor=0.01))
    yield srv
    stop(srv)


@pytest.fixture
def make():
    """Extra sandboxes with their own options, stopped after the test."""
    started = []

    def _make(**options):
        started.append(serve(make_server(merchant_no=MERCHANT, app_secret=SECRET, **options)))
        return started[-1]

    yield _make
    for srv in started:
        stop(srv)


@pytest.fixture(autouse=True)
def clean(server, receiver):
    requests.post(f"{server.base}/_sandbox/reset", timeout=TIMEOUT).raise_for_status()
    receiver.reset()


@pytest.fixture
def base(server):
    return server.base


# -- helpers ---------------------------------------------------------------------------------------
def checkout(base, receiver, **overrides) -> dict:
    """The answer to a real signed checkout whose notifyUrl is the receiver."""
    body = {"timestamp": str(int(time.time() * 1000)), "tradeNo": f"CASH{next(_serial):010d}",
            "userId": "user-1", "amount": "300", "mobile": "09012345678", "firstname": "タロウ",
            "lastname": "ヤマダ", "email": "taro@example.com", "channelCode": "EWALLET",
            "wayCode": "PAYPAY", "ipAddress": "8.8.8.8", "notifyUrl": receiver.url,
            "returnUrl": "http://merchant.test/return", "remark": "r-1"} | overrides
    body = {key: value for key, value in body.items() if value is not None}
    body["sign"] = sign(body, SECRET)
    return requests.post(f"{base}/v1/vexora/checkout", json=body, headers={"merchantNo": MERCHANT},
                         timeout=TIMEOUT).json()


def order_for(base, receiver, **overrides) -> dict:
    answer = checkout(base, receiver, **overrides)
    assert answer["code"] == "0000", answer
    return answer["data"]


def click(data: dict, action: str, **kwargs) -> requests.Response:
    return requests.post(f"{data['paymentLink']}/{action}", timeout=TIMEOUT, **kwargs)


def control(base, method, path, body=None) -> requests.Response:
    return requests.request(method, f"{base}/_sandbox/{path}", json=body, timeout=TIMEOUT)


def deliveries(base) -> list[dict]:
    return control(base, "GET", "callbacks").json()["callbacks"]


def callback_stats(base) -> dict:
    return control(base, "GET", "stats").json()["callbacks"]


def settled(base, trade_no: str | None = None) -> list[dict]:
    """Every delivery (of ``trade_no``) once none is pending any more, else []."""
    listed = [d for d in deliveries(base) if trade_no in (None, d["tradeNo"])]
    done = listed and all(d["delivered"] or d["dropped"] or d["gave_up"] for d in listed)
    return listed if done else []


def callbacks(receiver, count: int = 1) -> list[dict]:
    bodies = wait_until(lambda: len(receiver.bodies()) >= count and receiver.bodies(),
                        timeout=WAIT, what=f"{count} callback(s)")
    return [parse_json_keeping_numbers(raw) for raw in bodies]


def order_status(base, trade_no) -> dict:
    return control(base, "GET", f"orders/{trade_no}").json()


def query_data(base, trade_no) -> dict:
    """``data`` of a real signed query for ``trade_no``."""
    body = {"tradeNo": trade_no, "timestamp": str(int(time.time() * 1000))}
    body["sign"] = sign(body, SECRET)
    answer = requests.post(f"{base}/v1/vexora/queryPayInResult", json=body,
                           headers={"merchantNo": MERCHANT}, timeout=TIMEOUT).json()
    assert answer["code"] == "0000", answer
    return answer["data"]


def autopay(base, outcome: str, delay: float = 0.05) -> None:
    control(base, "POST", "autopay", {"mix": {outcome: 1.0}, "delay": delay}).raise_for_status()


def settled_sequence(base, trade_no: str, count: int) -> list[dict]:
    """The order's ``count`` deliveries, once all were made and none is pending any more."""
    def done() -> list[dict]:
        listed = settled(base, trade_no)
        return listed if len(listed) == count else []
    return wait_until(done, timeout=WAIT, what=f"{count} settled deliveries for {trade_no}")


# -- the cashier page ------------------------------------------------------------------------------
def test_page_shows_order_amount_status_and_three_buttons_without_payer_data(base, receiver):
    data = order_for(base, receiver)
    page = requests.get(data["paymentLink"], timeout=TIMEOUT)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    html = page.text
    assert html.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in html
    assert re.search(r"<title>[^<]+</title>", html)
    assert data["tradeNo"] in html and "¥300" in html
    assert '<p id="status">Paying</p>' in html
    for action in ("pay", "partial", "fail"):
        assert f'<form method="post" action="{data["platFormTradeNo"]}/{action}">' in html
        assert f'id="{action}"' in html
    for payer_data in ("09012345678", "taro@example.com", "タロウ", "ヤマダ", "8.8.8.8"):
        assert payer_data not in html


def test_pay_redirects_to_a_paid_page_and_sends_a_signed_callback(base, receiver):
    data = order_for(base, receiver)
    answer = click(data, "pay", allow_redirects=False)
    assert answer.status_code == 303
    assert urljoin(answer.url, answer.headers["Location"]) == data["paymentLink"]
    page = requests.get(data["paymentLink"], timeout=TIMEOUT).text
    assert '<p id="status">Paid</p>' in page and 'id="pay"' not in page
    assert 'href="http://merchant.test/return"' in page
    kept = order_status(base, data["tradeNo"])
    assert (kept["status"], kept["message"], kept["paidAmount"]) == ("0000", "Success", "300")

    [callback] = callbacks(receiver)
    raw = receiver.bodies()[0]
    assert b'"amount":300.00' in raw or b'"amount": 300.00' in raw
    assert verify(callback, SECRET)
    assert set(callback) == {"platFormTradeNo", "tradeNo", "amount", "status", "message",
                             "timestamp", "successTime", "remark", "sign"}
    assert (callback["tradeNo"], callback["platFormTradeNo"]) == (data["tradeNo"],
                                                                  data["platFormTradeNo"])
    assert (callback["status"], callback["message"], callback["remark"]) == ("0000", "Success",
                                                                             "r-1")
    assert isinstance(callback["timestamp"], str) and callback["timestamp"].isdigit()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", callback["successTime"])
    assert b"09012345678" not in raw
    assert wait_until(lambda: settled(base), timeout=WAIT, what="delivery")[0]["delivered"]


@pytest.mark.parametrize(("amount", "half"), [("300", "150"), ("301", "150"), ("1", "1")])
def test_pay_part_pays_half_rounded_down_and_at_least_one_yen(base, receiver, amount, half):
    data = order_for(base, receiver, amount=amount)
    page = click(data, "partial")  # requests follows the 303 with a GET
    assert page.status_code == 200 and '<p id="status">Partially paid</p>' in page.text
    assert order_status(base, data["tradeNo"])["paidAmount"] == half
    [callback] = callbacks(receiver)
    assert (callback["status"], callback["amount"]) == ("0001", f"{half}.00")
    assert verify(callback, SECRET)


def test_fail_sends_a_failed_callback_with_nothing_paid(base, receiver):
    data = order_for(base, receiver, remark=None)
    assert '<p id="status">Failed</p>' in click(data, "fail").text
    [callback] = callbacks(receiver)
    assert (callback["status"], callback["message"], callback["amount"]) == ("00029", "Failed",
                                                                             "0.00")
    assert "successTime" not in callback and "remark" not in callback
    assert verify(callback, SECRET)


def test_a_closed_payment_answers_409_and_changes_nothing(base, receiver):
    data = order_for(base, receiver)
    click(data, "pay")
    for action in ("fail", "pay"):
        again = click(data, action, allow_redirects=False)
        assert again.status_code == 409 and '<p id="status">Paid</p>' in again.text
    assert order_status(base, data["tradeNo"])["status"] == "0000"
    assert len(wait_until(lambda: settled(base), timeout=WAIT, what="delivery")) == 1


def test_unknown_link_or_action_is_a_404_page(base, receiver):
    data = order_for(base, receiver)
    for method, url in (("GET", f"{base}/cashier/nosuchorder"),
                        ("POST", f"{base}/cashier/nosuchorder/pay"),
                        ("POST", f"{data['paymentLink']}/refund"),
                        ("GET", f"{data['paymentLink']}/pay")):
        answer = requests.request(method, url, timeout=TIMEOUT)
        assert answer.status_code == 404 and answer.headers["Content-Type"].startswith("text/html")
    assert order_status(base, data["tradeNo"])["status"] == "0015"


def test_everything_rendered_is_escaped(base, receiver):
    data = order_for(base, receiver, tradeNo="<b>x</b>&\"'")
    html = requests.get(data["paymentLink"], timeout=TIMEOUT).text
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;&amp;&quot;&#x27;" in html


# -- delivery and resends ---------------------------------------------------------------------------
def test_callback_is_resent_until_the_answer_is_exactly_OK(base, receiver):
    receiver.reset((500, "OK"), (200, "not ok"), (200, "ok"), (200, " OK\n"))
    data = order_for(base, receiver)
    click(data, "pay")
    [delivery] = wait_until(lambda: settled(base), timeout=WAIT, what="delivery")
    assert (delivery["attempts"], delivery["delivered"], delivery["last_status"]) == (4, True, 200)
    bodies = receiver.bodies()
    assert len(bodies) == 4 and len(set(bodies)) == 1  # the same signed callback each time
    assert callback_stats(base) == {"scheduled": 1, "delivered": 1, "attempts": 4, "dropped": 0,
                                    "gave_up": 0}


def test_a_receiver_that_does_not_answer_in_time_gets_the_callback_again(base, receiver):
    receiver.reset("stall")
    click(order_for(base, receiver), "pay")
    [delivery] = wait_until(lambda: settled(base), timeout=WAIT, what="delivery")
    assert (delivery["attempts"], delivery["delivered"]) == (2, True)


def test_gives_up_after_nine_deliveries(make, receiver):
    fast = make(time_factor=0.00001)  # the whole day's schedule in about a second
    receiver.reset(*[(503, "busy")] * 20)
    data = order_for(fast.base, receiver)
    control(fast.base, "POST", f"orders/{data['tradeNo']}/status", {"status": "0000"})
    [delivery] = wait_until(lambda: settled(fast.base), timeout=WAIT, what="giving up")
    assert delivery["gave_up"] and not delivery["delivered"]
    assert (delivery["attempts"], delivery["last_status"]) == (9, 503)
    assert len(receiver.bodies()) == 9
    assert callback_stats(fast.base)["gave_up"] == 1


# -- lost callbacks on demand ----------------------------------------------------------------------
def test_drop_count_loses_the_next_deliveries_whole(base, receiver):
    assert control(base, "POST", "callbacks/drop", {"count": 1}).json()["drops"]["count"] == 1
    lost, kept = order_for(base, receiver), order_for(base, receiver)
    click(lost, "pay")
    click(kept, "pay")
    [callback] = callbacks(receiver)
    assert callback["tradeNo"] == kept["tradeNo"]
    listed = wait_until(lambda: settled(base), timeout=WAIT, what="deliveries")
    assert [(d["tradeNo"], d["dropped"], d["attempts"]) for d in listed] == [
        (lost["tradeNo"], True, 0), (kept["tradeNo"], False, 1)]
    assert callback_stats(base)["dropped"] == 1


def test_drop_by_trade_no_loses_all_its_callbacks_until_cleared(base, receiver):
    lost, kept = order_for(base, receiver), order_for(base, receiver)
    control(base, "POST", "callbacks/drop", {"tradeNo": lost["tradeNo"]}).raise_for_status()
    click(lost, "pay")
    control(base, "POST", f"callbacks/resend/{lost['tradeNo']}").raise_for_status()
    click(kept, "fail")
    assert [c["tradeNo"] for c in callbacks(receiver)] == [kept["tradeNo"]]
    assert [d["dropped"] for d in deliveries(base)] == [True, True, False]

    cleared = control(base, "DELETE", "callbacks/drop").json()
    assert cleared == {"drops": {"count": 0, "tradeNos": []}}
    control(base, "POST", f"callbacks/resend/{lost['tradeNo']}").raise_for_status()
    assert [c["tradeNo"] for c in callbacks(receiver, 2)][1] == lost["tradeNo"]


def test_resend_delivers_the_current_status_again(base, receiver):
    data = order_for(base, receiver)
    click(data, "pay")
    callbacks(receiver)
    resent = control(base, "POST", f"callbacks/resend/{data['tradeNo']}").json()["callback"]
    assert (resent["tradeNo"], resent["status"]) == (data["tradeNo"], "0000")
    first, second = callbacks(receiver, 2)
    assert first["status"] == second["status"] == "0000" and verify(second, SECRET)
    assert control(base, "POST", "callbacks/resend/no-such-trade").status_code == 404


def test_control_sets_any_status_and_sends_its_callback(base, receiver):
    data = order_for(base, receiver)
    path = f"orders/{data['tradeNo']}/status"
    moved = control(base, "POST", path, {"status": "0001", "paidAmount": "100"}).json()["order"]
    assert (moved["status"], moved["message"], moved["paidAmount"]) == ("0001", "Partially paid",
                                                                        "100")
    callbacks(receiver)  # senders work in parallel: two pending callbacks may arrive either way
    control(base, "POST", path, {"status": "0100019", "message": "daily cumulative amount"})
    first, second = callbacks(receiver, 2)
    assert (first["status"], first["amount"]) == ("0001", "100.00")
    assert (second["status"], second["message"], second["amount"]) == (
        "0100019", "daily cumulative amount", "0.00")
    assert all(verify(c, SECRET) for c in (first, second))
    assert control(base, "POST", path, {"status": "0000", "paidAmount": "1.5"}).status_code == 400
    assert control(base, "POST", "orders/nope/status", {"status": "0000"}).status_code == 404


# -- automatic payer -------------------------------------------------------------------------------
def test_autopay_pays_and_calls_back_without_a_browser(base, receiver):
    setting = control(base, "POST", "autopay", {"mix": {"paid": 1.0}, "delay": 0.05}).json()
    assert setting == {"autopay": {"mix": {"paid": 1.0}, "delay": 0.05, "seed": None}}
    data = order_for(base, receiver)
    [callback] = callbacks(receiver)
    assert (callback["tradeNo"], callback["status"], callback["amount"]) == (data["tradeNo"],
                                                                             "0000", "300.00")
    assert order_status(base, data["tradeNo"])["status"] == "0000"
    off = control(base, "POST", "autopay", {"mix": {}}).json()["autopay"]
    assert off["mix"] == {}


def test_autopay_can_be_set_at_start_and_reset_returns_to_it(make, receiver):
    sandbox = make(time_factor=0.01, autopay={"mix": {"failed": 1.0}, "delay": 0})
    control(sandbox.base, "POST", "autopay", {"mix": {}}).raise_for_status()
    control(sandbox.base, "POST", "reset").raise_for_status()
    order_for(sandbox.base, receiver)
    [callback] = callbacks(receiver)
    assert callback["status"] == "00029"


@pytest.mark.parametrize("body", [{"mix": {"paid": 0.7, "failed": 0.5}}, {"mix": {"won": 1}},
                                  {"mix": {"paid": 1}, "delay": -1}, {"mix": {"paid": True}}])
def test_bad_autopay_setting_is_refused(base, body):
    assert control(base, "POST", "autopay", body).status_code == 400
    assert control(base, "GET", "autopay").json()["autopay"]["mix"] == {}


def test_autopay_partial_then_paid_loses_the_final_callback_and_only_a_query_finds_it(
        base, receiver):
    autopay(base, "partial_then_paid")
    data = order_for(base, receiver)
    first, final = settled_sequence(base, data["tradeNo"], 2)
    assert (first["status"], first["delivered"], first["dropped"]) == ("0001", True, False)
    assert (final["status"], final["delivered"], final["dropped"], final["attempts"]) == (
        "0000", False, True, 0)
    [callback] = callbacks(receiver)  # all settled: the lost one can no longer arrive
    assert (callback["status"], callback["amount"]) == ("0001", "150.00")
    assert len(receiver.bodies()) == 1 and verify(callback, SECRET)
    kept = order_status(base, data["tradeNo"])
    assert (kept["status"], kept["message"], kept["paidAmount"]) == ("0000", "Success", "300")
    queried = query_data(base, data["tradeNo"])
    assert (queried["status"], queried["amount"], queried["orderAmount"],
            queried["payAmount"]) == ("0000", "300", "300", "300")
    assert callback_stats(base)["dropped"] == 1


def test_autopay_unknown_then_paid_calls_back_00032_then_0000(base, receiver):
    autopay(base, "unknown_then_paid")
    data = order_for(base, receiver)
    listed = settled_sequence(base, data["tradeNo"], 2)
    assert [(d["status"], d["delivered"]) for d in listed] == [("00032", True), ("0000", True)]
    # senders work in parallel: compare as a set, the order was proved by the deliveries above
    got = {c["status"]: c for c in callbacks(receiver, 2)}
    assert (got["00032"]["message"], got["00032"]["amount"]) == ("unknown error", "0.00")
    assert (got["0000"]["amount"], got["0000"]["message"]) == ("300.00", "Success")
    assert all(verify(c, SECRET) for c in got.values())
    kept = order_status(base, data["tradeNo"])
    assert (kept["status"], kept["paidAmount"]) == ("0000", "300")


@pytest.mark.parametrize(("outcome", "paid"), [("paid_short", "150"), ("paid_over", "400")])
def test_autopay_paid_with_a_different_amount(base, receiver, outcome, paid):
    autopay(base, outcome)
    data = order_for(base, receiver)
    [callback] = callbacks(receiver)
    assert (callback["status"], callback["amount"]) == ("0000", f"{paid}.00")
    kept = order_status(base, data["tradeNo"])
    assert (kept["status"], kept["amount"], kept["paidAmount"]) == ("0000", "300", paid)
    queried = query_data(base, data["tradeNo"])
    assert (queried["amount"], queried["orderAmount"], queried["payAmount"]) == (paid, "300", paid)


def test_query_names_the_order_and_the_paid_amount_before_and_after_payment(base, receiver):
    data = order_for(base, receiver)
    before = query_data(base, data["tradeNo"])
    assert (before["status"], before["amount"], before["orderAmount"]) == ("0015", "300", "300")
    assert "payAmount" not in before
    click(data, "partial")
    after = query_data(base, data["tradeNo"])
    assert (after["status"], after["amount"], after["orderAmount"], after["payAmount"]) == (
        "0001", "150", "300", "150")


def test_a_sequence_stops_when_someone_else_moved_the_order(base, receiver):
    autopay(base, "unknown_then_paid", delay=0.3)
    data = order_for(base, receiver)
    wait_until(lambda: order_status(base, data["tradeNo"])["status"] == "00032", timeout=WAIT,
               what="the first step")
    path = f"orders/{data['tradeNo']}/status"
    control(base, "POST", path, {"status": "00029"}).raise_for_status()
    # an order made now is paid by its second step after the first order's would have run
    clock = order_for(base, receiver)
    wait_until(lambda: order_status(base, clock["tradeNo"])["status"] == "0000", timeout=WAIT,
               what="the later order's second step")
    assert order_status(base, data["tradeNo"])["status"] == "00029"
    assert [d["status"] for d in deliveries(base) if d["tradeNo"] == data["tradeNo"]] == [
        "00032", "00029"]


# -- per-IP limits ---------------------------------------------------------------------------------
def test_ip_limits_are_off_by_default(base, receiver):
    codes = [checkout(base, receiver, ipAddress="10.0.0.1")["code"] for _ in range(11)]
    assert codes == ["0000"] * 11


def test_ip_limits_refuse_the_eleventh_checkout_of_the_day(base, receiver):
    assert control(base, "POST", "ip-limits", {"enabled": True}).json()["ipLimits"]["enabled"]
    codes = [checkout(base, receiver, ipAddress="10.0.0.2")["code"] for _ in range(10)]
    refused = checkout(base, receiver, ipAddress="10.0.0.2")
    assert codes == ["0000"] * 10
    assert (refused["code"], refused["msg"], refused["data"]) == ("8000", "ip daily limit reached",
                                                                  None)
    assert checkout(base, receiver, ipAddress="10.0.0.3")["code"] == "0000"


@pytest.mark.parametrize("outcome", ["partial_then_paid", "unknown_then_paid"])
def test_a_sequence_counts_one_paid_per_order(base, receiver, outcome):
    control(base, "POST", "ip-limits", {"enabled": True}).raise_for_status()
    autopay(base, outcome, delay=0)
    for _ in range(3):  # counted twice, the third checkout would be refused
        data = order_for(base, receiver, ipAddress="10.0.0.5")
        wait_until(lambda: order_status(base, data["tradeNo"])["status"] == "0000",
                   timeout=WAIT, what="the sequence's end")
    assert checkout(base, receiver, ipAddress="10.0.0.5")["msg"] == "ip daily limit reached"


def test_paid_again_after_moving_away_still_counts_once(base, receiver):
    control(base, "POST", "ip-limits", {"enabled": True}).raise_for_status()
    data = order_for(base, receiver, ipAddress="10.0.0.6")
    for status in ("0000", "0001", "0000"):
        control(base, "POST", f"orders/{data['tradeNo']}/status",
                {"status": status}).raise_for_status()
    click(order_for(base, receiver, ipAddress="10.0.0.6"), "pay")
    third = order_for(base, receiver, ipAddress="10.0.0.6")  # 2 paid orders: still allowed
    click(third, "pay")
    assert checkout(base, receiver, ipAddress="10.0.0.6")["msg"] == "ip daily limit reached"


def test_ip_limits_refuse_after_three_paid(base, receiver):
    control(base, "POST", "ip-limits", {"enabled": True}).raise_for_status()
    for _ in range(3):
        click(order_for(base, receiver, ipAddress="10.0.0.4"), "pay")
    assert checkout(base, receiver, ipAddress="10.0.0.4")["msg"] == "ip daily limit reached"
    assert control(base, "POST", "ip-limits", {"enabled": "yes"}).status_code == 400


# -- control API and lifecycle ---------------------------------------------------------------------
@pytest.mark.parametrize("body", [{}, {"count": -1}, {"count": "2"}, {"tradeNo": ""}, [1]])
def test_bad_drop_request_is_refused(base, body):
    assert control(base, "POST", "callbacks/drop", body).status_code == 400


def test_reset_forgets_deliveries_and_drops(base, receiver):
    click(order_for(base, receiver), "pay")
    callbacks(receiver)
    control(base, "POST", "callbacks/drop", {"count": 3, "tradeNo": "T1"}).raise_for_status()
    control(base, "POST", "reset").raise_for_status()
    assert control(base, "GET", "callbacks").json() == {
        "callbacks": [], "drops": {"count": 0, "tradeNos": []}}
    assert callback_stats(base) == dict.fromkeys(
        ("scheduled", "delivered", "attempts", "dropped", "gave_up"), 0)


def test_closing_the_server_stops_its_sender_threads(make):
    sandbox = make()
    threads = sandbox.notifier.threads
    assert all(thread.daemon and thread.is_alive() for thread in threads)
    sandbox.shutdown()
    for thread in threads:
        thread.join(timeout=TIMEOUT)
    assert not any(thread.is_alive() for thread in threads)


def test_a_time_factor_that_is_not_positive_is_refused():
    with pytest.raises(ValueError):
        make_server(merchant_no=MERCHANT, app_secret=SECRET, time_factor=0)


# -- triggers (issue 22): the same outcomes from the control API and the cashier's buttons ---------
def trigger(base, trade_no: str, outcome: str) -> requests.Response:
    return control(base, "POST", f"orders/{trade_no}/trigger", {"outcome": outcome})


@pytest.mark.parametrize(("outcome", "status", "paid", "lost"), [
    ("paid", "0000", "300", False), ("partial", "0001", "150", False), ("failed", "00029", None, False),
    ("overpaid", "0000", "400", False), ("unknown-status", "00032", None, False),
    ("lost-callback", "0000", "300", True)])
def test_each_trigger_moves_the_order_and_sends_or_loses_its_callback(base, receiver, outcome, status, paid,
                                                                       lost):
    data = order_for(base, receiver)
    answer = trigger(base, data["tradeNo"], outcome)
    assert answer.status_code == 200, answer.text
    order = order_status(base, data["tradeNo"])
    assert (order["status"], order.get("paidAmount")) == (status, paid)
    [delivery] = settled_sequence(base, data["tradeNo"], 1)
    assert delivery["dropped"] is lost
    if not lost:
        [callback] = callbacks(receiver)
        assert callback["status"] == status and verify(callback, SECRET)


def test_after_a_partial_payment_the_rest_or_a_failure_and_nothing_twice(base, receiver):
    data = order_for(base, receiver, amount="301")
    assert trigger(base, data["tradeNo"], "rest").status_code == 409  # nothing paid yet: no rest
    page = click(data, "partial")
    # at every open step the page offers what can still happen: pay the rest, fail, ...
    assert 'id="rest"' in page.text and 'id="fail"' in page.text and "Pay the rest (¥151)" in page.text
    assert 'id="pay"' not in page.text and 'id="partial"' not in page.text
    paid = click(data, "rest")
    assert '<p id="status">Paid</p>' in paid.text and 'id="rest"' not in paid.text
    assert order_status(base, data["tradeNo"])["paidAmount"] == "301"
    again = trigger(base, data["tradeNo"], "failed")
    assert again.status_code == 409 and "Paid" in again.json()["error"]
    assert [c["status"] for c in callbacks(receiver, 2)] == ["0001", "0000"]

    other = order_for(base, receiver)
    click(other, "partial")
    assert trigger(base, other["tradeNo"], "failed").status_code == 200
    assert order_status(base, other["tradeNo"])["status"] == "00029"


def test_the_paying_page_offers_every_outcome_and_a_bad_trigger_is_refused(base, receiver):
    data = order_for(base, receiver)
    html = requests.get(data["paymentLink"], timeout=TIMEOUT).text
    for button in ("pay", "partial", "fail", "overpaid", "unknown-status", "lost-callback"):
        assert f'id="{button}"' in html
    assert 'id="rest"' not in html
    assert trigger(base, data["tradeNo"], "refunded").status_code == 400
    assert trigger(base, "NO-SUCH-ORDER", "paid").status_code == 404
    assert order_status(base, data["tradeNo"])["status"] == "0015"
    click(data, "unknown-status")  # an "unknown error": the payer may still pay
    assert 'id="pay"' in requests.get(data["paymentLink"], timeout=TIMEOUT).text
    assert trigger(base, data["tradeNo"], "paid").status_code == 200
