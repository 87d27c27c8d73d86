"""A webhook body built the fast way is byte for byte the body the schema gives: the dispatcher
dumps each event's record with ``CheckoutEventDataSchema``'s own pre-dump step and fields, without
marshmallow's per-dump plumbing (``outbox._event_data_dumper``), writes the timestamp from a kept
second, and encodes with one reused encoder. Compared here with the plain formula over varied
records: every declared field present or absent, text or bytes, numbers that are and are not
numbers, JSON text for ``contact``/``errors`` (empty too), flags, hidden fields, history, unicode."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone

from schemas import CheckoutEventDataSchema
from schemas.record import HIDDEN
from worker.webhooks import outbox
from worker.webhooks.outbox import _body, _dump_event_data, _iso, build_body

SCHEMA = CheckoutEventDataSchema()

VALUES = {
    "tradeNo": ["T1", "ORDER-0001", b"B2"],
    "account": ["default", "acme", "", b"shop"],
    "state": ["queued", "paying", "succeeded", "partially_paid", b"failed", "weird"],
    "amount": ["300", "1500.00", "1.5", "", "abc", "1e20", "-0", b"700", "0012"],
    "paidAmount": ["300.00", "300", "", "x", b"250.50", "NaN", "Infinity"],
    "gatewayPaidAmount": ["300.00", ""],
    "contact": ['{"mobile": "090****4321"}', '{"email": "t***@example.com", "firstname": "タ**"}', "", "null",
                b'{"ipAddress": "133.0.*.*"}'],
    "errors": ['{"amount": ["must be yen"]}', "", '{}'],
    "attempts": ["0", "3", "", "x", "2.0", b"4", "-1"],
    "platFormTradeNo": ["P123", ""],
    "paymentLink": ["https://pay.example/x?y=1&z=ü", ""],
    "gatewayCode": ["0000", "5000"],
    "gatewayStatus": ["0015", ""],
    "message": ["OK", "支払い済み", "quote\" and \\ backslash", "\u2028line"],
    "httpStatus": ["502", "", "abc"],
    "latencyMs": ["212", "0", "1.7", ""],
    "needsReview": ["true", "false", "", "yes", b"true", "1"],
    "reviewReason": ["a test", ""],
    "reviewAt": ["1700000000000", "", "x"],
    "reconcileChecks": ["2", ""],
    "callbackAt": ["1700000000123", "12.5"],
    "resolvedBy": ["op"],
    "resolvedReason": ["checked"],
    "resolvedAt": ["1700000000999"],
    "resolvedAmount": ["300", "300.10"],
    "version": ["7", ""],
    "createdAt": ["1699999999000", ""],
    "updatedAt": ["1700000000000", b"1700000000001"],
    "history": ['[{"at": 1, "from": null, "to": "queued", "detail": {}}]'],
    **{name: ["internal", "1"] for name in HIDDEN},
}


def _reference_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reference_body(fields: dict) -> str:
    """The body as built before the fast path: the schema's own dump, the plain formula."""
    raw = json.loads(fields.get("record") or "[]")
    kind, at = fields["type"], int(fields.get("at") or 0)
    if kind.startswith("checkout."):
        pairs = dict(zip(raw[::2], raw[1::2])) if isinstance(raw, list) else raw
        data = SCHEMA.dump({**pairs, "sequence": int(fields.get("sequence") or 0)})
        data = {k: v for k, v in data.items() if k not in HIDDEN}
    else:
        data = raw
    return json.dumps({"type": kind, "timestamp": _reference_iso(at), "data": data}, ensure_ascii=False,
                      separators=(",", ":"))


def _records(n: int, seed: int = 23):
    rng = random.Random(seed)
    names = list(VALUES)
    for _ in range(n):
        chosen = [name for name in names if rng.random() < 0.5]
        yield {name: rng.choice(VALUES[name]) for name in chosen}


def test_the_fast_dump_is_the_schemas_dump_for_varied_records():
    assert _dump_event_data is not SCHEMA.dump  # the fast path is the one in use
    for record in _records(3000):
        record["sequence"] = random.Random(len(record)).randint(1, 9)
        assert _dump_event_data(dict(record)) == SCHEMA.dump(dict(record)), record
        assert list(_dump_event_data(dict(record))) == list(SCHEMA.dump(dict(record)))  # same order


def test_the_body_is_byte_for_byte_the_plain_formulas():
    rng = random.Random(5)
    for i, record in enumerate(_records(2000, seed=7)):
        stored = [(k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v)
                  for k, v in record.items()]
        as_list = [x for pair in stored for x in pair]
        fields = {"type": rng.choice(["checkout.paying", "checkout.succeeded", "checkout.needs_review"]),
                  "at": str(rng.randrange(0, 4_102_444_800_000)), "sequence": str(rng.randint(1, 50)),
                  "record": json.dumps(as_list if i % 2 else dict(stored), ensure_ascii=bool(i % 3))}
        assert build_body(fields) == _reference_body(fields), fields
        assert _body(fields, json.loads(fields["record"])) == _reference_body(fields)
    other = {"type": "webhook.endpoint_disabled", "at": "1700000000000", "record": json.dumps({"endpointId": "e1"})}
    assert build_body(other) == _reference_body(other)


def test_the_timestamp_is_isoformats_for_any_millisecond_to_2100():
    rng = random.Random(1)
    moments = [0, 1, 999, 1000, 1_700_000_000_000, 1_700_000_000_999, 4_102_444_799_999]
    moments += [rng.randrange(0, 4_102_444_800_000) for _ in range(50_000)]
    moments += [1_700_000_000_000 + rng.randrange(0, 3000) for _ in range(2000)]  # many in one second
    assert [_iso(ms) for ms in moments] == [_reference_iso(ms) for ms in moments]


def test_a_schema_the_fast_path_does_not_describe_gets_its_own_dump():
    class Other(CheckoutEventDataSchema):
        from marshmallow import post_dump

        @post_dump
        def _more(self, data, **_kwargs):
            return {**data, "extra": 1}

    other = Other()
    assert outbox._event_data_dumper(other) == other.dump
