"""The sandbox gateway: a real local HTTP server that speaks docs/gateway.md (checkout and query), keeps
its orders in memory, counts what it received and injects faults on demand through a small
control API under ``/_sandbox/``. The cashier page lives in ``cashier``, the callbacks it
sends in ``notify``. It is a development and test tool, never a default for real money.

A query answers ``data`` with ``tradeNo, platFormTradeNo, status, message``, ``amount`` (what was
paid once something was, else the order amount), ``orderAmount`` (always the order amount) and
``payAmount`` (what was paid, only once something was): real gateway pages use all these names.

Faults come from rules (``POST /_sandbox/faults``, first match wins, for either endpoint) or else
from chaos rates (``POST /_sandbox/chaos``)::

    {"rates": {kind: probability}, "delay": 2.0, "seed": n,
     "query": {"rates": {kind: probability}, "status": 502, "delay": <the top-level delay>}}

The top-level rates draw faults for checkouts (``http_error`` answers 502 there), ``query`` for
queries, whose ``http_error`` answers an HTML page with its own ``status`` (e.g. 403 for a WAF).

A rule's ``code_8000`` answers ``8000`` with its ``message`` (default "request refused by the
gateway"): on a query, "order not found" imitates an order the gateway does not have, "sign
error" a refused signature, anything else another business error. ``amount_only`` (queries
only) answers the order's real record with a single amount, ``amount``: the order's amount
(``"amount": "order"``, the default, as some gateway pages do) or what was paid (``"paid"``).
Each POST replaces the whole setting: leaving ``query`` out turns query chaos off. ``GET
/_sandbox/faults`` lists the pending rules and the chaos setting, ``query`` included. In ``GET
/_sandbox/stats``, ``totals.faults`` counts every fault and ``totals.query_faults`` those on
queries; the per-tradeNo ``checkout`` counters count checkout faults only. ``GET
/_sandbox/totals`` answers the ``totals`` alone (constant size: what a benchmark polls).
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import string
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from http.server import ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from worker.gateway import signing
from worker.sandbox import cashier
from worker.sandbox.notify import JST, PAID_STATUSES, Notifier
from worker.sandbox.server import QuietHandler, serve_until_stopped

__all__ = ["Sandbox", "SandboxServer", "GatewayConfig", "IpLimitReached", "make_server", "run"]

logger = logging.getLogger(__name__)

CHECKOUT_PATH = "/v1/vexora/checkout"
QUERY_PATH = "/v1/vexora/queryPayInResult"
ORDERS_PATH = "/_sandbox/orders/"
RESEND_PATH = "/_sandbox/callbacks/resend/"
CASHIER_PATH = "/cashier/"
ENDPOINTS = ("checkout", "query")
KINDS = ("latency", "http_error", "retry_after", "code_5000", "code_8000", "slow_after_create", "drop",
         "amount_only")
QUERY_ONLY_KINDS = ("amount_only",)
REFUSED_MESSAGE = "request refused by the gateway"  # a code_8000 fault's default message
REQUIRED_FIELDS = ("timestamp", "tradeNo", "userId", "amount", "mobile", "firstname", "lastname",
                   "email", "channelCode", "wayCode", "ipAddress", "notifyUrl", "returnUrl")
MAX_BODY = 1 << 20
# a rule without "delay" should still be visibly slow; chaos has its own default
RULE_DEFAULTS = {"endpoint": "checkout", "kind": None, "times": 1, "tradeNo": None,
                 "status": 502, "delay": 1.0, "create": False, "message": REFUSED_MESSAGE,
                 "amount": "order"}
_ALNUM = string.ascii_lowercase + string.digits
IP_DAILY_ORDERS, IP_DAILY_PAID = 10, 3  # docs/gateway.md §Limits, per Japan calendar day


class IpLimitReached(Exception):
    """The payer's IP has used up its transactions for the day."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _japan_day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, JST).date()


def _is_text(value: object) -> bool:
    # RawNumber is a str subclass; the gateway's fields are JSON strings, so numbers are refused
    return isinstance(value, str) and not isinstance(value, signing.RawNumber) and value != ""


