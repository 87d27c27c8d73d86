"""Reliability scenario "bad input": hypothesis fuzzing of the schemas, ``POST /vexora/notify``
and ``POST /v1/checkouts``.

Malformed JSON, huge and deeply nested bodies, wrong types, odd Unicode (lone surrogates escaped
in JSON, RTL marks, NUL, emoji, full-width digits, combining marks), forged and replayed
signatures. The properties: never a 5xx, no crash, and no state change from a refused request.

The web app runs in-process (Flask's test client) on the real test Redis, with no Celery worker:
a queued callback stays on the broker's ``callbacks`` list and a queued checkout on ``checkout``,
so their lengths are the observable — a 200 (202) adds exactly one message, any other answer
none. A sentinel job in ``paying`` (and a ``queued`` job, the 409 target) must be byte-for-byte
unchanged after every request, and the events stream must not grow. A smaller run repeats the
main cases over real HTTP against gunicorn, with chunked and lying ``Content-Length`` bodies.

Expected answers are computed here, independently of the code under test where it is cheap: a
JSON parse that keeps numbers as text, the gateway's MD5 signature (docs/gateway.md §Signing) for scalar
values, and the callback rules (README, ``schemas/callback.py``'s docstring).
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import re
import socket
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import quote

import marshmallow.fields
import marshmallow.schema
import marshmallow.validate
import pytest
import redis
import requests
from flask import got_request_exception
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from marshmallow import ValidationError

from schemas import CallbackSchema, CheckoutRequestSchema
import schemas.callback
import schemas.checkout
from worker.celery import CALLBACK_QUEUE, CHECKOUT_QUEUE
from worker.client import enqueue_checkout
from worker.config.settings import Settings
from worker.domain import states
from worker.domain.masking import mask_contact
from worker.runtime.wiring import Runtime, checkout_schema
from worker.signing import RawNumber, parse_json_keeping_numbers, sign
from worker.web import create_app
from tests.support.stack import APP_SECRET, MARKERS, MERCHANT_NO, Stack, payload

LIMIT = 4096  # settings.callback_max_bytes: small, so bodies near and over it stay cheap
TOKEN = "fuzz-api-token-3b1d9e"
NOTIFY_URL = "https://merchant.example/vexora/notify"
HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]


def examples(full_size: bool, bounded: int = 200, full: int = 2000) -> hsettings:
    return hsettings(max_examples=full if full_size else bounded, deadline=None,
                     suppress_health_check=HEALTH)


# --- counters for the figure lines ----------------------------------------------------------

@dataclass
class Tally:
    requests: int = 0
    fivexx: int = 0
    state_changes: int = 0
    statuses: Counter = field(default_factory=Counter)

    def saw(self, status: int) -> None:
        self.requests += 1
        self.statuses[status] += 1
        if status >= 500:
            self.fivexx += 1

    def numbers(self) -> dict:
        return {"requests": self.requests, "fivexx": self.fivexx, "state_changes": self.state_changes,
                **{f"s{code}": n for code, n in sorted(self.statuses.items())}}


@dataclass
class SchemaTally:
    examples: int = 0
    loaded: int = 0
    refused: int = 0
    crashes: int = 0
    echoed: int = 0

    def numbers(self) -> dict:
        return dict(vars(self))


SCHEMAS = SchemaTally()
TALLIES = {"POST /vexora/notify": Tally(), "POST /v1/checkouts": Tally(), "GET /v1/checkouts": Tally(),
           "over HTTP (gunicorn)": Tally()}


@pytest.fixture(scope="module", autouse=True)
def _figure_lines(figures):
    yield
    if SCHEMAS.examples:
        figures.add("bad input: schemas", **SCHEMAS.numbers())
    for target, tally in TALLIES.items():
        if tally.requests:
            figures.add(f"bad input: {target}", **tally.numbers())


# --- strategies: odd text and JSON-like values -----------------------------------------------

SPECIALS = [
    "\x00", "\x01", "\x1b", "\x7f", "\x85", "\t", "\n", "\r", "\u2028", "\u2029", '"', "\\", "/",
    "\u200e", "\u200f", "\u202a", "\u202b", "\u202e", "\u2066", "\u2067", "\u2069", "\u061c",  # bidi
    "\ufeff", "\u200b", "\u200d", "\u2060", "\u00ad", "\ufffd", "\uffff", "\U0010ffff", "\ue000",
    "\u0301", "\u0338", "\u20dd", "e\u0301", "\u30bf\u3099",  # combining marks
    "\U0001f600", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f1ef\U0001f1f5", "\u2764\ufe0f",
    "\uff10", "\uff11", "\uff19", "\u0660", "\u0966", "\u00b9", "\u00bd", "\u2168",  # digits, not ASCII
    "\uff71", "\u30bf", "\u30fc", "\u3000", "\u00a0", "\u0130", "\u00df", "\ufb00", "\uff21",
]
SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
clean_text = st.lists(st.one_of(st.characters(codec="utf-8"), st.sampled_from(SPECIALS)), max_size=24).map("".join)
odd_text = st.lists(st.one_of(st.characters(), st.sampled_from(SPECIALS), SURROGATE), max_size=24).map("".join)
number_text = st.from_regex(r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,6})?([eE][+-]?[0-9]{1,3})?", fullmatch=True)

DOMAIN = [  # near misses for the declared fields, so validators run, not just type checks
    "300", "300.00", "0300", "300 ", " 300", "300\n", "+300", "-300", "1e3", "3,000", "\uff13\uff10\uff10",
    "1000000", "1000001", "9" * 40, "0", "",
    "09012345678", "\uff10\uff19\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18", "+819012345678",
    "090-1234-5678", "0901234567", "090123456789", "09012345678\n",
    "\u30bf\u30ed\u30a6", "\uff80\uff9b\uff73", "\u305f\u308d\u3046", "\u30bf\u30ed\u30a6\u200f",
    "\u30bf\u3099", "\u30fb\u30fc", "\u30bf\x00",
    "taro@example.com", "a@b", "taro@\u4f8b\u3048.jp", "taro@example.com\n", "<script>@x.jp", "@", "a" * 300,
    "EWALLET", "ewallet", "EWALLET ", "\uff25\uff37\uff21\uff2c\uff2c\uff25\uff34", "PAYPAY", "PAYPAY\u200b",
    "203.0.113.7", "203.0.113.7 ", "\uff12\uff10\uff13.0.113.7", "::ffff:203.0.113.7", "fe80::1%eth0",
    "10.0.0.1", "127.0.0.1", "0.0.0.0", "224.0.0.1", "2001:db8::1", "0x7f.1", "203.0.113.07",
    "https://shop.example/thanks", "javascript:alert(1)", "https://", "http://[::1]/", "ftp://x.example",
    "https://\u4f8b\u3048.jp/x", "https://shop.example/\u202e", "https://shop.example/" + "a" * 600,
    "ORDER-1001", "ORDER 1001", "ORDER-1001\n", "\uff2f\uff32\uff24\uff25\uff32", "x" * 33,
    "0000", "0001", "0015", "00029", "0029", "8000", "5000", "1700000000000", "\uff11\uff17",
    "0123456789abcdef0123456789abcdef", "0123456789ABCDEF0123456789ABCDEF", "g" * 32,
]
domain_text = st.sampled_from(DOMAIN)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(),
                    odd_text, domain_text)
json_like = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(odd_text, inner, max_size=4)),
                         max_leaves=16)
clean_json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70),
              st.floats(allow_nan=False, allow_infinity=False), clean_text, domain_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(clean_text, inner, max_size=3)),
    max_leaves=8)

FIELDS = ["tradeNo", "userId", "amount", "mobile", "firstname", "lastname", "email", "channelCode",
          "wayCode", "ipAddress", "notifyUrl", "returnUrl", "remark"]
CALLBACK_FIELDS = ["tradeNo", "platFormTradeNo", "amount", "status", "timestamp", "sign", "message",
                   "successTime", "remark", "paidAmount"]
ENCODINGS = ["ascii", "utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "utf-8-surrogatepass"]


def encode_json(value, encoding: str = "ascii", *, allow_nan: bool = True) -> bytes:
    """JSON text of ``value``; lone surrogates escaped (ascii) or as invalid bytes (surrogatepass)."""
    if encoding == "ascii":
        return json.dumps(value, ensure_ascii=True, allow_nan=allow_nan).encode("ascii")
    text = json.dumps(value, ensure_ascii=False, allow_nan=allow_nan)
    if encoding == "utf-8-surrogatepass":
        return text.encode("utf-8", "surrogatepass")
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:  # a lone surrogate: escape it instead
        return json.dumps(value, ensure_ascii=True, allow_nan=allow_nan).encode(encoding)


# --- the expected answers, computed here ------------------------------------------------------

def _refuse_constant(name: str):
    raise ValueError(name)


def parse_like_the_gateway(body: bytes):
    """JSON with numbers kept as text and NaN/Infinity refused: README's parse rule."""
    return json.loads(body, parse_int=str, parse_float=str, parse_constant=_refuse_constant)


