"""The public record of a checkout job: what ``get_checkout``, ``GET /v1/checkouts/<tradeNo>``, the
CLI's ``status``, the review queue, the ``/ops`` page and every webhook's ``data`` show.

``CheckoutRecordSchema().dump(stored)`` takes the record as the store holds it — the Redis hash's
text fields (``bytes`` or ``str``; the store's decoded values also do) plus ``history`` — and
gives the typed record:

- numbers are JSON numbers: ``attempts``, ``httpStatus``, ``latencyMs``, ``reconcileChecks``,
  ``version``;
- every time is an integer of milliseconds since the Unix epoch (UTC), and every time field is
  named ``…At``: ``createdAt``, ``updatedAt``, ``callbackAt``, ``reviewAt``, ``resolvedAt``,
  ``history[].at`` (the events stream's ``at`` is the same clock);
- every amount is yen as the gateway's integer string (``"1500"``): ``amount`` (the order),
  ``paidAmount`` (what the gateway reports paid, ``"1500.00"`` on a callback is ``"1500"``),
  ``resolvedAmount`` (what an operator confirmed paid); the
  gateway's own text stays apart in ``gatewayPaidAmount``;
- payer data only as the masked ``contact`` written at enqueue (``worker/domain/masking.py``);
- internal bookkeeping (``HIDDEN``: leases, the payer-IP hash, the reconciler's next check, the
  payload…) is never shown: dump writes declared fields only;
- a field the job does not have is absent, never ``null``; ``needsReview`` is always there.

Dumping a dumped record gives it back unchanged, so a reader may pass either. ``load`` checks a
record as served (``unknown = RAISE``: a field this schema does not declare is refused).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from marshmallow import RAISE, Schema, fields, post_dump, pre_dump, validate

from schemas._rules import FullMatch
from schemas.checkout import TRADE_NO_RULES

__all__ = ["CheckoutRecordSchema", "HistoryEntrySchema", "ContactSchema", "CheckoutEventDataSchema",
           "ReviewItemSchema", "STATES", "HIDDEN", "EpochMillis", "Yen"]

# worker.domain.states.ALL (schemas import nothing from worker; a unit test keeps the two equal)
STATES = ("queued", "submitting", "paying", "succeeded", "partially_paid", "failed", "rejected",
          "declined", "unknown")
# Fields a stored record may hold that no reader shows.
HIDDEN = frozenset({"payload", "fingerprint", "leaseToken", "leaseUntil", "webhookSeq", "flaggedReason",
                    "ipHash", "ipCounted", "nextCheckAt"})
_JSON_TEXT = ("contact", "errors")  # stored as JSON text in the hash


def _text(value: object) -> object:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class _Int(fields.Integer):
    """An integer, stored as text; stored ``""`` (or nothing usable) is absent."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None or value == "" or isinstance(value, bool):
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            try:
                return int(float(value))
            except (TypeError, ValueError, OverflowError):
                return None


class _Flag(fields.Boolean):
    """A boolean, stored as ``"true"``/``"false"``."""

    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, str):
            return value in self.truthy
        return None if value is None else bool(value)


class EpochMillis(_Int):
    """A time: integer milliseconds since the Unix epoch, UTC."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, validate=validate.Range(min=0), **kwargs)
        self.metadata = {"format": "int64", **self.metadata}


class Yen(fields.String):
    """An amount of yen as the gateway's integer string, e.g. ``"1500"`` (``"1500.00"`` reads
    ``"1500"``); a fraction, never seen in yen, keeps its significant decimals. Stored text that
    is not a number is absent."""

    PATTERN = r"^-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$"

    def __init__(self, **kwargs):
        super().__init__(validate=FullMatch(self.PATTERN, "must be yen as digits, e.g. 1500"), **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None or isinstance(value, bool):
            return None
        try:
            number = Decimal(str(value).strip())
        except (InvalidOperation, ValueError):
            return None
        if not number.is_finite() or number.adjusted() > 15:
            return None  # not an amount of yen anyone paid; gatewayPaidAmount keeps the text
        if number == number.to_integral_value():
            return str(int(number))
        return format(number.normalize(), "f")


def _state(**kwargs) -> fields.String:
    return fields.String(validate=validate.OneOf(STATES), **kwargs)


class ContactSchema(Schema):
    """The payer, masked when the job was enqueued (``worker.domain.masking.mask_contact``); only the
    fields the payload had."""

    class Meta:
        unknown = RAISE

    mobile = fields.String(metadata={"description": "Masked: the first 3 and last 4 digits.",
                                     "example": "090****5678"})
    email = fields.String(metadata={"description": "Masked: the first character and the domain.",
                                    "example": "t***@example.com"})
    firstname = fields.String(metadata={"description": "Masked: the first character.", "example": "タ**"})
    lastname = fields.String(metadata={"description": "Masked: the first character.", "example": "ヤ**"})
    ipAddress = fields.String(metadata={"description": "Masked: the first two parts of an IPv4 address, "
                                                       "the first group of an IPv6 one.",
                                        "example": "133.0.*.*"})


class HistoryEntrySchema(Schema):
    """One entry of a job's history: a move (``from`` → ``to``) or a note (both ``null``)."""

    class Meta:
        unknown = RAISE

    at = EpochMillis(required=True, metadata={"description": "When, in ms since the Unix epoch (UTC)."})
    from_ = _state(data_key="from", attribute="from", required=True, allow_none=True,
                   metadata={"description": "The state moved from; null for the creation and for notes."})
    to = _state(required=True, allow_none=True,
                metadata={"description": "The state moved to; null for a note."})
    detail = fields.Dict(keys=fields.String(), required=True, metadata={
        "description": "What happened, e.g. reason, source (create, query, callback, operator), status, "
                       "code, latencyMs, via, review, operator and why (a resolution), kind (a note: "
                       "needs_review, lease_lost, orphan_report, review_resolved...)."})