def _is_digits(value: str) -> bool:
    return value.isascii() and value.isdigit()  # str.isdigit alone accepts "３００"


def _is_seconds(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


_RULE_CHECKS = (
    ("endpoint", lambda v: v in ENDPOINTS, f"endpoint must be one of {ENDPOINTS}"),
    ("kind", lambda v: v in KINDS, f"kind must be one of {KINDS}"),
    ("times", lambda v: type(v) is int and (v >= 1 or v == -1), "times must be >= 1 or -1"),
    ("tradeNo", lambda v: v is None or isinstance(v, str), "tradeNo must be a string"),
    ("status", lambda v: type(v) is int and 100 <= v <= 599, "status must be an HTTP status"),
    ("delay", _is_seconds, "delay must be a number of seconds >= 0"),
    ("create", lambda v: isinstance(v, bool), "create must be a boolean"),
    ("message", lambda v: isinstance(v, str) and 0 < len(v) <= 200, "message must be text (1-200 characters)"),
    ("amount", lambda v: v in ("order", "paid"), 'amount must be "order" or "paid"'),
)


def _fault_rule(raw: object) -> dict:
    """A control-API fault rule with defaults filled in; ValueError names what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError("a rule must be an object")
    rule = {key: raw.get(key, default) for key, default in RULE_DEFAULTS.items()}
    for key, is_valid, message in _RULE_CHECKS:
        if not is_valid(rule[key]):
            raise ValueError(message)
    if rule["kind"] in QUERY_ONLY_KINDS and rule["endpoint"] != "query":
        raise ValueError(f"kind {rule['kind']} is for the query endpoint only")
    return rule


def _check_rates(rates: object, *, query: bool = False) -> dict:
    kinds = KINDS if query else tuple(k for k in KINDS if k not in QUERY_ONLY_KINDS)
    if not isinstance(rates, dict) or any(kind not in kinds for kind in rates):
        raise ValueError(f"rates must map fault kinds {kinds} to probabilities")
    if not all(_is_seconds(r) and r <= 1 for r in rates.values()) or sum(rates.values()) > 1:
        raise ValueError("each rate must be in [0, 1] and they must add up to at most 1")
    return dict(rates)


_QUERY_CHAOS_KEYS = ("rates", "status", "delay")


def _query_chaos(raw: object, delay: float) -> dict:
    """The query part of a chaos setting with defaults filled in; ValueError names what is wrong.

    ``delay`` (the checkout chaos delay) is its default delay.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict) or any(key not in _QUERY_CHAOS_KEYS for key in raw):
        raise ValueError(f"query must be an object with only {_QUERY_CHAOS_KEYS}")
    chaos = {"rates": _check_rates(raw.get("rates", {}), query=True), "status": raw.get("status", 502),
             "delay": raw.get("delay", delay)}
    if type(chaos["status"]) is not int or not 100 <= chaos["status"] <= 599:
        raise ValueError("query status must be an HTTP status")
    if not _is_seconds(chaos["delay"]):
        raise ValueError("query delay must be a number of seconds >= 0")
    return chaos


def _query_rng(seed: object) -> random.Random:
    # its own stream, so queries do not shift a seeded checkout sequence (and vice versa)
    return random.Random(None if seed is None else f"query:{seed}")


