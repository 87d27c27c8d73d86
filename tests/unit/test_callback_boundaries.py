"""Issue 20, finding 1: a genuine callback's signature cannot be moved onto other fields.

The signed text is ``k1=v1k2=v2…`` with no separator. With only the documented field names and no
``=`` in any value, a signed text splits back into fields one way only (docs/gateway.md
§Callbacks, "Why a signature cannot be moved between fields"); these tests state that argument,
and check that the endpoint, the schema, the payload schema and the callback flow each keep it.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from marshmallow import ValidationError

from schemas import CallbackSchema, CheckoutRequestSchema
from schemas.callback import DOCUMENTED_FIELDS, boundary_errors, plainly_valid
from worker.config.settings import Settings
from worker.flows.callbacks import PLATFORM_MISMATCH, CallbackProcessor, platform_mismatch
from worker.gateway.signing import (RawNumber, callback_body, parse_json_keeping_numbers, signing_string, verifier,
                                    verify)
from worker.web import create_app
from worker.web.openapi import build_openapi

SECRET = "app-secret-for-tests"
ATTACKER, VICTIM = "ATTACKERORDER0001", "VICTIMORDER00001"
ATTACK_REMARK = "xstatus=0000timestamp=1tradeNo=" + VICTIM + "zzz="


def genuine_failed_callback() -> dict:
    """What the gateway signs for the attacker's own order A, failed, remark chosen by them."""
    return {"platFormTradeNo": "c167o1itir0fypid", "tradeNo": ATTACKER, "amount": "0.00",
            "status": "00029", "message": "Failed", "timestamp": "1715941383720",
            "remark": ATTACK_REMARK}


def re_split(genuine: dict, sign: str) -> dict:
    """The issue's forgery: the same signed text, cut at other places, now naming VICTIM as paid."""
    text = signing_string(genuine)
    moved = text.split("zzz=", 1)[1]  # status=00029timestamp=…tradeNo=ATTACKER, now one value
    forged = {key: genuine[key] for key in ("amount", "message", "platFormTradeNo")}
    forged.update({"remark": "x", "status": "0000", "timestamp": "1", "tradeNo": VICTIM, "zzz": moved})
    assert signing_string(forged) == text  # the same text: the same MD5, the same sign
    return {**forged, "sign": sign}


def signed(fields: dict) -> dict:
    return parse_json_keeping_numbers(callback_body(fields, SECRET))


# --- the attack, and the schema that refuses it -----------------------------------------------

def test_the_issues_re_split_body_verifies_but_is_refused():
    genuine = signed(genuine_failed_callback())
    forged = re_split({k: v for k, v in genuine.items() if k != "sign"}, genuine["sign"])
    assert verify(forged, SECRET)  # the attack is real: the signature checks out
    assert forged["tradeNo"] == VICTIM and forged["status"] == "0000"
    assert set(boundary_errors(forged)) == {"zzz"}
    with pytest.raises(ValidationError) as caught:
        CallbackSchema().load(forged)
    assert set(caught.value.messages) == {"zzz"}


def test_the_genuine_callback_with_the_attack_remark_is_refused_too():
    # the remark itself carries '=': the genuine callback of order A is not accepted either
    genuine = signed(genuine_failed_callback())
    assert list(boundary_errors(genuine)) == ["remark"]
    with pytest.raises(ValidationError) as caught:
        CallbackSchema().load(genuine)
    assert list(caught.value.messages) == ["remark"]


@pytest.mark.parametrize("field", ["tradeNo", "platFormTradeNo", "status", "message", "successTime", "remark"])
def test_an_equals_sign_in_any_value_is_refused(field):
    body = signed({**genuine_failed_callback(), "remark": "order 42", field: "a=b"})
    assert list(boundary_errors(body)) == [field]
    with pytest.raises(ValidationError) as caught:
        CallbackSchema().load(body)
    assert field in caught.value.messages
    assert not any("a=b" in message for messages in caught.value.messages.values() for message in messages)


@pytest.mark.parametrize("extra", [{"zzz": "x"}, {"paidAmount": "300.00"}, {"extraFlag": True},
                                   {"extraNull": None}, {"Status": "0000"}, {"tradeNo ": "x"}])