def depth(value) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, level + 1) for child in children)
    return deepest


def expected_unsigned(body: bytes) -> set[int]:
    """What /vexora/notify must answer to a body that carries no valid signature."""
    if len(body) > LIMIT:
        return {413}
    try:
        value = parse_like_the_gateway(body)
    except (ValueError, RecursionError):
        return {400}
    if not isinstance(value, dict):
        return {400}
    if depth(value) > 400:  # the server's own stack is deeper: it may refuse to parse it (400)
        return {400, 401}
    return {401}


class Num:
    """A JSON number as its exact wire text (how the gateway signs it)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return f"Num({self.text})"


# Callbacks are built here, not with worker.signing.callback_body: this suite checks the server
# against its own reading of docs/gateway.md (render, gateway_sign), an oracle independent of the
# code under test, and varies the wire form that builder fixes (escapes, separators, numbers).
def render(fields: dict, *, ensure_ascii: bool = False, sep: str = ",", colon: str = ":") -> bytes:
    """A callback body with numbers written as their text, as the gateway sends it."""
    def one(value) -> str:
        return value.text if isinstance(value, Num) else json.dumps(value, ensure_ascii=ensure_ascii)
    parts = [f"{json.dumps(k, ensure_ascii=ensure_ascii)}{colon}{one(v)}" for k, v in fields.items()]
    return ("{" + sep.join(parts) + "}").encode("utf-8")


def wire_text(value) -> str | None:
    """The text a scalar is signed as; None when it is left out of the signed string."""
    if value is None or value == "":
        return None
    if isinstance(value, Num):
        return value.text
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


def is_scalar(value) -> bool:
    return value is None or isinstance(value, (str, bool, Num))


def gateway_sign(fields: dict, secret: str = APP_SECRET) -> str:
    """docs/gateway.md §Signing, written out here: sorted key=value of non-empty fields, secret, MD5 hex."""
    assert all(is_scalar(v) for v in fields.values())
    pairs = sorted((k, wire_text(v)) for k, v in fields.items() if k != "sign" and wire_text(v) is not None)
    text = "".join(f"{k}={v}" for k, v in pairs) + secret
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def signed(fields: dict, secret: str = APP_SECRET) -> dict:
    """``fields`` with a correct ``sign`` (nested values: signed the way the server reads them)."""
    out = {k: v for k, v in fields.items() if k != "sign"}
    if all(is_scalar(v) for v in out.values()):
        out["sign"] = gateway_sign(out, secret)
    else:  # nested values have no agreed text form; sign what the server will verify
        out["sign"] = sign(parse_json_keeping_numbers(render(out)), secret)
    return out


_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
_DIGITS = re.compile(r"[0-9]+")
_HEX32 = re.compile(r"[0-9A-Fa-f]{32}")


DOCUMENTED_CALLBACK_FIELDS = {"tradeNo", "platFormTradeNo", "amount", "status", "timestamp", "sign", "message",
                              "successTime", "remark"}


def callback_is_valid(fields: dict) -> bool:
    """The callback rules: required texts and their formats; only the documented fields, and no
    '=' in any value (docs/gateway.md, a signature must not move between fields). Numbers are texts."""
    if set(fields) - DOCUMENTED_CALLBACK_FIELDS:
        return False
    if any(isinstance(v, str) and "=" in v for v in fields.values()):
        return False
    def text(key):
        value = fields.get(key)
        return value.text if isinstance(value, Num) else value if isinstance(value, str) else None
    rules = {
        "tradeNo": lambda t: 1 <= len(t) <= 64,
        "platFormTradeNo": lambda t: 1 <= len(t) <= 64,
        "amount": lambda t: _DECIMAL.fullmatch(t) is not None,
        "status": lambda t: 1 <= len(t) <= 16,
        "timestamp": lambda t: _DIGITS.fullmatch(t) is not None,
        "sign": lambda t: _HEX32.fullmatch(t) is not None,
    }
    for key, rule in rules.items():
        if text(key) is None or not rule(text(key)):
            return False
    for key in ("message", "successTime", "remark"):
        if key in fields and not (fields[key] is None or text(key) is not None):
            return False
    return all(is_scalar(v) for v in fields.values())


def numbers_as_num(value):
    """A bare JSON number in a callback is its text to the server; say so for the oracles."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Num(json.dumps(value))
    return value


# JSON-like callback values without lone surrogates (they cannot be signed), numbers as Num
wire_values = clean_json_like.map(numbers_as_num)


def valid_callback(trade_no: str, status: str = "0000", amount: str = "300.00", **extra) -> dict:
    return {"platFormTradeNo": "p-" + trade_no[-8:], "tradeNo": trade_no, "amount": Num(amount),
            "status": status, "message": {"0000": "Success", "0015": "Paying"}.get(status, "Failed"),
            "timestamp": str(int(time.time() * 1000)), **extra}