class Sandbox:
    """Thread-safe gateway state: orders by tradeNo, counters, fault rules and chaos rates."""

    def __init__(self, *, ip_limits: bool = False) -> None:
        self._lock = threading.Lock()
        self._ip_limits_default = ip_limits
        self.reset()

    def reset(self) -> None:
        """Back to how it started: no orders, counts, rules or chaos; per-IP limits as started."""
        with self._lock:
            self._orders: dict[str, dict] = {}
            self._by_platform: dict[str, str] = {}
            self._ip_orders: Counter[tuple[str, date]] = Counter()
            self._ip_paid: Counter[tuple[str, date]] = Counter()
            self._paid_counted: set[str] = set()  # tradeNos already counted in _ip_paid
            self._ip_limits = self._ip_limits_default
            self._checkout: dict[str, dict[str, int]] = {}
            self._queries: dict[str, int] = {}
            self._totals = dict.fromkeys(
                ("received", "created", "duplicates", "faults", "queries", "query_faults"), 0)
            self._rules: list[dict] = []
            self._chaos: dict = {"rates": {}, "delay": 2.0, "seed": None,
                                 "query": _query_chaos(None, 2.0)}
            self._rng, self._query_rng = random.Random(), random.Random()

    # -- faults ---------------------------------------------------------------------------------
    def add_faults(self, rules: list) -> list[dict]:
        checked = [_fault_rule(rule) for rule in rules]  # all or nothing: validate before adding
        with self._lock:
            self._rules.extend(checked)
        return self.faults()["faults"]

    def clear_faults(self) -> None:
        with self._lock:
            self._rules.clear()

    def faults(self) -> dict:
        """The rules still pending and the chaos settings."""
        with self._lock:
            chaos = {**self._chaos, "rates": dict(self._chaos["rates"]),
                     "query": {**self._chaos["query"],
                               "rates": dict(self._chaos["query"]["rates"])}}
            return {"faults": [dict(rule) for rule in self._rules], "chaos": chaos}

    def set_chaos(self, rates: Mapping, delay: float = 2.0, seed: int | None = None,
                  query: Mapping | None = None) -> dict:
        """Replace the chaos setting; ``query`` (rates, status, delay) is off when left out."""
        rates = _check_rates(rates)
        if not _is_seconds(delay):
            raise ValueError("delay must be a number of seconds >= 0")
        query_chaos = _query_chaos(query, delay)
        rng = random.Random(seed)  # a bad seed fails here, before any state changes
        with self._lock:
            self._chaos = {"rates": rates, "delay": delay, "seed": seed, "query": query_chaos}
            self._rng, self._query_rng = rng, _query_rng(seed)
        return self.faults()["chaos"]

    def take_fault(self, endpoint: str, trade_no: str | None) -> dict | None:
        """The fault for this request, if any: the first matching rule, else a chaos draw."""
        with self._lock:
            fault = self._take_rule(endpoint, trade_no)
            if fault is None and endpoint == "checkout":
                fault = self._draw_chaos(self._chaos, self._rng, status=502)
            elif fault is None:
                query = self._chaos["query"]
                fault = self._draw_chaos(query, self._query_rng, status=query["status"])
            if fault is not None:
                self._count_fault(endpoint, trade_no)
            return fault

    def _count_fault(self, endpoint: str, trade_no: str | None) -> None:
        self._totals["faults"] += 1
        if endpoint == "query":
            self._totals["query_faults"] += 1
        elif trade_no:  # per-tradeNo counters are the checkout's: tests prove "created twice 0"
            self._counters(trade_no)["faults"] += 1

    def _take_rule(self, endpoint: str, trade_no: str | None) -> dict | None:
        for index, rule in enumerate(self._rules):
            if rule["endpoint"] != endpoint or rule["tradeNo"] not in (None, trade_no):
                continue
            if rule["times"] > 0:  # -1 means forever
                rule["times"] -= 1
                if rule["times"] == 0:
                    del self._rules[index]
            return dict(rule)
        return None

    @staticmethod
    def _draw_chaos(chaos: Mapping, rng: random.Random, *, status: int) -> dict | None:
        draw, edge = rng.random(), 0.0
        for kind, rate in chaos["rates"].items():
            edge += rate
            if draw < edge:
                return {"kind": kind, "status": status, "delay": chaos["delay"],
                        "create": rng.random() < 0.5}
        return None

    # -- orders and counters ----------------------------------------------------------------------
    def _counters(self, trade_no: str) -> dict[str, int]:
        return self._checkout.setdefault(
            trade_no, {"received": 0, "created": 0, "duplicates": 0, "faults": 0})

    def note_request(self, endpoint: str, trade_no: str | None) -> None:
        """Count a gateway request; totals count those without a usable tradeNo too."""
        with self._lock:
            if endpoint == "checkout":
                self._totals["received"] += 1
                if trade_no:
                    self._counters(trade_no)["received"] += 1
            else:
                self._totals["queries"] += 1
                if trade_no:
                    self._queries[trade_no] = self._queries.get(trade_no, 0) + 1

    # -- per-IP limits ----------------------------------------------------------------------------
    def set_ip_limits(self, enabled: object) -> dict:
        if not isinstance(enabled, bool):
            raise ValueError("enabled must be a boolean")
        with self._lock:
            self._ip_limits = enabled
        return self.ip_limits()

    def ip_limits(self) -> dict:
        with self._lock:
            return {"enabled": self._ip_limits, "orders": IP_DAILY_ORDERS, "paid": IP_DAILY_PAID}

    def _ip_spent(self, ip: str, day: date) -> bool:
        # counted even while the limits are off, so turning them on respects the day so far
        return self._ip_orders[ip, day] >= IP_DAILY_ORDERS or self._ip_paid[ip, day] >= IP_DAILY_PAID

    def create_order(self, body: Mapping[str, str], public_url: str, merchant_no: str | None = None) -> dict | None:
        """Create the order for ``body``; None (and a duplicate counted) if its tradeNo exists.

        IpLimitReached when the limits are on and the payer's IP has used up its day.
        """
        trade_no, ip, now = body["tradeNo"], body["ipAddress"], _now_ms()
        with self._lock:  # check and create under one lock: a tradeNo is created at most once
            if trade_no in self._orders:
                self._counters(trade_no)["duplicates"] += 1
                self._totals["duplicates"] += 1
                return None
            if self._ip_limits and self._ip_spent(ip, _japan_day(now)):
                raise IpLimitReached(ip)
            platform_no = "".join(secrets.choice(_ALNUM) for _ in range(16))
            # payer data (mobile, names, email) is deliberately not kept
            order = {"tradeNo": trade_no, "platFormTradeNo": platform_no, "status": "0015",
                     "message": "Paying", "amount": body["amount"], "paidAmount": None,
                     "notifyUrl": body["notifyUrl"], "returnUrl": body["returnUrl"],
                     "remark": body.get("remark", ""), "ipAddress": ip, "paidAt": None,
                     "paymentLink": f"{public_url}{CASHIER_PATH}{platform_no}", "createdAt": now,
                     "merchantNo": merchant_no}
            self._orders[trade_no] = order
            self._by_platform[platform_no] = trade_no
            self._ip_orders[ip, _japan_day(now)] += 1
            self._counters(trade_no)["created"] += 1
            self._totals["created"] += 1
            return dict(order)

    def order(self, trade_no: str) -> dict | None:
        with self._lock:
            order = self._orders.get(trade_no)
            return dict(order) if order else None

    def order_by_platform(self, platform_no: str) -> dict | None:
        with self._lock:
            trade_no = self._by_platform.get(platform_no)
            return dict(self._orders[trade_no]) if trade_no else None

    def set_status(self, trade_no: str, status: str, message: str,
                   paid_amount: str | None = None, *, expect: str | None = None) -> dict | None:
        """Move an order (paid, failed...); KeyError if the tradeNo is unknown.

        With ``expect``, only an order still in that status moves; otherwise None (someone else,
        e.g. a second click or the automatic payer, moved it first).
        """
        now = _now_ms()
        with self._lock:
            order = self._orders[trade_no]
            if expect is not None and order["status"] != expect:
                return None
            if status == "0000" and trade_no not in self._paid_counted:
                # once per order: paid, moved away and paid again is still one success
                self._paid_counted.add(trade_no)
                self._ip_paid[order["ipAddress"], _japan_day(now)] += 1
            order.update(status=status, message=message)
            if paid_amount is not None:
                order["paidAmount"] = paid_amount
            if status in PAID_STATUSES:
                order["paidAt"] = now  # the callback's successTime
            return dict(order)

    def stats(self) -> dict:
        with self._lock:
            return {"checkout": {no: dict(c) for no, c in self._checkout.items()},
                    "query": dict(self._queries), "totals": dict(self._totals)}

    def totals(self) -> dict:
        """Only the totals (``GET /_sandbox/totals``): a constant-size answer, cheap enough to poll
        (``stats`` grows with every ``tradeNo`` seen)."""
        with self._lock:
            return dict(self._totals)