def test_a_field_the_documentation_does_not_name_is_refused(extra):
    body = signed({**genuine_failed_callback(), "remark": "order 42", **extra})
    assert set(boundary_errors(body)) == set(extra)
    with pytest.raises(ValidationError) as caught:
        CallbackSchema().load(body)
    assert set(caught.value.messages) == set(extra)


def test_a_documented_callback_still_loads():
    body = signed({**genuine_failed_callback(), "remark": "order 42 (a/b), #7", "successTime": "2024-01-01 00:00:01"})
    assert boundary_errors(body) == {}
    assert CallbackSchema().load(body) == body


# --- the argument: one split only -------------------------------------------------------------

SIGNED_KEYS = sorted(DOCUMENTED_FIELDS - {"sign"})


def test_the_documented_names_carry_no_separator_and_none_ends_another():
    assert DOCUMENTED_FIELDS == {"platFormTradeNo", "tradeNo", "amount", "status", "message", "timestamp",
                                 "sign", "successTime", "remark", "merchantNo"}
    assert not any("=" in key for key in DOCUMENTED_FIELDS)
    # the cut between a value and the next key is found from the right: it is unique exactly when
    # no name is a proper suffix of another
    assert [(a, b) for a in SIGNED_KEYS for b in SIGNED_KEYS if a != b and b.endswith(a)] == []


def every_split(text: str) -> list[dict]:
    """Every way to read ``text`` as documented key=value pairs in sorted key order, no '=' in values."""
    results = []

    def walk(rest: str, after: str, fields: dict) -> None:
        for key in SIGNED_KEYS:
            if key <= after or not rest.startswith(key + "="):
                continue
            body = rest[len(key) + 1:]
            for end in range(1, len(body) + 1):
                value = body[:end]
                if "=" in value:
                    break
                if end == len(body):
                    results.append({**fields, key: value})
                else:
                    walk(body[end:], key, {**fields, key: value})
    walk(text, "", {})
    return results


value_text = st.text(st.characters(blacklist_characters="=", blacklist_categories=("Cs",)), min_size=1,
                     max_size=12)
key_names = st.sampled_from(SIGNED_KEYS + ["tradeNo", "status", "remark", "amountstatus", "Time"])


@hsettings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(SIGNED_KEYS), st.one_of(value_text, key_names), min_size=1))
def test_a_signed_text_of_documented_fields_splits_back_one_way_only(fields):
    assert every_split(signing_string(fields)) == [fields]


# --- at the endpoint: refused, counted, never queued -------------------------------------------

class FakeMeter:
    def __init__(self):
        self.counts = {}

    def inc(self, name, amount=1, **labels):
        key = (name, tuple(sorted(labels.items())))
        self.counts[key] = self.counts.get(key, 0) + amount


class FakeJobLookup:
    """No job: the callback is checked against every account's secret (here the one, default)."""

    def account_of(self, trade_no):
        return False, "default"


class FakeRuntime:
    """What the notify view uses of a runtime: a meter and a broker that records what is sent."""

    def __init__(self):
        self.meter, self.sent = FakeMeter(), []
        self.store = FakeJobLookup()
        self.task_messages = None  # a broker other than the store's Redis: send_task, as before

    def send(self, task, *args, **options):
        self.sent.append((task, args))

    def confirm_queued(self):
        pass


def notify(body: bytes):
    runtime = FakeRuntime()
    app = create_app(Settings(app_secret=SECRET, metrics=True), runtime=runtime)
    answer = app.test_client().post("/vexora/notify", data=body, content_type="application/json")
    return answer, runtime


def test_the_endpoint_refuses_the_re_split_body_and_counts_it_apart():
    genuine = signed(genuine_failed_callback())
    forged = re_split({k: v for k, v in genuine.items() if k != "sign"}, genuine["sign"])
    answer, runtime = notify(json.dumps(forged).encode())
    assert answer.status_code == 400 and answer.get_data() != b"OK"
    assert answer.get_json() == {"error": "refused callback: a field the gateway does not document, "
                                          "or a value containing '='", "fields": [], "undocumentedFields": 1}
    assert runtime.sent == []
    assert runtime.meter.counts == {("callbacks_total", (("account", "default"), ("result", "refused_fields"))): 1}