# --- payer data never echoed ----------------------------------------------------------------

def _vocabulary() -> str:
    """Every text a message may legitimately contain: the schemas' and marshmallow's source, and
    the messages of probes that break every rule (formatted limits and choices)."""
    parts = [inspect.getsource(module) for module in (schemas.checkout, schemas.callback, marshmallow.fields,
                                                      marshmallow.schema, marshmallow.validate)]
    probes = [1, "", "x" * 2000, "\ud800", "ab", None, "99999999999", [], {}, "10.0.0.1", True]
    for schema in (CheckoutRequestSchema(), checkout_schema(Settings(notify_url=NOTIFY_URL)), CallbackSchema()):
        for probe in probes:
            for data in ({f: probe for f in FIELDS + CALLBACK_FIELDS}, {"unknown": probe}, probe):
                try:
                    schema.load(data)
                except ValidationError as err:
                    parts.append(json.dumps(err.messages, ensure_ascii=False))
    return "\n".join(parts)


VOCABULARY = _vocabulary()


def strings_in(value, keys: bool = False) -> list[str]:
    found, stack = [], [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
            if keys:
                stack.extend(node.keys())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return found


def echoed(submitted, messages) -> list[str]:
    """Submitted string values (> 3 characters) that appear in the error messages."""
    texts = strings_in(messages)
    return sorted({s for s in strings_in(submitted) if len(s) > 3 and s not in VOCABULARY
                   and any(s in t for t in texts)})


# --- the environment: the app, Redis, a sentinel job ------------------------------------------

@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict

    def json(self):
        return json.loads(self.body)


@dataclass(frozen=True)
class Snapshot:
    callbacks: int
    checkout: int
    events: int
    sentinel: tuple
    existing: tuple


class Env:
    """One web app (in-process or gunicorn) on its own key prefix, with a sentinel ``paying`` job
    and an ``existing`` queued job; ``notify``/``checkout`` send one request and check it."""

    def __init__(self, runtime: Runtime, send, tallies: tuple[Tally, Tally], describe_error=lambda: ""):
        self.runtime = runtime
        self.store = runtime.store
        self.redis = runtime.redis
        self.send = send
        self.notify_tally, self.checkout_tally = tallies
        self.describe_error = describe_error
        self.sentinel = "SENT" + uuid.uuid4().hex[:20]
        job = payload(tradeNo=self.sentinel)
        self.store.create(self.sentinel, job, contact=mask_contact(job), amount=job["amount"])
        assert self.store.move(self.sentinel, states.SUBMITTING, claim_lease=3600).applied
        assert self.store.move(self.sentinel, states.PAYING, drop=["payload"], fields={
            "paymentLink": "https://pay.example/" + self.sentinel,
            "platFormTradeNo": "p-" + self.sentinel[-8:]}).applied
        self.existing_job = payload(tradeNo="EXIST" + uuid.uuid4().hex[:20])
        self.existing = enqueue_checkout(self.existing_job, runtime=runtime)

    def snapshot(self) -> Snapshot:
        s, pipe = self.store, self.redis.pipeline()
        pipe.llen(CALLBACK_QUEUE)
        pipe.llen(CHECKOUT_QUEUE)
        pipe.xlen(s.keys.events)
        for trade_no in (self.sentinel, self.existing):
            pipe.hgetall(s.keys.job(trade_no))
            pipe.lrange(s.keys.history(trade_no), 0, -1)
        c, q, e, sj, sh, ej, eh = pipe.execute()
        return Snapshot(c, q, e, (sorted(sj.items()), sh), (sorted(ej.items()), eh))

    def last_callback_message(self) -> tuple[str, list]:
        """The newest message on ``callbacks``: (task name, positional args)."""
        raw = json.loads(self.redis.lindex(CALLBACK_QUEUE, 0))
        assert raw["properties"]["body_encoding"] == "base64"
        args, _kwargs, _embed = json.loads(base64.b64decode(raw["body"]))
        return raw["headers"]["task"], args

    def _context(self, what: str, method_path: str, body: bytes, headers: dict, answer: Answer) -> str:
        shown = body if len(body) <= 600 else body[:300] + b"..." + body[-100:]
        return (f"{what}: {method_path} headers={headers!r} body={shown!r} (len {len(body)}) -> "
                f"{answer.status} {answer.body[:300]!r}{self.describe_error()}")

    def notify(self, body: bytes, expected: set[int], *, content_type: str | None = "application/json",
               what: str = "notify") -> Answer:
        headers = {} if content_type is None else {"Content-Type": content_type}
        before = self.snapshot()
        answer = self.send("POST", "/vexora/notify", body, headers)
        after = self.snapshot()
        tally = self.notify_tally
        tally.saw(answer.status)
        problems = []
        if after.callbacks - before.callbacks != (1 if answer.status == 200 else 0):
            problems.append(f"callbacks queue {before.callbacks} -> {after.callbacks}")
        problems += self._unchanged(before, after, checkout=True, events=True)
        if problems:
            tally.state_changes += 1
        context = self._context(what, "POST /vexora/notify", body, headers, answer)
        assert answer.status < 500, context
        assert not problems, f"{problems}; {context}"
        assert answer.status in expected, f"expected {sorted(expected)}; {context}"
        if answer.status == 200:
            assert answer.body == b"OK", context
        # the gateway gets what it always got: plain text (a schema refusal names the fields)
        kind = _content_type(answer)
        assert kind == "text/plain" or (answer.status == 400 and kind == "application/json"), context
        return answer

    def checkout(self, body: bytes, expected: set[int], *, content_type: str | None = "application/json",
                 authorization: str | None = f"Bearer {TOKEN}", job=None, what: str = "checkout") -> Answer:
        headers = {} if content_type is None else {"Content-Type": content_type}
        if authorization is not None:
            headers["Authorization"] = authorization
        trade_no = job.get("tradeNo") if isinstance(job, dict) else None
        # a tradeNo that could name a Redis key at all (a lone surrogate cannot be sent to Redis)
        keyable = isinstance(trade_no, str) and 0 < len(trade_no) <= 200 and _encodable(trade_no)
        existed = bool(keyable and self.redis.exists(self.store.keys.job(trade_no)))
        before = self.snapshot()
        answer = self.send("POST", "/v1/checkouts", body, headers)
        after = self.snapshot()
        tally = self.checkout_tally
        tally.saw(answer.status)
        context = self._context(what, "POST /v1/checkouts", body, headers, answer)
        problems = self._unchanged(before, after, checkout=False, events=False)
        if after.callbacks != before.callbacks:
            problems.append(f"callbacks queue {before.callbacks} -> {after.callbacks}")
        if answer.status == 202:
            got = answer.json()["tradeNo"]
            if keyable and got != trade_no:
                problems.append(f"202 for tradeNo {got!r}, sent {trade_no!r}")
            if after.checkout - before.checkout != 1:
                problems.append(f"202 but checkout queue {before.checkout} -> {after.checkout}")
            if after.events - before.events != (0 if existed else 1):
                problems.append(f"202 (existed={existed}) but events {before.events} -> {after.events}")
            if self.store.load(got) is None:
                problems.append("202 but no job stored")
        else:
            if after.checkout != before.checkout:
                problems.append(f"{answer.status} but checkout queue {before.checkout} -> {after.checkout}")
            if after.events != before.events:
                problems.append(f"{answer.status} but events {before.events} -> {after.events}")
            if keyable and not existed and self.redis.exists(self.store.keys.job(trade_no)):
                problems.append(f"{answer.status} but a job was stored for {trade_no!r}")
        if problems:
            tally.state_changes += 1
        assert answer.status < 500, context
        assert not problems, f"{problems}; {context}"
        assert answer.status in expected, f"expected {sorted(expected)}; {context}"
        if answer.status == 200:  # a batch: each item answered, the refused ones "invalid"
            results = answer.json()["results"]
            assert results and all(r["result"] == "invalid" and r["errors"] for r in results), context
        elif answer.status != 202:  # every refusal is an RFC 9457 problem document
            assert _content_type(answer) == "application/problem+json", context
            problem = answer.json()
            assert problem["status"] == answer.status and problem["type"] == "about:blank", context
            assert problem["title"] and problem["detail"] and problem["instance"] == "/v1/checkouts", context
        if answer.status == 401:
            assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer"), context
        if answer.status == 409:
            assert existed and "tradeNo" in answer.json()["errors"], context
        if answer.status == 422:
            errors = answer.json()["errors"]
            assert isinstance(errors, dict) and errors, context
            leaked = echoed(job, errors)
            assert not leaked, f"payer data echoed {leaked}; {context}"
        return answer

    def _unchanged(self, before: Snapshot, after: Snapshot, *, checkout: bool, events: bool) -> list[str]:
        problems = []
        if checkout and after.checkout != before.checkout:
            problems.append(f"checkout queue {before.checkout} -> {after.checkout}")
        if events and after.events != before.events:
            problems.append(f"events {before.events} -> {after.events}")
        if after.sentinel != before.sentinel:
            problems.append(f"sentinel job changed: {before.sentinel} -> {after.sentinel}")
        if after.existing != before.existing:
            problems.append(f"existing job changed: {before.existing} -> {after.existing}")
        return problems


def _content_type(answer: Answer) -> str:
    value = next((v for k, v in answer.headers.items() if k.lower() == "content-type"), "")
    return value.split(";")[0].strip().lower()


@pytest.fixture(scope="module")
def queues(redis_url):
    """The broker lists as found; at the end, the messages this module added are trimmed off."""
    client = redis.Redis.from_url(redis_url)
    found = {q: client.llen(q) for q in (CALLBACK_QUEUE, CHECKOUT_QUEUE)}
    bindings = [f"_kombu.{kind}.{q}" for kind in ("binding", "binding_permanent") for q in found]
    new_bindings = [key for key in bindings if not client.exists(key)]
    prefixes: list[str] = []
    yield prefixes
    for q, length in found.items():  # kombu LPUSHes: our messages are at the head
        added = client.llen(q) - length
        if added > 0:
            client.ltrim(q, added, -1)
    for prefix in prefixes:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    if new_bindings and not any(client.llen(q) for q in found):
        client.delete(*new_bindings)  # kombu's routing sets, when this module made them
    client.close()


@pytest.fixture(scope="module")
def env(redis_url, queues):
    prefix = f"fuzz-{uuid.uuid4().hex[:12]}"
    queues.append(prefix)
    settings = Settings(redis_url=redis_url, base_url="http://127.0.0.1:9", merchant_no=MERCHANT_NO,
                        app_secret=APP_SECRET, notify_url=NOTIFY_URL, api_token=TOKEN, key_prefix=prefix,
                        callback_max_bytes=LIMIT)
    runtime = Runtime(settings)
    app = create_app(settings, runtime=runtime)
    client = app.test_client()
    errors: list[str] = []

    def record(_sender, exception, **_kw):
        errors.append("".join(traceback.format_exception(exception)))

    got_request_exception.connect(record, app, weak=False)

    def send(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> Answer:
        errors.clear()
        r = client.open(path, method=method, data=body, headers=headers or {})
        return Answer(r.status_code, r.get_data(), dict(r.headers))

    return Env(runtime, send, (TALLIES["POST /vexora/notify"], TALLIES["POST /v1/checkouts"]),
               lambda: ("\n" + errors[-1]) if errors else "")


# --- schemas ----------------------------------------------------------------------------------

PUBLIC_IPS = ["8.8.4.4", "1.1.1.1", "9.9.9.9", "2001:4860:4860::8888", "8.20.30.40"]


def fresh_job(trade_no: str, ip: str) -> dict:
    """``payload()`` without its use of ``random`` (hypothesis draws the varying parts)."""
    return {"tradeNo": trade_no, "userId": "user-1", "amount": "300", "mobile": MARKERS["mobile"],
            "firstname": MARKERS["firstname"], "lastname": MARKERS["lastname"], "email": MARKERS["email"],
            "channelCode": "EWALLET", "wayCode": "PAYPAY", "ipAddress": ip,
            "returnUrl": "https://merchant.example/return", "remark": "order 42"}


@st.composite
def mutated_payload(draw, odd: bool = True) -> tuple[dict, set[str]]:
    """A valid job with up to three fields replaced, dropped or added; and the touched keys."""
    # a fresh tradeNo per run (uuid, not hypothesis): a replayed example must not collide
    job = fresh_job("F" + uuid.uuid4().hex[:24], draw(st.sampled_from(PUBLIC_IPS)))
    values = st.one_of(json_like if odd else clean_json_like, domain_text)
    touched = set()
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["replace", "replace", "drop", "add"]))
        if kind == "add":
            key = draw((odd_text if odd else clean_text).filter(lambda k: k not in FIELDS))
            job[key] = draw(values)
        else:
            key = draw(st.sampled_from(FIELDS))
            if kind == "drop":
                job.pop(key, None)
            else:
                job[key] = draw(values)
        touched.add(key)
    return job, touched