# -- gateway answers (no HTTP here) ----------------------------------------------------------------
@dataclass(frozen=True)
class GatewayConfig:
    """The merchants the sandbox knows (``merchantNo`` -> its app secret) and its public URL."""

    merchants: Mapping[str, str]
    public_url: str


def envelope(code: str, msg: str, data: dict | None = None) -> dict:
    return {"code": code, "msg": msg, "success": code == "0000", "timestamp": _now_ms(),
            "data": data}


def _refusal(config: GatewayConfig, merchant: str | None, body: dict | None) -> str | None:
    """The 8000 message both endpoints share, or None when the request may proceed: the
    ``merchantNo`` header must name a merchant it knows, and the body be signed with that
    merchant's secret (another merchant's secret is a sign error, as at the gateway)."""
    secret = config.merchants.get(merchant or "")
    if secret is None:
        return "merchant not found"
    if body is None:
        return "invalid request"
    if not signing.verify(body, secret):
        return "sign error"
    return None


def _invalid_field(body: Mapping[str, object]) -> str | None:
    for field in REQUIRED_FIELDS:
        if not _is_text(body.get(field)):
            return field
    if not _is_digits(body["amount"]) or int(body["amount"]) <= 0:
        return "amount"
    mobile = body["mobile"]
    if len(mobile) != 11 or not _is_digits(mobile) or not mobile.startswith("0"):
        return "mobile"
    if len(body["tradeNo"]) > 32:
        return "tradeNo"
    if "remark" in body and not isinstance(body["remark"], str):
        return "remark"
    return None