def test_the_endpoint_names_a_documented_field_with_equals_but_never_its_value():
    answer, runtime = notify(callback_body({**genuine_failed_callback(), "remark": "a=b"}, SECRET))
    assert answer.status_code == 400 and answer.get_json()["fields"] == ["remark"]
    assert b"a=b" not in answer.get_data() and runtime.sent == []


def test_the_endpoint_still_queues_a_documented_callback():
    answer, runtime = notify(callback_body({**genuine_failed_callback(), "remark": "order 42"}, SECRET))
    assert (answer.status_code, answer.get_data()) == (200, b"OK")
    assert [task for task, _ in runtime.sent] == ["vexora.callback.process"]
    assert runtime.meter.counts == {("callbacks_total", (("account", "default"), ("result", "accepted"))): 1}


# --- at enqueue: the remark ---------------------------------------------------------------------

BASE = {"tradeNo": "T1", "userId": "u1", "amount": "300", "mobile": "09012345678", "firstname": "タロウ",
        "lastname": "ヤマダ", "email": "taro@example.com", "channelCode": "EWALLET", "wayCode": "PAYPAY",
        "ipAddress": "133.0.0.1", "notifyUrl": "https://merchant.example/notify",
        "returnUrl": "https://merchant.example/return"}
REMARK_RULE = "may contain only printable ASCII (letters, digits, space and punctuation) and no '='"


@pytest.mark.parametrize("remark", [ATTACK_REMARK, "=", "a=b", "ヤマダ様", "tab\there", "line\nbreak",
                                    "\x7f", "caf\u00e9", "\u200f"])
def test_a_remark_that_could_shift_a_boundary_or_carry_collision_bytes_is_refused(remark):
    assert CheckoutRequestSchema().field_errors({**BASE, "remark": remark}) == {"remark": [REMARK_RULE]}


@pytest.mark.parametrize("remark", ["order 42", "000000", "demo order 7", "A-1_b.c:d/e#f@g+h,(i)!?~'\"[]{}<>|&%$*^`;\\"])
def test_a_printable_ascii_remark_without_equals_is_kept(remark):
    assert CheckoutRequestSchema().load({**BASE, "remark": remark})["remark"] == remark


def test_the_openapi_document_states_the_remark_rule():
    remark = build_openapi(CheckoutRequestSchema())["components"]["schemas"]["CheckoutRequest"]["properties"]["remark"]
    assert remark["pattern"] == r"^[\x20-\x3c\x3e-\x7e]+$"
    assert "'='" in remark["description"]


# --- in the worker: the gateway's id must match -------------------------------------------------

@pytest.mark.parametrize("held,given,mismatch", [
    ("c167o1itir0fypid", "c167o1itir0fypid", False), ("c167o1itir0fypid", "other0000000001", True),
    (None, "c167o1itir0fypid", False), ("", "c167o1itir0fypid", False), ("c167o1itir0fypid", None, False),
])
def test_platform_mismatch(held, given, mismatch):
    assert platform_mismatch(held, given) is mismatch


class FakeJob:
    def __init__(self, fields):
        self.state, self.fields = "paying", fields


class FakeStore:
    def __init__(self, job):
        self.job, self.flags, self.notes = job, [], []

    def load(self, trade_no):
        return self.job

    def flag(self, trade_no, reason, detail=None):
        self.flags.append((trade_no, reason, detail))
        return True

    def note(self, trade_no, kind, detail=None):
        self.notes.append((trade_no, kind, detail))

    def now_ms(self):
        return 1


class FakeSettler:
    def __init__(self):
        self.reports = []

    def apply(self, trade_no, report, **kwargs):
        self.reports.append((trade_no, report))
        return "succeeded"


def paid(platform_no: str) -> dict:
    return {"platFormTradeNo": platform_no, "tradeNo": VICTIM, "amount": "300.00", "status": "0000",
            "message": "Success", "timestamp": "1"}