shaped_checkout = st.dictionaries(st.one_of(st.sampled_from(FIELDS), odd_text),
                                  st.one_of(json_like, domain_text), max_size=14)
callback_values = st.one_of(json_like, domain_text, number_text.map(RawNumber))
shaped_callback = st.dictionaries(st.one_of(st.sampled_from(CALLBACK_FIELDS), odd_text), callback_values,
                                  max_size=12)
SCHEMA_INPUTS = st.one_of(json_like, shaped_checkout, shaped_callback, mutated_payload().map(lambda p: p[0]))


def test_schemas_return_or_raise_validation_error_and_never_echo_values(full_size):
    targets = {"CheckoutRequestSchema()": CheckoutRequestSchema(),
               "checkout_schema(settings)": checkout_schema(Settings(notify_url=NOTIFY_URL)),
               "CallbackSchema()": CallbackSchema()}

    @examples(full_size)
    @given(SCHEMA_INPUTS)
    def run(data):
        SCHEMAS.examples += 1
        for name, schema in targets.items():
            try:
                loaded = schema.load(data)
            except ValidationError as err:
                SCHEMAS.refused += 1
                assert isinstance(err.messages, dict), (name, err.messages)
                leaked = echoed(data, err.messages)
                if leaked:
                    SCHEMAS.echoed += 1
                assert not leaked, f"{name} echoed {leaked} in {err.messages}"
                continue
            except Exception:
                SCHEMAS.crashes += 1
                raise AssertionError(f"{name}.load({data!r}) crashed:\n{traceback.format_exc()}") from None
            SCHEMAS.loaded += 1
            if isinstance(schema, CallbackSchema):
                assert loaded == data, f"{name} rewrote {data!r} as {loaded!r}"
            else:  # the wire fields: every value a str that UTF-8 can carry, only declared keys
                assert set(loaded) <= set(FIELDS) and loaded["tradeNo"], loaded
                for value in loaded.values():
                    assert type(value) is str and value, loaded
                    value.encode("utf-8")

    run()