def checkout(sandbox: Sandbox, config: GatewayConfig, merchant: str | None,
             body: dict | None) -> dict:
    refused = _refusal(config, merchant, body)
    if refused:
        return envelope("8000", refused)
    field = _invalid_field(body)
    if field:
        return envelope("8000", f"{field} invalid")
    try:
        order = sandbox.create_order(body, config.public_url, merchant)
    except IpLimitReached:
        return envelope("8000", "ip daily limit reached")
    if order is None:
        return envelope("8000", "duplicate tradeNo")
    keys = ("tradeNo", "platFormTradeNo", "status", "message", "remark", "paymentLink")
    return envelope("0000", "success", {key: order[key] for key in keys})


def query(sandbox: Sandbox, config: GatewayConfig, merchant: str | None, body: dict | None) -> dict:
    refused = _refusal(config, merchant, body)
    if refused:
        return envelope("8000", refused)
    order = sandbox.order(body["tradeNo"]) if _is_text(body.get("tradeNo")) else None
    if order is None or order.get("merchantNo", merchant) != merchant:  # another merchant's is not yours
        return envelope("8000", "order not found")
    return envelope("0000", "success", _query_data(order))


def _query_data(order: Mapping) -> dict:
    """A query's ``data``: the paid amount under its own name, and ``amount`` as before."""
    data = {key: order[key] for key in ("tradeNo", "platFormTradeNo", "status", "message")}
    paid = order["paidAmount"]  # a partial payment answers what was actually paid
    data["amount"] = order["amount"] if paid is None else paid
    data["orderAmount"] = order["amount"]
    if paid is not None:
        data["payAmount"] = paid
    return data


def _amount_only(data: Mapping, which: str) -> dict:
    """A query's ``data`` with one amount only, the plain ``amount``: the order's or what was paid
    (nothing paid yet: the order's), as gateway pages that name no paid amount answer."""
    kept = {key: data[key] for key in ("tradeNo", "platFormTradeNo", "status", "message")}
    paid = data.get("payAmount")
    kept["amount"] = paid if which == "paid" and paid is not None else data["orderAmount"]
    return kept


