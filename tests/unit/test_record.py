"""The public record (schemas/record.py): what every reader shows of a stored job — typed, internal
fields hidden, payer data masked, undeclared fields never shown and refused on load."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from marshmallow import ValidationError

from schemas import CheckoutEventDataSchema, CheckoutRecordSchema, CheckoutRequestSchema, ReviewItemSchema
from schemas.api import EVENT_TYPES
from schemas.record import HIDDEN, STATES, EpochMillis
from worker.domain import states
from worker.domain.masking import mask_contact
from worker.web.openapi import build_openapi
from worker.webhooks.endpoints import EVENT_TYPES as WORKER_EVENT_TYPES
from worker.webhooks.outbox import WEBHOOK_HIDDEN

PAYER = {"mobile": "09012345678", "email": "taro@example.com", "firstname": "タロウ", "lastname": "ヤマダ",
         "ipAddress": "133.1.2.3"}
HISTORY = [
    {"at": 1700000000000, "from": None, "to": "queued", "detail": {}},
    {"at": 1700000000100, "from": "queued", "to": "submitting", "detail": {"reason": "lease claimed"}},
    {"at": 1700000000400, "from": "submitting", "to": "paying",
     "detail": {"reason": "gateway create: paying", "code": "0000", "latencyMs": 212}},
    {"at": 1700000009000, "from": None, "to": None, "detail": {"kind": "needs_review", "reason": "r"}},
]


def stored(**changes) -> dict:
    """A record as the Redis hash holds it (bytes, as redis-py returns it), every field set."""
    fields = {
        "tradeNo": "ORDER-1001", "state": "succeeded", "createdAt": "1700000000000",
        "updatedAt": "1700000009000", "attempts": "2", "fingerprint": "ab" * 32,
        "contact": json.dumps(mask_contact(PAYER), ensure_ascii=False), "amount": "1500",
        "payload": json.dumps(PAYER), "leaseUntil": "1700000020000", "leaseToken": "0123456789abcdef",
        "ipHash": "f" * 32, "ipCounted": "1", "webhookSeq": "4", "flaggedReason": "r", "nextCheckAt": "17",
        "gatewayCode": "0000", "message": "Success", "platFormTradeNo": "P1",
        "paymentLink": "https://pay.example/x", "gatewayStatus": "0000", "paidAmount": "1500.00",
        "latencyMs": "212", "httpStatus": "", "needsReview": "true", "reviewReason": "r",
        "reviewAt": "1700000009000", "reconcileChecks": "3", "callbackAt": "1700000008000",
        "resolvedBy": "alice", "resolvedReason": "checked", "resolvedAt": "1700000010000",
        "errors": json.dumps({"ipAddress": ["must be an IPv4 or IPv6 address (e.g. 133.0.0.1)"]}),
        "someFutureField": "x",
    }
    fields.update(changes)
    return {k.encode(): v.encode() for k, v in fields.items() if v is not None}


RECORD = CheckoutRecordSchema()


def dumped(**changes) -> dict:
    return RECORD.dump({**stored(**changes), "history": HISTORY})


def test_every_field_is_typed():
    record = dumped()
    assert record == {
        "tradeNo": "ORDER-1001", "account": "default", "state": "succeeded", "amount": "1500",
        "paidAmount": "1500", "gatewayPaidAmount": "1500.00", "contact": mask_contact(PAYER),
        "errors": {"ipAddress": ["must be an IPv4 or IPv6 address (e.g. 133.0.0.1)"]}, "attempts": 2,
        "platFormTradeNo": "P1", "paymentLink": "https://pay.example/x", "gatewayCode": "0000",
        "gatewayStatus": "0000", "message": "Success", "latencyMs": 212, "needsReview": True,
        "reviewReason": "r", "reviewAt": 1700000009000, "reconcileChecks": 3, "callbackAt": 1700000008000,
        "resolvedBy": "alice", "resolvedReason": "checked", "resolvedAt": 1700000010000,
        "createdAt": 1700000000000, "updatedAt": 1700000009000, "history": HISTORY,
    }
    assert "httpStatus" not in record  # stored empty: absent, never null or ""


def test_every_time_is_epoch_ms_and_every_at_field_is_one():
    times = {n for n, f in RECORD.fields.items() if isinstance(f, EpochMillis)}
    assert times == {n for n in RECORD.fields if n.endswith("At")}
    record = dumped()
    assert all(type(record[n]) is int and record[n] > 1_600_000_000_000 for n in times)


def test_internal_fields_are_hidden_and_undeclared_ones_never_shown():
    assert not HIDDEN & set(RECORD.fields) and not HIDDEN & set(CheckoutEventDataSchema().fields)
    assert HIDDEN <= WEBHOOK_HIDDEN
    shown = json.dumps(dumped(), ensure_ascii=False)
    for name in [*HIDDEN, "someFutureField"]:
        assert f'"{name}"' not in shown, name
    assert "0123456789abcdef" not in shown and "f" * 32 not in shown


def test_payer_data_stays_masked():
    record = dumped()
    text = json.dumps(record, ensure_ascii=False)
    for value in PAYER.values():
        assert value not in text, value  # the payload's copy is never shown
    assert record["contact"] == {"mobile": "090****5678", "email": "t***@example.com", "firstname": "タ**",
                                 "lastname": "ヤ**", "ipAddress": "133.1.*.*"}


def test_unknown_fields_are_refused_on_load_and_a_dumped_record_loads():
    record = dumped()
    assert RECORD.load(record) == record
    with pytest.raises(ValidationError) as refused:
        RECORD.load({**record, "leaseUntil": 1})
    assert refused.value.messages == {"leaseUntil": ["Unknown field."]}
    with pytest.raises(ValidationError):
        RECORD.load({**record, "contact": {**record["contact"], "mobileRaw": "09012345678"}})
    with pytest.raises(ValidationError):
        RECORD.load({**record, "history": [{**HISTORY[0], "to": "shipped"}]})
    with pytest.raises(ValidationError):
        RECORD.load({**record, "createdAt": "1700000000000"})  # a time is a number


def test_dumping_a_dumped_record_changes_nothing():
    record = dumped()
    assert RECORD.dump(record) == record
    assert RECORD.dump({**stored(paidAmount=None), "history": []})["needsReview"] is True
    assert "gatewayPaidAmount" not in RECORD.dump({**stored(paidAmount=None), "history": []})


@pytest.mark.parametrize("stored_text,shown", [
    ("1500", "1500"), ("1500.00", "1500"), ("1500.0", "1500"), ("0.00", "0"), ("1500.50", "1500.5"),
    ("  300 ", "300"), ("1e3", "1000"), ("abc", None), ("", None), ("NaN", None), ("Infinity", None),
    ("1e999999", None), ("-5", "-5"),
])
def test_amounts_are_yen_as_the_gateways_integer_string(stored_text, shown):
    record = RECORD.dump({"paidAmount": stored_text})
    assert record.get("paidAmount") == shown
    assert record["gatewayPaidAmount"] == stored_text  # the gateway's own text, kept apart
    if shown is not None:
        RECORD.fields["paidAmount"].deserialize(shown)  # what is shown passes its own pattern


@given(st.integers(0, 10 ** 12), st.sampled_from(["", ".0", ".00"]))
def test_any_whole_amount_reads_as_its_digits(yen, decimals):
    assert RECORD.dump({"amount": f"{yen}{decimals}"})["amount"] == str(yen)


@pytest.mark.parametrize("name", ["attempts", "latencyMs", "httpStatus", "reconcileChecks", "createdAt"])
@pytest.mark.parametrize("text", ["", "x", None])
def test_an_unusable_number_is_absent(name, text):
    assert name not in RECORD.dump({name: text})


def test_a_webhooks_data_is_the_record_without_history_with_its_sequence():
    data = CheckoutEventDataSchema().dump({**stored(), "sequence": "4"})
    record = dumped()
    del record["history"]
    assert data == {**record, "sequence": 4}
    CheckoutEventDataSchema().load(data)


def test_a_review_item_is_the_record_without_history_with_its_age():
    item = ReviewItemSchema().dump({**stored(), "ageSeconds": 12})
    assert "history" not in item and item["ageSeconds"] == 12 and item["paidAmount"] == "1500"
    assert "contact" not in item  # no payer data at all, not even masked


def test_states_and_event_types_are_the_workers():
    assert STATES == states.ALL
    assert EVENT_TYPES == WORKER_EVENT_TYPES


def test_a_dumped_record_is_what_the_document_describes():
    document = build_openapi(CheckoutRequestSchema())
    for component, instance in (("CheckoutRecord", dumped()),
                                ("CheckoutEventData", CheckoutEventDataSchema().dump({**stored(), "sequence": 1})),
                                ("ReviewItem", ReviewItemSchema().dump({**stored(), "ageSeconds": 0}))):
        schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
        assert [e.message for e in Draft202012Validator(schema).iter_errors(instance)] == [], component
    wrong = {**dumped(), "attempts": "2"}
    schema = {"$ref": "#/components/schemas/CheckoutRecord", "components": document["components"]}
    assert list(Draft202012Validator(schema).iter_errors(wrong))  # the document would notice a string


def test_the_readme_shows_a_valid_record_and_lists_every_field():
    from pathlib import Path
    import re

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = re.split(r"\n#{2,3} The record\n", text, maxsplit=1)[1]
    section = re.split(r"\n#{1,3} ", section, maxsplit=1)[0]
    example = json.loads(re.search(r"```json\n(.*?)```", section, flags=re.S).group(1))
    assert RECORD.load(example) == example
    listed = set(re.findall(r"^\| (.+?) \|", section, flags=re.M)) - {"field", "---"}
    names = {name for cell in listed for name in re.findall(r"`(\w+)`", cell)}
    assert names == {f.data_key or n for n, f in RECORD.fields.items()}