# --- POST /vexora/notify ------------------------------------------------------------------------

CONTENT_TYPES = [None, "application/json", "application/json; charset=utf-8", "text/plain", "",
                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz",
                 "application/octet-stream", "application/vnd.api+json", "APPLICATION/JSON"]


@st.composite
def unsigned_bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["binary", "json", "object", "callback-shaped", "almost-json", "huge"]))
    if kind == "binary":
        return draw(st.binary(max_size=LIMIT + 64))
    if kind == "json":
        return encode_json(draw(json_like), draw(st.sampled_from(ENCODINGS)))
    if kind == "object":
        return encode_json(draw(st.dictionaries(odd_text, json_like, max_size=8)), draw(st.sampled_from(ENCODINGS)))
    if kind == "callback-shaped":  # the right keys, a sign that has the right shape but not the value
        fields = draw(st.dictionaries(st.sampled_from(CALLBACK_FIELDS), callback_values.map(
            lambda v: str(v) if isinstance(v, RawNumber) else v), max_size=10))
        fields["sign"] = draw(st.one_of(st.from_regex(r"[0-9a-f]{32}", fullmatch=True), st.just(""),
                                        json_like))
        return encode_json(fields, draw(st.sampled_from(ENCODINGS)))
    if kind == "almost-json":  # valid JSON with one byte changed, cut short, or doubled
        text = encode_json(draw(st.dictionaries(clean_text, clean_json_like, min_size=1, max_size=5)))
        how = draw(st.sampled_from(["cut", "flip", "double", "trailing", "nan", "bom"]))
        if how == "cut":
            return text[:draw(st.integers(0, len(text) - 1))]
        if how == "flip":
            i = draw(st.integers(0, len(text) - 1))
            return text[:i] + bytes([draw(st.integers(0, 255))]) + text[i + 1:]
        if how == "double":
            return text + text
        if how == "trailing":
            return text + draw(st.sampled_from([b",", b"}", b"\x00", b" x", b"\n\n", b"//"]))
        if how == "nan":
            return text[:-1] + b',"amount":' + draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity"])) + b"}"
        return b"\xef\xbb\xbf" + text
    size = draw(st.sampled_from([LIMIT + 1, 2 * LIMIT, 64 * 1024, 1 << 20]))
    return draw(st.sampled_from([b"[", b"{", b" ", b"x", b"\x00"])) * size


def test_notify_refuses_unsigned_and_malformed_bodies(env, full_size):
    @examples(full_size)
    @given(unsigned_bodies(), st.sampled_from(CONTENT_TYPES))
    def run(body, content_type):
        env.notify(body, expected_unsigned(body), content_type=content_type, what="unsigned body")

    run()


def test_notify_lone_surrogates_are_refused_not_a_5xx(env):
    """Regression: a lone surrogate (escaped in the JSON text) in any value or key but ``sign``."""
    cases = [
        b'{"sign":"0123456789abcdef0123456789abcdef","message":"\\ud800"}',
        b'{"sign":"x","\\udc00":"1"}',
        render(signed(valid_callback(env.sentinel)), ensure_ascii=True)[:-1] + b',"remark":"\\ud83d"}',
        render({**signed(valid_callback(env.sentinel)), "message": "Success \ud83d"}, ensure_ascii=True),
    ]
    failures = []
    for body in cases:
        try:
            env.notify(body, {400, 401}, what="lone surrogate")
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, f"{len(failures)} of {len(cases)} answered wrongly; first: {failures[0]}"


def test_notify_deep_nesting_is_refused_not_a_5xx(env):
    """Every nesting depth that fits the size limit, inside a body with a ``sign``: 400 or 401."""
    failures = []
    shapes = {"array": lambda d: b'{"sign":"abc","x":' + b"[" * d + b"]" * d + b"}",
              "object": lambda d: b'{"sign":"abc","x":' + b'{"a":' * d + b"1" + b"}" * d + b"}",
              "top-level": lambda d: b"[" * d + b"]" * d}
    for name, make in shapes.items():
        for d in range(1, LIMIT, 1 if name != "top-level" else 10):  # top-level: no verify, parse only
            body = make(d)
            if len(body) > LIMIT:
                break
            try:
                env.notify(body, {400, 401}, what=f"{name} nesting depth {d}")
            except AssertionError as exc:
                failures.append((name, d, str(exc)))
    assert not failures, (f"{len(failures)} bodies answered wrongly, depths "
                          f"{sorted({(n, d) for n, d, _ in failures})}; first: {failures[0][2]}")


@st.composite
def signed_callbacks(draw, trade_no: str | None = None) -> tuple[bytes, dict]:
    """A correctly signed callback whose values were fuzzed: numbers, booleans, null, nested,
    odd text, near misses. The answer must be 200 exactly when the fields are valid, else 400."""
    trade_no = trade_no or draw(st.sampled_from(["T" + uuid.uuid4().hex[:20], "\u30bf" * 3, "x" * 64]))
    fields = valid_callback(trade_no, draw(st.sampled_from(["0000", "0001", "0015", "00029", "0029", "9999"])),
                            draw(st.sampled_from(["300.00", "300", "150.00", "0.5", "1000000"])))
    if draw(st.booleans()):
        fields["successTime"] = draw(st.sampled_from(["2026-01-01 00:00:00", "", None]))
    value = st.one_of(clean_text, domain_text, number_text.map(Num), st.booleans(), st.none(),
                      wire_values)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.one_of(st.sampled_from([k for k in CALLBACK_FIELDS if k != "sign"]), clean_text))
        if key == "sign":
            continue
        if draw(st.integers(0, 4)) == 0:
            fields.pop(key, None)
        else:
            fields[key] = draw(value)
    body_fields = signed(fields)
    if draw(st.booleans()):
        body_fields["sign"] = body_fields["sign"].upper()  # the case of the hex does not matter
    keys = draw(st.permutations(list(body_fields)))
    body_fields = {k: body_fields[k] for k in keys}
    body = render(body_fields, ensure_ascii=draw(st.booleans()), sep=draw(st.sampled_from([",", ", ", ",\n  "])),
                  colon=draw(st.sampled_from([":", ": ", " :\t"])))
    return body, body_fields