def _flat_object(raw: bytes) -> dict | None:
    try:
        body = signing.parse_json_keeping_numbers(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return None
    if not isinstance(body, dict) or any(isinstance(v, (dict, list)) for v in body.values()):
        return None
    return body


# -- control API (under /_sandbox/) ---------------------------------------------------------------
class UnknownOrder(LookupError):
    """A control request named a tradeNo the sandbox does not have (answered 404)."""


def _known_order(server: SandboxServer, trade_no: str) -> dict:
    order = server.sandbox.order(trade_no) if trade_no else None
    if order is None:
        raise UnknownOrder(trade_no)
    return order


def _add_faults(server: SandboxServer, body: dict) -> dict:
    if not isinstance(body.get("faults"), list):
        raise ValueError('body must be {"faults": [rule, ...]}')
    return {"faults": server.sandbox.add_faults(body["faults"])}


def _set_chaos(server: SandboxServer, body: dict) -> dict:
    return {"chaos": server.sandbox.set_chaos(body.get("rates", {}), body.get("delay", 2.0),
                                              body.get("seed"), body.get("query"))}


def _clear_faults(server: SandboxServer) -> dict:
    server.sandbox.clear_faults()
    return {"faults": []}


def _resend(server: SandboxServer, body: dict, trade_no: str) -> dict:
    return {"callback": server.notifier.notify(_known_order(server, trade_no))}


def _set_order_status(server: SandboxServer, body: dict, trade_no: str) -> dict:
    return {"order": cashier.scripted_status(server, _known_order(server, trade_no), body)}


def _trigger(server: SandboxServer, body: dict, trade_no: str) -> dict:
    """``{"outcome": <a cashier.TRIGGERS name>}``: what the order's payer does (409 if not now)."""
    _known_order(server, trade_no)
    try:
        return {"order": cashier.trigger(server, trade_no, body.get("outcome"))}
    except KeyError:
        raise UnknownOrder(trade_no) from None


_CONTROL_POSTS = {
    "/_sandbox/faults": _add_faults,
    "/_sandbox/chaos": _set_chaos,
    "/_sandbox/callbacks/drop": lambda server, body: {"drops": server.notifier.drop(body)},
    "/_sandbox/autopay": lambda server, body: {"autopay": server.autopay.configure(body)},
    "/_sandbox/ip-limits": lambda server, body: {
        "ipLimits": server.sandbox.set_ip_limits(body.get("enabled"))},
}
_CONTROL_GETS = {
    "/_sandbox/faults": lambda server: server.sandbox.faults(),
    "/_sandbox/stats": lambda server: server.stats(),
    "/_sandbox/totals": lambda server: {"totals": server.sandbox.totals()},
    "/_sandbox/callbacks": lambda server: {"callbacks": server.notifier.deliveries(),
                                           "drops": server.notifier.drops()},
    "/_sandbox/autopay": lambda server: {"autopay": server.autopay.settings()},
    "/_sandbox/ip-limits": lambda server: {"ipLimits": server.sandbox.ip_limits()},
}
_CONTROL_DELETES = {
    "/_sandbox/faults": _clear_faults,
    "/_sandbox/callbacks/drop": lambda server: {"drops": server.notifier.clear_drops()},
}


def _control_post(path: str):
    """The control function for a POST path (called with server and body), or None."""
    if path in _CONTROL_POSTS:
        return _CONTROL_POSTS[path]
    if path.startswith(RESEND_PATH):
        return partial(_resend, trade_no=unquote(path[len(RESEND_PATH):]))
    if path.startswith(ORDERS_PATH) and path.endswith("/status"):
        return partial(_set_order_status, trade_no=unquote(path[len(ORDERS_PATH):-len("/status")]))
    if path.startswith(ORDERS_PATH) and path.endswith("/trigger"):
        return partial(_trigger, trade_no=unquote(path[len(ORDERS_PATH):-len("/trigger")]))
    return None


# -- HTTP ------------------------------------------------------------------------------------------
class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, *, sandbox: Sandbox, merchants: Mapping[str, str],
                 public_url: str | None = None, time_factor: float = 1.0,
                 autopay: Mapping | None = None) -> None:
        # built (and checked) before binding; bind failures call server_close, which needs them
        self.notifier = Notifier(dict(merchants), time_factor=time_factor)
        self.autopay = cashier.Autopay(autopay)
        super().__init__(address, handler)
        self.sandbox = sandbox
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"  # a wildcard bind is not an address a browser can open
        self.url = (public_url or f"http://{host}:{port}").rstrip("/")
        self.config = GatewayConfig(dict(merchants), self.url)
        self.notifier.start()

    def move_order(self, trade_no: str, status: str, message: str, paid_amount: str | None = None,
                   *, expect: str | None = None, callback_lost: bool = False) -> dict | None:
        """``Sandbox.set_status``, then the callback for the new status (dropped if lost)."""
        order = self.sandbox.set_status(trade_no, status, message, paid_amount, expect=expect)
        if order is not None:
            self.notifier.notify(order, lost=callback_lost)
        return order

    def order_created(self, trade_no: str) -> None:
        cashier.autopay_order(self, trade_no)

    def reset(self) -> None:
        self.sandbox.reset()
        self.notifier.reset()
        self.autopay.reset()

    def stats(self) -> dict:
        return {**self.sandbox.stats(), "callbacks": self.notifier.stats()}

    def shutdown(self) -> None:
        super().shutdown()
        self.notifier.close()

    def server_close(self) -> None:
        super().server_close()
        self.notifier.close()