class CheckoutRecordSchema(Schema):
    """A checkout job's public record (see the module docstring for the formats)."""

    class Meta:
        unknown = RAISE

    tradeNo = fields.String(required=True, validate=TRADE_NO_RULES, metadata={
        "description": "The job's order number (its idempotency key)."})
    account = fields.String(required=True, dump_default="default", metadata={
        "description": "The merchant account the job belongs to, fixed when it was created (README, "
                       "Accounts); a job stored before accounts existed belongs to \"default\".",
        "example": "default"})
    state = _state(required=True, metadata={"description": "The job's state (README, Job states)."})
    amount = Yen(metadata={"description": "The order's amount in yen, as enqueued (absent when the "
                                          "payload had no usable amount)."})
    paidAmount = Yen(metadata={"description": "What the gateway reports paid, in yen."})
    gatewayPaidAmount = fields.String(metadata={
        "description": "The paid amount exactly as the gateway wrote it, e.g. \"1500.00\"."})
    contact = fields.Nested(ContactSchema, required=True, metadata={"description": "The payer, masked."})
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), metadata={
        "description": "Why a rejected job was refused: field name -> messages (never the value)."})
    attempts = _Int(required=True, strict=True, validate=validate.Range(min=0), metadata={
        "description": "Requests sent to the gateway to create the checkout."})
    platFormTradeNo = fields.String(metadata={"description": "The gateway's own order number."})
    paymentLink = fields.String(metadata={"description": "Where the payer pays.", "format": "uri"})
    gatewayCode = fields.String(metadata={"description": "The request-level code of the gateway's last "
                                                         "answer, e.g. 0000, 5000, 8000."})
    gatewayStatus = fields.String(metadata={"description": "The transaction status the gateway last "
                                                           "reported, e.g. 0015, 0000, 0001, 00029; "
                                                           "empty when its answer had none."})
    message = fields.String(metadata={"description": "The gateway's (or the transport's) last message."})
    httpStatus = _Int(strict=True, metadata={"description": "The HTTP status of a refused or failed request."})
    latencyMs = _Int(strict=True, validate=validate.Range(min=0), metadata={
        "description": "How long the last submit took, all its retries included, in ms."})
    needsReview = _Flag(required=True, dump_default=False, metadata={
        "description": "Flagged for a person (the review queue)."})
    reviewReason = fields.String(metadata={"description": "Why it was flagged."})
    reviewAt = EpochMillis(metadata={"description": "When it was last flagged."})
    reconcileChecks = _Int(strict=True, validate=validate.Range(min=0), metadata={
        "description": "How many times the reconciler has asked the gateway about it."})
    callbackAt = EpochMillis(metadata={"description": "When the last gateway callback was applied."})
    resolvedBy = fields.String(metadata={"description": "The operator who resolved it (review)."})
    resolvedReason = fields.String(metadata={"description": "Why, as the operator wrote it."})
    resolvedAt = EpochMillis(metadata={"description": "When it was resolved."})
    resolvedAmount = Yen(metadata={"description": "The amount in yen the operator confirmed paid, resolving "
                                                  "it as succeeded."})
    version = _Int(strict=True, validate=validate.Range(min=0), metadata={
        "description": "Grows with every change of the record or its history; GET's ETag is it, quoted, "
                       "and a resolve is conditional on it (If-Match)."})
    createdAt = EpochMillis(required=True, metadata={"description": "When it was enqueued."})
    updatedAt = EpochMillis(required=True, metadata={"description": "When its state last changed."})
    history = fields.List(fields.Nested(HistoryEntrySchema), required=True, metadata={
        "description": "Every move and note, oldest first."})

    @pre_dump
    def _from_storage(self, record: Mapping, **_kwargs) -> dict:
        data = {_text(k): _text(v) for k, v in record.items()}
        for key in _JSON_TEXT:
            if isinstance(data.get(key), str):
                data[key] = json.loads(data[key]) if data[key] else None
        if "paidAmount" in data:
            # the stored paidAmount is the gateway's text; a dumped record already has both
            data.setdefault("gatewayPaidAmount", data["paidAmount"])
        if data.get("contact") is None and "contact" in data:
            data["contact"] = {}
        return data

    @post_dump
    def _absent_not_null(self, data: dict, **_kwargs) -> dict:
        return {k: v for k, v in data.items() if v is not None}


class CheckoutEventDataSchema(CheckoutRecordSchema):
    """A ``checkout.*`` webhook's ``data``: the public record without its history, and the job's
    event ``sequence``."""

    class Meta:
        unknown = RAISE
        exclude = ("history",)

    sequence = _Int(required=True, strict=True, validate=validate.Range(min=1), metadata={
        "description": "Grows with every event of the job: drop an event whose sequence is not above "
                       "the last you applied."})


class ReviewItemSchema(CheckoutRecordSchema):
    """One job of the review queue: the public record without its history and without even the
    masked contact (a person decides on amounts and answers, not on who paid), and its age."""

    class Meta:
        unknown = RAISE
        exclude = ("history", "contact")

    ageSeconds = _Int(required=True, strict=True, validate=validate.Range(min=0), metadata={
        "description": "Seconds since the job was enqueued."})