def check_queued(env: Env, body_fields: dict) -> None:
    task, args = env.last_callback_message()
    wanted = {k: (v.text if isinstance(v, Num) else v) for k, v in body_fields.items()
              if v is not None and k != "sign"}  # verified already; never put on the broker
    wanted["account"] = "default"  # the account whose secret verified it (README "Accounts")
    assert task == "vexora.callback.process" and args == [wanted], (task, args, wanted)


def test_notify_signed_bodies_200_only_when_valid(env, full_size):
    @examples(full_size)
    @given(signed_callbacks(), st.sampled_from(CONTENT_TYPES))
    def run(case, content_type):
        body, body_fields = case
        expected = {200} if len(body) <= LIMIT and callback_is_valid(body_fields) else \
            {413} if len(body) > LIMIT else {400}
        answer = env.notify(body, expected, content_type=content_type, what="signed body")
        if answer.status == 200:
            check_queued(env, body_fields)

    run()


@st.composite
def forged_callbacks(draw, trade_no: str) -> bytes:
    """A valid callback for ``trade_no`` whose signature does not match it; always 401."""
    fields = valid_callback(trade_no, draw(st.sampled_from(["0000", "0001", "0015", "00029"])),
                            draw(st.sampled_from(["300.00", "300", "150.00"])))
    good = gateway_sign(fields)
    mode = draw(st.sampled_from(["random", "secret", "changed", "other-status", "renamed", "added",
                                 "removed", "mangled"]))
    nonempty = st.one_of(clean_text.filter(lambda s: s != ""), domain_text.filter(lambda s: s != ""),
                         number_text.map(Num), st.booleans())
    if mode == "random":
        fields["sign"] = draw(st.from_regex(r"[0-9a-fA-F]{32}", fullmatch=True).filter(lambda s: s.lower() != good))
    elif mode == "secret":
        secret = draw(st.one_of(st.sampled_from(["", APP_SECRET + " ", APP_SECRET.upper(), APP_SECRET[:-1],
                                                 " " + APP_SECRET, APP_SECRET + "\n", "secret"]), clean_text)
                      .filter(lambda s: s != APP_SECRET))
        fields["sign"] = gateway_sign(fields, secret)
    elif mode == "other-status":  # the signature of another outcome for the same order
        fields["sign"] = gateway_sign({**fields, "status": "0015" if fields["status"] != "0015" else "0000"})
    else:
        fields["sign"] = good
        key = draw(st.sampled_from(["tradeNo", "platFormTradeNo", "amount", "status", "message", "timestamp"]))
        if mode == "changed":  # one value changed after signing: the signed text must differ
            old = wire_text(fields[key])
            fields[key] = draw(st.one_of(nonempty, st.none(), st.just(""), wire_values).filter(
                lambda v: not is_scalar(v) or wire_text(v) != old))
        elif mode == "renamed":
            new = draw(st.sampled_from([key.upper(), key.lower(), key + " ", "\u200f" + key, key + "\x00"])
                       .filter(lambda k: k not in fields))
            fields[new] = fields.pop(key)
        elif mode == "added":
            fields[draw(clean_text.filter(lambda k: k not in fields))] = draw(st.one_of(nonempty, wire_values).filter(
                lambda v: not is_scalar(v) or wire_text(v) is not None))
        elif mode == "removed":
            del fields[key]
        else:
            fields["sign"] = draw(st.sampled_from([
                good[:-1], good + "0", " " + good, good + "\n", good[::-1] if good != good[::-1] else good[:-1],
                good[:5] + ("0" if good[5] != "0" else "1") + good[6:], good.replace(good[0], "\uff10", 1),
                good[:16] + "\u200f" + good[16:], "", Num("1234567890"), True, None, [good], {"sign": good},
            ]))
    keys = draw(st.permutations(list(fields)))
    return render({k: fields[k] for k in keys}, ensure_ascii=draw(st.booleans()))


def test_notify_forged_signatures_are_401_and_change_nothing(env, full_size):
    @examples(full_size)
    @given(forged_callbacks(env.sentinel), st.sampled_from(CONTENT_TYPES))
    def run(body, content_type):
        env.notify(body, {401}, content_type=content_type, what="forged signature")

    run()


def test_notify_replayed_callbacks_are_each_queued(env, full_size):
    @examples(full_size, bounded=50, full=500)
    @given(st.integers(2, 6), st.sampled_from(["0000", "0001", "0015", "00029"]), st.booleans(),
           st.sampled_from(CONTENT_TYPES))
    def run(times, status, ensure_ascii, content_type):
        fields = signed(valid_callback(env.sentinel, status, "300.00" if status != "0001" else "150.00"))
        body = render(fields, ensure_ascii=ensure_ascii)
        for _ in range(times):
            env.notify(body, {200}, content_type=content_type, what=f"replay x{times}")
            check_queued(env, fields)

    run()