class SandboxHandler(QuietHandler):
    logger = logger  # this module's, for QuietHandler's one line per request
    server: SandboxServer

    def do_GET(self) -> None:
        path, server = urlsplit(self.path).path, self.server
        if path.startswith(CASHIER_PATH):
            return self._send_page(cashier.cashier_page(server, unquote(path[len(CASHIER_PATH):])))
        if path in _CONTROL_GETS:
            return self._send_json(200, _CONTROL_GETS[path](server))
        trade_no = unquote(path[len(ORDERS_PATH):]) if path.startswith(ORDERS_PATH) else ""
        order = server.sandbox.order(trade_no) if trade_no else None
        if order:  # a status the automatic payer will still move on from is not the order's last
            order["autopayStepsLeft"] = server.autopay.steps_left(trade_no)
        self._send_json(*((200, order) if order else (404, {"error": "not found"})))

    def do_DELETE(self) -> None:
        clear = _CONTROL_DELETES.get(urlsplit(self.path).path)
        if clear is None:
            return self._send_json(404, {"error": "not found"})
        self._send_json(200, clear(self.server))

    def do_POST(self) -> None:
        path, raw = urlsplit(self.path).path, self._read_body()
        if raw is None:
            return
        if path == CHECKOUT_PATH:
            return self._gateway("checkout", checkout, raw)
        if path == QUERY_PATH:
            return self._gateway("query", query, raw)
        if path.startswith(CASHIER_PATH):
            return self._send_page(cashier.cashier_action(self.server,
                                                          unquote(path[len(CASHIER_PATH):])))
        if path == "/_sandbox/reset":
            self.server.reset()
            return self._send_json(200, {"ok": True})
        control = _control_post(path)
        if control is None:
            return self._send_json(404, {"error": "not found"})
        try:
            self._send_json(200, control(self.server, json.loads(raw or b"{}")))
        except UnknownOrder:
            self._send_json(404, {"error": "order not found"})
        except cashier.NotNow as exc:
            self._send_json(409, {"error": str(exc)})
        except (ValueError, TypeError, AttributeError) as exc:  # bad JSON, bad shape, bad rule
            self._send_json(400, {"error": str(exc)})

    def _gateway(self, endpoint: str, answer_for, raw: bytes) -> None:
        body = _flat_object(raw)
        trade_no = body.get("tradeNo") if body else None
        trade_no = trade_no if _is_text(trade_no) else None
        sandbox = self.server.sandbox
        sandbox.note_request(endpoint, trade_no)
        # chosen before the merchant/sign checks: a broken network does not read bodies first
        fault = sandbox.take_fault(endpoint, trade_no) or {"kind": None}
        kind = fault["kind"]
        if kind == "http_error":
            return self._send_html(fault["status"])
        if kind == "retry_after":
            return self._send_html(429, {"Retry-After": str(max(0, int(fault["delay"])))})
        if kind == "latency":
            time.sleep(fault["delay"])
        if kind == "code_8000":  # a business refusal the schema cannot foresee (e.g. a limit)
            return self._send_json(200, envelope("8000", fault.get("message", REFUSED_MESSAGE)))
        answer = None
        if kind not in ("code_5000", "drop") or fault["create"]:
            answer = answer_for(sandbox, self.server.config, self.headers.get("merchantNo"), body)
        if endpoint == "checkout" and answer and answer["code"] == "0000":
            self.server.order_created(answer["data"]["tradeNo"])  # even if a fault hides the answer
        if kind == "code_5000":
            return self._send_json(200, envelope("5000", "system exception"))
        if kind == "drop":
            return self._drop()
        if kind == "slow_after_create":
            time.sleep(fault["delay"])
        if kind == "amount_only" and answer and answer["code"] == "0000":
            answer = {**answer, "data": _amount_only(answer["data"], fault.get("amount", "order"))}
        self._send_json(200, answer)

    # -- plumbing ----------------------------------------------------------------------------------
    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit() or int(length) > MAX_BODY:
            self.close_connection = True  # an unread body would poison the next request
            self._send_json(400, {"error": "bad or too large Content-Length"})
            return None
        return self.rfile.read(int(length))

    def _send_json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode(), "application/json")

    def _send_page(self, page: cashier.Page) -> None:
        self._send(page.status, page.body, "text/html", page.headers)

    def _send_html(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        reason = self.responses.get(status, ("Error",))[0]
        body = f"<html><body><h1>{status} {reason}</h1></body></html>".encode()
        self._send(status, body, "text/html", headers)

    def _send(self, status: int, body: bytes, content_type: str,
              headers: Mapping[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))  # keep-alive needs it, always
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # the client gave up (e.g. a read timeout under slow_after_create): expected
            self.close_connection = True



def make_server(host: str = "127.0.0.1", port: int = 0, *, merchant_no: str | None = None,
                app_secret: str | None = None, merchants: Mapping[str, str] | None = None,
                public_url: str | None = None, time_factor: float = 1.0,
                autopay: Mapping | None = None, ip_limits: bool = False) -> SandboxServer:
    """A bound, not yet serving sandbox gateway (call ``serve_forever``).

    It knows the merchants of ``merchants`` (``merchantNo`` -> app secret) and ``merchant_no``
    with ``app_secret``: each request must carry a known ``merchantNo`` and be signed with that
    merchant's secret, and each order's callbacks are signed with its merchant's.

    ``time_factor`` scales the callback retry delays and send timeout (0.01: 2 s becomes 20 ms);
    ``autopay`` is the ``POST /_sandbox/autopay`` body to start with (e.g.
    ``{"mix": {"paid": 0.8, "failed": 0.2}, "delay": 0.5}``); ``ip_limits`` enforces the
    per-IP daily limits (docs/gateway.md §Limits). ``/_sandbox/reset`` returns autopay and ip_limits to these values.
    """
    known = dict(merchants or {})
    if merchant_no is not None and app_secret is not None:
        known[merchant_no] = app_secret
    if not known:
        raise ValueError("the sandbox needs at least one merchant and its secret")
    return SandboxServer((host, port), SandboxHandler, sandbox=Sandbox(ip_limits=ip_limits),
                         merchants=known, public_url=public_url,
                         time_factor=time_factor, autopay=autopay)


def run(host: str, port: int, *, merchant_no: str | None = None, app_secret: str | None = None,
        merchants: Mapping[str, str] | None = None,
        public_url: str | None = None, time_factor: float = 1.0, autopay: Mapping | None = None,
        ip_limits: bool = False) -> None:
    """Serve until SIGTERM or Ctrl-C; prints one line once listening, for a parent to wait on."""
    server = make_server(host, port, merchant_no=merchant_no, app_secret=app_secret, merchants=merchants,
                         public_url=public_url, time_factor=time_factor, autopay=autopay,
                         ip_limits=ip_limits)
    serve_until_stopped(server, f"sandbox gateway listening on {server.url}")