def test_a_callback_naming_another_platform_trade_no_is_flagged_counted_and_not_applied():
    store, settler, meter = FakeStore(FakeJob({"platFormTradeNo": "held0000000000001"})), FakeSettler(), FakeMeter()
    assert CallbackProcessor(store, settler, meter).apply(paid("othr0000000000002")) == PLATFORM_MISMATCH
    assert settler.reports == []
    [(trade_no, reason, detail)] = store.flags
    assert trade_no == VICTIM and "othr0000000000002" in reason and "held0000000000001" in reason
    assert detail["check"] == "platFormTradeNo" and detail["status"] == "0000"
    assert meter.counts == {("callbacks_total", (("account", "default"), ("result", PLATFORM_MISMATCH))): 1}


def test_a_job_without_a_platform_trade_no_takes_the_callbacks():
    store, settler = FakeStore(FakeJob({})), FakeSettler()
    assert CallbackProcessor(store, settler).apply(paid("c167o1itir0fypid")) == "succeeded"
    [(_, report)] = settler.reports
    assert report.fields["platFormTradeNo"] == "c167o1itir0fypid" and store.flags == []


def test_a_matching_platform_trade_no_is_applied():
    store, settler = FakeStore(FakeJob({"platFormTradeNo": "c167o1itir0fypid"})), FakeSettler()
    assert CallbackProcessor(store, settler).apply(paid("c167o1itir0fypid")) == "succeeded"
    assert store.flags == []


# --- the sandbox: the remark comes back ---------------------------------------------------------

def test_the_sandbox_callback_carries_the_orders_remark_as_it_is():
    from worker.sandbox.notify import callback_fields
    order = {"tradeNo": "T1", "platFormTradeNo": "P1", "status": "00029", "message": "Failed",
             "paidAmount": None, "paidAt": None, "remark": "order 42"}
    fields = callback_fields(order, 1)
    assert fields["remark"] == "order 42"
    assert "remark" not in callback_fields({**order, "remark": ""}, 1)  # never sent empty
    assert boundary_errors(fields) == {}


# --- the endpoint's plain check: True never disagrees with the schema ---------------------------

_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.builds(RawNumber, st.from_regex(r"\A[0-9]{1,4}(\.[0-9]{1,3})?\Z")),
    st.text(max_size=70), st.from_regex(r"\A[0-9A-Fa-f]{32}\Z"), st.from_regex(r"\A[0-9]{1,14}\Z"),
    st.just(""), st.just("a=b"), st.just("123\n"), st.lists(st.text(max_size=3), max_size=2))
_names = st.sampled_from(sorted(DOCUMENTED_FIELDS) + ["extra", "Sign"])


def _valid_body() -> dict:
    return signed({**genuine_failed_callback(), "amount": "300.00", "remark": "order 42"})


@hsettings(max_examples=1500, deadline=None)
@given(st.dictionaries(_names, _values, max_size=12), st.booleans())
def test_plainly_valid_is_true_only_where_the_schema_finds_nothing(extra, on_a_valid_body):
    body = {**_valid_body(), **extra} if on_a_valid_body else extra
    if plainly_valid(body):
        assert CallbackSchema().validate(body) == {}


@pytest.mark.parametrize("change", [{}, {"remark": "order 42"}, {"successTime": None}, {"merchantNo": "M-1"},
                                    {"message": ""}, {"tradeNo": RawNumber("12345")}])
def test_plainly_valid_takes_the_genuine_callbacks(change):
    body = {**_valid_body(), **change}
    assert CallbackSchema().validate(body) == {} and plainly_valid(body)


@pytest.mark.parametrize("change", [{"amount": "3e2"}, {"tradeNo": ""}, {"tradeNo": "x" * 65}, {"status": None},
                                    {"sign": "0" * 31}, {"timestamp": "12a"}, {"remark": "a=b"}, {"extra": "x"},
                                    {"merchantNo": ""}, {"message": 5}])
def test_plainly_valid_leaves_every_other_body_to_the_schema(change):
    body = {**_valid_body(), **change}
    assert CallbackSchema().validate(body) != {} and not plainly_valid(body)


@pytest.mark.parametrize("secret", [SECRET, "another", ""])
def test_the_verifier_agrees_with_verify(secret):
    body = signed(genuine_failed_callback())
    for params in (body, {**body, "sign": body["sign"].upper()}, {**body, "status": "0000"}, {**body, "sign": 7}):
        assert verifier(params)(secret) is verify(params, secret)