@st.composite
def sized_callbacks(draw, trade_no: str | None = None) -> tuple[bytes, dict]:
    """A valid signed callback padded (in ``remark``) to a size near, at or over the limit."""
    target = draw(st.one_of(st.integers(LIMIT - 48, LIMIT + 48), st.just(LIMIT), st.just(LIMIT + 1),
                            st.integers(200, LIMIT), st.sampled_from([2 * LIMIT, 16 * LIMIT, 1 << 20])))
    pad = draw(st.sampled_from(["x", "\u3042", "\U0001f600", "\u200f", "\u0301"]))
    fields = valid_callback(trade_no or "T" + uuid.uuid4().hex[:20], remark="")
    base = len(render({**fields, "sign": "0" * 32}))
    room = max(0, target - base)
    unit = len(pad.encode("utf-8"))
    fields["remark"] = pad * (room // unit) + "x" * (room % unit)
    fields = signed(fields)
    body = render(fields)
    assert len(body) == max(target, base)
    return body, fields


def test_notify_bodies_near_and_over_the_size_limit(env, full_size):
    @examples(full_size)
    @given(sized_callbacks(), st.sampled_from([None, "application/json"]))
    def run(case, content_type):
        body, fields = case
        answer = env.notify(body, {200} if len(body) <= LIMIT else {413}, content_type=content_type,
                            what="sized body")
        if answer.status == 200:
            check_queued(env, fields)

    run()


# --- POST /v1/checkouts -------------------------------------------------------------------------

API_CONTENT_TYPES = CONTENT_TYPES + ["application/problem+json", "text/json", "application/jsonx",
                                     "application/json; charset=latin-1", "application/json; charset=utf-16"]


def is_json_mimetype(content_type: str | None) -> bool:
    mimetype = (content_type or "").split(";")[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def expected_api_garbage(body: bytes, content_type: str | None) -> set[int]:
    if not is_json_mimetype(content_type):
        return {400}  # get_json(silent=True) never reads the body: no 413 either
    if len(body) > LIMIT:
        return {413}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return {400}
    if isinstance(value, list):
        # a batch (issue 23): each item answered on its own — garbage items are "invalid" in a
        # 200 and nothing is stored or queued (checked by env.checkout); empty 422, too many 413
        if not value:
            return {422}
        return {413} if len(value) > 500 else {200}
    if not isinstance(value, dict):
        return {400}
    return {422, 400} if depth(value) > 400 else {422}


def test_api_refuses_garbage_bodies(env, full_size):
    @examples(full_size)
    @given(unsigned_bodies(), st.sampled_from(API_CONTENT_TYPES))
    def run(body, content_type):
        try:
            job = json.loads(body)
        except (ValueError, RecursionError):
            job = None
        env.checkout(body, expected_api_garbage(body, content_type), content_type=content_type, job=job,
                     what="garbage body")

    run()


def test_api_mutated_payloads_202_or_422_and_nothing_stored_on_refusal(env, full_size):
    @examples(full_size)
    @given(mutated_payload(), st.booleans(), st.sampled_from(["application/json", "application/vnd.api+json"]))
    def run(case, reuse, content_type):
        job, touched = case
        if reuse:  # the tradeNo of a stored job: same payload 202, another one 409
            job["tradeNo"] = env.existing
        answer = env.checkout(encode_json(job, "ascii"), {202, 409, 422}, content_type=content_type, job=job,
                              what=f"mutated {sorted(touched)}")
        if answer.status == 422:  # (escaped surrogate pairs in keys decode to one character)
            unexpected = set(answer.json()["errors"]) - {json.loads(encode_json(k)) for k in touched}
            assert not unexpected, f"errors for untouched fields {unexpected}: {answer.body!r}"

    run()


def test_api_deep_nesting_is_refused_not_a_5xx(env):
    """Regression: a deeply nested body (well under the size limit) must be 400/422, not 500 (a
    top-level array is a batch: its one nested item is answered "invalid" in a 200, nothing stored)."""
    failures = []
    shapes = {"top-level": lambda d: b"[" * d + b"]" * d,
              "in a field": lambda d: b'{"userId":' + b"[" * d + b"]" * d + b"}"}
    for name, make in shapes.items():
        for d in (1, 10, 100, 500, 900, 950, 980, 990, 1000, 1100, 1500, 2000):
            allowed = ({422} if d == 1 else {200, 400}) if name == "top-level" else {400, 422}
            try:
                env.checkout(make(d), allowed, job=None, what=f"{name} nesting depth {d}")
            except AssertionError as exc:
                failures.append((name, d, str(exc)))
    assert not failures, (f"{len(failures)} bodies answered wrongly, depths "
                          f"{sorted({(n, d) for n, d, _ in failures})}; first: {failures[0][2]}")


BEARER_OK = [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}", f"bEaReR {TOKEN}"]
BEARER_BAD = [None, "", "Bearer", "Bearer ", f"Bearer  {TOKEN}", f"Bearer {TOKEN} ", f"Bearer {TOKEN[:-1]}",
              f"Bearer {TOKEN}x", f"Bearer {TOKEN.upper()}", f"Bearer\t{TOKEN}", f"Token {TOKEN}", TOKEN,
              "Basic " + base64.b64encode(f"user:{TOKEN}".encode()).decode(), f"Bearer {TOKEN}\u00a0",
              f"Bearer {TOKEN},Bearer {TOKEN}", "Bearer " + TOKEN.replace("3", "\u00b3")]
BEARER_OVER_HTTP = [None, "", "Bearer", f"Bearer  {TOKEN}", f"Bearer {TOKEN[:-1]}", f"Token {TOKEN}"]
latin1_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60)


def token_is_valid(header: str | None) -> bool:
    scheme, _, credential = (header or "").partition(" ")
    return scheme.lower() == "bearer" and credential == TOKEN


def test_api_tokens_wrong_or_missing_are_401(env, full_size):
    @examples(full_size)
    @given(st.one_of(st.sampled_from(BEARER_OK + BEARER_BAD), latin1_text, latin1_text.map("Bearer ".__add__)),
           st.sampled_from(["valid", "invalid", "garbage"]))
    def run(authorization, kind):
        job = payload(tradeNo="K" + uuid.uuid4().hex[:24])
        if kind == "invalid":
            job["amount"] = "-1"
        body = b"\x00{" if kind == "garbage" else encode_json(job)
        ok = {"valid": {202}, "invalid": {422}, "garbage": {400}}[kind]
        env.checkout(body, ok if token_is_valid(authorization) else {401}, authorization=authorization, job=job,
                     what="token")

    run()


def test_api_get_with_odd_trade_nos(env, full_size):
    @examples(full_size)
    @given(st.one_of(odd_text, domain_text, st.just(env.existing)), st.booleans())
    def run(trade_no, authorized):
        path = "/v1/checkouts/" + quote(trade_no, safe="", errors="surrogatepass")
        headers = {"Authorization": f"Bearer {TOKEN}"} if authorized else {}
        before = env.snapshot()
        answer = env.send("GET", path, b"", headers)
        TALLIES["GET /v1/checkouts"].saw(answer.status)
        assert answer.status < 500, (path, answer.status, answer.body[:300], env.describe_error())
        assert env.snapshot() == before
        routed = trade_no != "" and "/" not in trade_no
        # a "/" makes another path (werkzeug redirects "//" to "/" with a 308)
        expected = {200, 404} if authorized and routed else {401} if routed else {404, 308}
        assert answer.status in expected, (path, answer.status, answer.body[:300])
        if answer.status == 200:  # the stored job, or one an earlier example stored under that tradeNo
            assert json.loads(answer.body)["tradeNo"] == trade_no and b"09087654321" not in answer.body

    run()


# --- the same over real HTTP (gunicorn), with what only a socket can send ------------------------

@pytest.fixture(scope="module")
def http_env(redis_url, queues, tmp_path_factory):
    prefix = f"fuzz-http-{uuid.uuid4().hex[:12]}"
    queues.append(prefix)
    stack = Stack(redis_url, tmp_path_factory.mktemp("bad-input"), VEXORA_KEY_PREFIX=prefix,
                  VEXORA_CALLBACK_MAX_BYTES=str(LIMIT), VEXORA_API_TOKEN=TOKEN, VEXORA_NOTIFY_URL=NOTIFY_URL)
    web = stack.start_web()  # the web app only: no flush, no worker, no sandbox
    http = requests.Session()

    def send(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> Answer:
        r = http.request(method, stack.web_url + path, data=body, headers=headers or {}, timeout=30)
        return Answer(r.status_code, r.content, dict(r.headers))

    env = Env(stack.runtime, send, (TALLIES["over HTTP (gunicorn)"],) * 2,
              lambda: "\n--- gunicorn log (tail) ---\n" + web.log()[-3000:])
    env.port = stack.web_port
    try:
        yield env
    finally:
        http.close()
        stack.stop()


def raw_request(port: int, head: bytes, parts: list[bytes], *, shut: bool = False) -> int | None:
    """Send bytes as they are; the status of the first answer (None: the server closed silently)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(head)
            for part in parts:
                sock.sendall(part)
            if shut:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early (413) and closed: read what it said
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(match.group(1)) if match else None


def chunked(body: bytes, size: int = 1000) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size)] + [b"0\r\n\r\n"]


@pytest.mark.integration
def test_over_real_http(http_env, full_size):
    env = http_env
    tally = TALLIES["over HTTP (gunicorn)"]

    @examples(full_size, bounded=80, full=800)
    @given(st.one_of(
        unsigned_bodies().map(lambda b: ("unsigned", b, expected_unsigned(b), None)),
        signed_callbacks(env.sentinel).map(lambda c: ("signed", c[0], {200} if len(c[0]) <= LIMIT and
                                                      callback_is_valid(c[1]) else {400, 413}, c[1])),
        forged_callbacks(env.sentinel).map(lambda b: ("forged", b, {401}, None)),
        sized_callbacks(env.sentinel).map(lambda c: ("sized", c[0], {200} if len(c[0]) <= LIMIT else {413}, c[1])),
    ))
    def notify_cases(case):
        kind, body, expected, fields = case
        answer = env.notify(body, expected, what=f"{kind} over HTTP")
        if answer.status == 200:
            check_queued(env, fields)

    failures = []
    try:
        notify_cases()
    except AssertionError as exc:  # keep going: the socket cases below are worth seeing too
        failures.append(f"notify over HTTP: {str(exc)[:3000]}")

    @examples(full_size, bounded=40, full=400)
    @given(mutated_payload(odd=False), st.sampled_from(BEARER_OK + BEARER_OVER_HTTP))
    def checkout_cases(case, authorization):
        job, _touched = case
        env.checkout(encode_json(job, "ascii"), {202, 409, 422} if token_is_valid(authorization) else {401},
                     authorization=authorization, job=job, what="mutated payload over HTTP")

    try:
        checkout_cases()
    except AssertionError as exc:
        failures.append(f"checkout over HTTP: {str(exc)[:3000]}")

    # what only a raw socket sends: chunked bodies, lying or invalid Content-Length
    valid = render(signed(valid_callback(env.sentinel)))
    big = render(signed(valid_callback(env.sentinel, remark="x" * (3 * LIMIT))))
    notify = b"POST /vexora/notify HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\n"
    api = (b"POST /v1/checkouts HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\n"
           b"Authorization: Bearer " + TOKEN.encode() + b"\r\n")
    huge_job = encode_json(payload(remark="x" * (3 * LIMIT)))
    padded = valid + b" " * (3 * LIMIT)  # valid JSON, over the limit only by trailing whitespace
    padded_job = encode_json(payload()) + b" " * (3 * LIMIT)
    raw_cases = [  # (name, head, parts, shut, allowed statuses; None = closed without an answer)
        ("chunked, valid, under the limit", notify + b"Transfer-Encoding: chunked\r\n\r\n", chunked(valid), False, {200}),
        ("chunked, over the limit", notify + b"Transfer-Encoding: chunked\r\n\r\n", chunked(big), False, {413}),
        ("chunked, over the limit, API", api + b"Transfer-Encoding: chunked\r\n\r\n", chunked(huge_job), False, {413}),
        ("chunked, valid callback + whitespace over the limit", notify + b"Transfer-Encoding: chunked\r\n\r\n",
         chunked(padded), False, {413}),
        ("chunked, valid job + whitespace over the limit, API", api + b"Transfer-Encoding: chunked\r\n\r\n",
         chunked(padded_job), False, {413}),
        ("Content-Length, valid callback + whitespace over the limit", notify + b"Content-Length: %d\r\n\r\n"
         % len(padded), [padded], False, {413}),
        ("declares 10x the limit, sends 10 bytes", notify + b"Content-Length: %d\r\n\r\n" % (10 * LIMIT),
         [b'{"sign":1}'], True, {413}),
        ("declares 5 bytes, sends a valid body", notify + b"Content-Length: 5\r\n\r\n", [valid], False, {400}),
        ("declares 300 bytes, sends 20 then closes", notify + b"Content-Length: 300\r\n\r\n", [valid[:20]], True,
         {400, None}),
        ("Content-Length: abc", notify + b"Content-Length: abc\r\n\r\n", [valid], False, {400}),
        ("Content-Length: -1", notify + b"Content-Length: -1\r\n\r\n", [valid], False, {400}),
        ("Content-Length and chunked", notify + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
         % len(valid), chunked(valid), False, {400, 200}),
        ("chunked, bad chunk size", notify + b"Transfer-Encoding: chunked\r\n\r\n", [b"zz\r\n" + valid + b"\r\n0\r\n\r\n"],
         False, {400, None}),
    ]
    for name, head, parts, shut, allowed in raw_cases:
        before = env.snapshot()
        # raw_request returns once the server answered (it queues before it answers) or closed
        # the connection (it has finished with the request): its side is done when we look
        status = raw_request(env.port, head, parts, shut=shut)
        after = env.snapshot()
        tally.saw(status or 0)
        added = after.callbacks - before.callbacks
        changed = env._unchanged(before, after, checkout=True, events=True)
        if added != (1 if status == 200 and 200 in allowed else 0):
            changed.append(f"callbacks queue +{added}")
        tally.state_changes += bool(changed)
        if status not in allowed or changed:
            failures.append(f"raw: {name}: status {status} (allowed {sorted(allowed, key=str)}), changes {changed}")

    # deep nesting over HTTP: the stack depth differs from the in-process one, so sweep again
    deep = []
    for d in range(1, (LIMIT - 20) // 2):
        try:
            env.notify(b'{"sign":"abc","x":' + b"[" * d + b"]" * d + b"}", {400, 401}, what=f"depth {d}")
        except AssertionError as exc:
            deep.append((f"notify depth {d}", str(exc).split("\n")[0][:300]))
    for d in (100, 990, 1000, 2000):
        try:
            # a batch of one item that is not an object (200, "invalid"), or too deep to parse (400)
            env.checkout(b"[" * d + b"]" * d, {200, 400}, what=f"API depth {d}")
        except AssertionError as exc:
            deep.append((f"API depth {d}", str(exc).split("\n")[0][:300]))
    if deep:
        failures.append(f"{len(deep)} deeply nested bodies answered wrongly: {[d for d, _ in deep]}; "
                        f"first: {deep[0][1]}")
    assert not failures, "\n".join(failures) + env.describe_error()


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
