"""The HTTP API's other bodies (``worker/web/api.py``, ``worker/web/webhooks_api.py``): answers, errors,
the review and webhook requests, and the webhooks sent to merchants; the OpenAPI document
(``worker/web/openapi.py``) is generated from them.

``ResolveRequestSchema`` is what ``worker.flows.review`` validates a resolution with. The webhook
endpoint and replay requests are checked by ``worker.webhooks`` (a URL is resolved and its
addresses judged, a time may be ISO-8601 or unix seconds): their schemas here describe them.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from schemas._rules import FullMatch, digits_at_most_pattern
from schemas.record import (
    STATES,
    CheckoutEventDataSchema,
    CheckoutRecordSchema,
    EpochMillis,
    ReviewItemSchema,
    Yen,
)

__all__ = ["AcceptedSchema", "ErrorSchema", "ReviewQueueSchema", "QueryAnswerSchema", "OrphanSchema",
           "ResolveRequestSchema", "DismissRequestSchema", "WebhookEndpointRequestSchema", "WebhookEndpointSchema",
           "WebhookEndpointCreatedSchema", "WebhookSecretTailSchema", "ReplayRequestSchema", "ReplayResultSchema",
           "WebhookAttemptSchema", "WebhookAttemptsSchema", "CheckoutEventSchema",
           "EndpointDisabledEventSchema", "OpsFormSchema", "OpsResolveFormSchema", "EVENT_TYPES", "REASON_MAX", "OPERATOR_MAX",
           "AMOUNT_RULE", "ApiResolveRequestSchema", "ApiDismissRequestSchema", "AuditEntrySchema"]

# worker.webhooks.endpoints.EVENT_TYPES (a unit test keeps the two equal)
EVENT_TYPES = tuple(f"checkout.{s}" for s in ("paying", "succeeded", "partially_paid", "failed", "declined",
                                               "rejected", "unknown", "needs_review")) + (
    "webhook.endpoint_disabled",)
REASON_MAX = 500
AMOUNT_RULE = "the amount paid in yen, as digits, e.g. 1500"
OPERATOR_MAX = 100


class AcceptedSchema(Schema):
    """The answer to ``POST /v1/checkouts`` (202)."""

    class Meta:
        unknown = RAISE

    tradeNo = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(STATES),
                          metadata={"description": "queued, or further along for a repeated request."})
    statusUrl = fields.String(required=True, metadata={"format": "uri",
                                                       "description": "GET it for the record."})


class ErrorSchema(Schema):
    """Every error answer of the API: an RFC 9457 problem document (``application/problem+json``);
    ``errors`` says which fields and why, ``error`` repeats ``detail`` for older clients."""

    class Meta:
        unknown = RAISE

    type = fields.String(required=True, metadata={"description": "Always about:blank: the status says what kind."})
    title = fields.String(required=True, metadata={"description": "The status's RFC 9110 name."})
    status = fields.Integer(required=True, metadata={"description": "The HTTP status."})
    detail = fields.String(required=True, metadata={"description": "What went wrong, for a person."})
    instance = fields.String(metadata={"description": "The request's path."})
    error = fields.String(required=True, metadata={"description": "The same as detail (the name it had before)."})
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), metadata={
        "description": "422 (and 409): field name -> messages; a message states the rule, never the "
                       "value sent."})
    tradeNo = fields.String(metadata={"description": "503 on POST /v1/checkouts: retry with this tradeNo."})


class OrphanSchema(Schema):
    """A paid report (callback or query answer) for a tradeNo that has no job, kept for a person."""

    class Meta:
        unknown = EXCLUDE

    tradeNo = fields.String(required=True)
    source = fields.String(required=True, metadata={"description": "callback or query."})
    status = fields.String(required=True, metadata={"description": "The transaction status reported."})
    paidAmount = fields.String(metadata={"description": "The amount reported, as the gateway wrote it."})
    platFormTradeNo = fields.String(metadata={"description": "The gateway's own order number."})
    reports = fields.Integer(required=True, strict=True, validate=validate.Range(min=1),
                             metadata={"description": "How many such reports came."})
    firstAt = EpochMillis(required=True)
    lastAt = EpochMillis(required=True)


class ReviewQueueSchema(Schema):
    """``GET /v1/review``: the jobs flagged for a person, oldest flag first."""

    class Meta:
        unknown = RAISE

    count = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))
    items = fields.List(fields.Nested(ReviewItemSchema), required=True)
    orphans = fields.List(fields.Nested(OrphanSchema), required=True, metadata={
        "description": "Money the gateway reported for a tradeNo with no job, oldest first: a person "
                       "looks and dismisses it (POST /v1/review/orphans/<tradeNo>/dismiss)."})


class QueryAnswerSchema(Schema):
    """``POST /v1/checkouts/<tradeNo>/query``: what the gateway said and what it changed."""

    class Meta:
        unknown = RAISE

    gateway = fields.String(required=True, metadata={
        "description": "The transaction status the gateway reported, or \"not known\"."})
    result = fields.String(required=True, metadata={
        "description": "The state the job moved to, or unchanged, orphan."})
    paidAmount = Yen(metadata={"description": "The amount the gateway reported paid, in yen."})
    record = fields.Nested(CheckoutRecordSchema, required=True)


def _text_error(message: str) -> dict:
    return {"required": message, "null": message, "invalid": message}


# Something besides white space. White space is spelled out, not \s: Python's \s (str.isspace)
# and ECMA-262's differ (U+001C-U+001F, U+0085, U+FEFF), and the document's pattern is this one.
_SPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_NOT_BLANK = rf"^[\s\S]*[^{_SPACE}][\s\S]*$"


def _said(limit: int, message: str) -> list:
    return [validate.Length(max=limit, error=message), FullMatch(_NOT_BLANK, message)]


class ResolveRequestSchema(Schema):
    """``POST /v1/checkouts/<tradeNo>/resolve``: who settles a job in review, how and why, and (as
    ``succeeded``) the amount they confirmed paid. Conditional: ``If-Match`` with the ETag of the
    record the operator decided on."""

    class Meta:
        unknown = EXCLUDE  # a form or a body may carry more (the ops page's CSRF token)

    state = fields.String(required=True, validate=validate.OneOf(("succeeded", "failed"),
                                                                 error="must be succeeded or failed"),
                          error_messages=_text_error("must be succeeded or failed"))
    reason = fields.String(required=True, validate=_said(REASON_MAX, f"required: why, in 1 to {REASON_MAX} "
                                                                     "characters"),
                           error_messages=_text_error(f"required: why, in 1 to {REASON_MAX} characters"),
                           metadata={"description": "Why (kept in the job's history)."})
    operator = fields.String(required=True, validate=_said(OPERATOR_MAX, "required: who decides, in 1 to "
                                                                         f"{OPERATOR_MAX} characters"),
                             error_messages=_text_error(f"required: who decides, in 1 to {OPERATOR_MAX} "
                                                        "characters"),
                             metadata={"description": "Who decides (kept in the job's history)."})
    amount = fields.String(validate=FullMatch(r"^[1-9][0-9]*$", AMOUNT_RULE),
                           error_messages=_text_error(AMOUNT_RULE), metadata={
                               "description": "With succeeded, required: the amount in yen the operator confirmed "
                                              "paid (recorded as resolvedAmount); refused with failed."})

    @validates_schema
    def _amount_with_succeeded(self, data: dict, **_kwargs) -> None:
        if data.get("state") == "succeeded" and not data.get("amount"):
            raise ValidationError(f"required with succeeded: {AMOUNT_RULE}", "amount")
        if data.get("state") == "failed" and data.get("amount"):
            raise ValidationError("only with succeeded: a failed payment confirms no amount", "amount")


class DismissRequestSchema(Schema):
    """``POST /v1/review/orphans/<tradeNo>/dismiss``: who looked at money reported for a tradeNo
    with no job, and why it needs nothing more (e.g. refunded at the gateway)."""

    class Meta:
        unknown = EXCLUDE

    reason = ResolveRequestSchema._declared_fields["reason"]
    operator = ResolveRequestSchema._declared_fields["operator"]


_IGNORED_OPERATOR = fields.String(metadata={
    "description": "Ignored: who resolved or dismissed is the API key (recorded as key:<id>), never a "
                   "field of the request. Accepted so that clients written before keys keep working."})


class ApiResolveRequestSchema(Schema):
    """``POST /v1/checkouts/<tradeNo>/resolve`` as the HTTP API takes it: who decides is the key."""

    class Meta:
        unknown = EXCLUDE

    state = ResolveRequestSchema._declared_fields["state"]
    reason = ResolveRequestSchema._declared_fields["reason"]
    amount = ResolveRequestSchema._declared_fields["amount"]
    operator = _IGNORED_OPERATOR


class ApiDismissRequestSchema(Schema):
    """``POST /v1/review/orphans/<tradeNo>/dismiss`` as the HTTP API takes it: who is the key."""

    class Meta:
        unknown = EXCLUDE

    reason = ResolveRequestSchema._declared_fields["reason"]
    operator = _IGNORED_OPERATOR


class AuditEntrySchema(Schema):
    """One entry of the audit log (``GET /v1/audit``), newest first."""

    class Meta:
        unknown = RAISE

    id = fields.String(required=True, metadata={"description": "The entry's id; page on with before=<id>."})
    at = EpochMillis(required=True)
    actor = fields.String(required=True, metadata={
        "description": "Who: the principal's label (key:<id>, operator:<name>, cli:<user>, token:VEXORA_API_TOKEN) "
                       "or anonymous (a failed login)."})
    actorKind = fields.String(required=True, metadata={"description": "key, operator, token, cli, or empty."})
    actorAccount = fields.String(required=True, metadata={"description": "The account the actor acts for, or *."})
    action = fields.String(required=True, metadata={
        "description": "review.resolve, review.query, review.dismiss, webhooks.replay, endpoint.add|disable|"
                       "enable|rotate, key.create|revoke, operator.add|disable, login, login.failed."})
    target = fields.String(required=True, metadata={"description": "A tradeNo, an endpoint, key or operator id."})
    account = fields.String(required=True, metadata={"description": "The account acted on (empty: none)."})
    address = fields.String(required=True, metadata={"description": "The request's client address (empty: the shell)."})
    before = fields.Dict(required=True, allow_none=True, metadata={"description": "The record before (no secret)."})
    after = fields.Dict(required=True, allow_none=True, metadata={"description": "The record after (no secret)."})
    detail = fields.Dict(required=True, allow_none=True)


# The endpoint's rules as the document states them (worker.webhooks.endpoints.check_url and
# worker.domain.webhook_secret.secret_bytes enforce them; tests/unit/test_openapi.py proves that
# what these patterns allow those accept).
ENDPOINT_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@\[\]]+(?:[/?#]\S*)?$"
# whsec_ and base64 of at least 16 bytes: 20 characters and then 2 to 3, or 4 and more
WEBHOOK_SECRET_PATTERN = r"^whsec_(?:[A-Za-z0-9+/]{4}){5,}(?:[A-Za-z0-9+/]{2,4})={0,2}$"
ACCOUNT_PATTERN = "^[a-z0-9-]{1,32}$"  # worker.domain.access.ACCOUNT_ID


class WebhookEndpointRequestSchema(Schema):
    """``POST /v1/webhooks/endpoints``."""

    class Meta:
        unknown = EXCLUDE

    url = fields.String(required=True, validate=validate.Length(max=2048), metadata={
        "format": "uri", "pattern": ENDPOINT_URL_PATTERN,
        "example": "https://merchant.example/vexora/webhooks",
        "description": "An absolute http or https URL with a host, at most 2048 characters. Its host must "
                       "resolve (at the time it is added), and every address it resolves to must be public "
                       "(globally routable, not multicast): loopback, private and link-local hosts are "
                       "refused (422) unless VEXORA_WEBHOOK_ALLOW_PRIVATE (the sandbox, tests)."})
    types = fields.List(fields.String(validate=validate.OneOf(EVENT_TYPES)), metadata={
        "description": "The event types it receives; none or empty: all."})
    secret = fields.String(validate=FullMatch(WEBHOOK_SECRET_PATTERN, "a webhook secret is whsec_ followed by "
                                                                      "base64 of at least 16 bytes"),
                           metadata={"description": "Its signing secret, whsec_ and the base64 of at least 16 "
                                                    "bytes of key; generated when absent."})
    account = fields.String(validate=FullMatch(ACCOUNT_PATTERN, "an account id: [a-z0-9-]{1,32}"), metadata={
        "description": "The account whose events it receives: required with a key for every account (*), "
                       "and one the deployment knows; else the key's own (or absent)."})


class WebhookSecretTailSchema(Schema):
    """One of an endpoint's signing secrets, by its tail."""

    class Meta:
        unknown = RAISE

    secretEnd = fields.String(required=True, metadata={"description": "The secret's last 4 characters."})
    expiresAt = EpochMillis(required=True, allow_none=True, metadata={
        "description": "null: current; else it also signs until then (a rotation's grace period)."})


class WebhookEndpointSchema(Schema):
    """A webhook endpoint as listed: its secrets by their last 4 characters."""

    class Meta:
        unknown = RAISE

    id = fields.String(required=True)
    account = fields.String(required=True, metadata={"description": "The account whose jobs' events it receives."})
    url = fields.String(required=True, metadata={"format": "uri"})
    types = fields.List(fields.String(validate=validate.OneOf(EVENT_TYPES)), required=True)
    enabled = fields.Boolean(required=True)
    disabledReason = fields.String(required=True, allow_none=True)
    disabledAt = EpochMillis(allow_none=True, metadata={"description": "When it was last disabled."})
    failingSince = EpochMillis(required=True, allow_none=True)
    createdAt = EpochMillis(required=True)
    secrets = fields.List(fields.Nested(WebhookSecretTailSchema), required=True)


class WebhookEndpointCreatedSchema(WebhookEndpointSchema):
    """A new (or rotated) endpoint: the only answer that shows its secret."""

    secret = fields.String(required=True, metadata={"description": "The new signing secret, shown once."})


# Times as the HTTP API takes them, stated for the document. The range is the Unix epoch up to the
# end of 9999 (UTC); a date-time's year is given as 1971-9998 so that any offset keeps it inside.
TIME_MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
TIME_MAX_MS = TIME_MAX_SECONDS * 1000 + 999
DATE_TIME_PATTERN = (r"^(?:197[1-9]|19[89][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
                     r"-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
                     r"(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$")
DATE_TIME = {"type": "string", "format": "date-time", "pattern": DATE_TIME_PATTERN,
             "description": "An RFC 3339 date-time with its offset (Z or +hh:mm)."}
EPOCH_MS_TEXT = {"type": "string", "pattern": "^(?:0|" + digits_at_most_pattern(TIME_MAX_MS)[4:],
                 "description": f"Epoch milliseconds as digits, 0 to {TIME_MAX_MS}."}
UNIX_SECONDS = {"type": "number", "minimum": 0, "maximum": TIME_MAX_SECONDS,
                "description": f"Unix seconds (a fraction allowed), 0 to {TIME_MAX_SECONDS}."}
UNIX_SECONDS_TEXT = {"type": "string",
                     "pattern": "^(?:0|" + digits_at_most_pattern(TIME_MAX_SECONDS - 1)[4:-2] + r")(?:\.[0-9]{1,3})?$",
                     "description": "Unix seconds as digits, with up to 3 decimals."}
_REPLAY_TIME = {"anyOf": [UNIX_SECONDS, DATE_TIME, UNIX_SECONDS_TEXT]}


class ReplayRequestSchema(Schema):
    """``POST /v1/webhooks/replay``."""

    class Meta:
        unknown = EXCLUDE

    since = fields.Raw(required=True, metadata={**_REPLAY_TIME, "example": "2026-12-03T09:00:00Z", "description":
        "Events from then: unix seconds (a number, or its digits) or an RFC 3339 date-time; from the Unix "
        f"epoch to the end of 9999 ({TIME_MAX_SECONDS} s). Anything else is 422."})
    until = fields.Raw(metadata={**_REPLAY_TIME, "description":
        "Events until then, as since; absent or null: until now."})
    endpoint = fields.String(metadata={"description": "One endpoint's id; default: every enabled one."})
    all = fields.Boolean(metadata={"description": "Delivered events too, not only failed ones."})


class ReplayResultSchema(Schema):
    class Meta:
        unknown = RAISE

    scheduled = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))


class WebhookAttemptSchema(Schema):
    """One delivery attempt."""

    class Meta:
        unknown = RAISE

    at = EpochMillis(required=True)
    endpoint = fields.String(required=True)
    webhookId = fields.String(required=True)
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    sequence = fields.Integer(required=True, strict=True)
    attempt = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    status = fields.Raw(required=True, metadata={"type": ["integer", "string"],
                                                 "description": "The HTTP status, or what failed "
                                                                "(timeout, connection...)."})
    latencyMs = fields.Integer(required=True, strict=True)
    reason = fields.String(required=True, metadata={
        "description": "A short reason of our own (the status in words, or what failed); the receiver's "
                       "answer is never kept."})


class WebhookAttemptsSchema(Schema):
    """``GET /v1/checkouts/<tradeNo>/webhooks``."""

    class Meta:
        unknown = RAISE

    tradeNo = fields.String(required=True)
    attempts = fields.List(fields.Nested(WebhookAttemptSchema), required=True)


class CheckoutEventSchema(Schema):
    """A ``checkout.*`` webhook's body (Standard Webhooks)."""

    class Meta:
        unknown = RAISE

    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES[:-1]))
    timestamp = fields.String(required=True, metadata={"format": "date-time", "description":
                                                       "When the change was made (UTC, ms)."})
    data = fields.Nested(CheckoutEventDataSchema, required=True)


class EndpointDisabledEventSchema(Schema):
    """``webhook.endpoint_disabled``, sent to the other endpoints."""

    class Meta:
        unknown = RAISE

    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES[-1:]))
    timestamp = fields.String(required=True, metadata={"format": "date-time"})
    data = fields.Dict(required=True, metadata={"description": "{endpointId, url, reason}"})



class OpsFormSchema(Schema):
    """A POST of the operations page: its CSRF token (HMAC of the user name under the API token)."""

    class Meta:
        unknown = EXCLUDE

    csrf = fields.String(required=True, metadata={"description": "The token the page's form carries."})


class OpsResolveFormSchema(ResolveRequestSchema, OpsFormSchema):
    """The operations page's resolve form and its confirmation."""

    class Meta:
        unknown = EXCLUDE

    version = fields.String(required=True, metadata={
        "description": "The record's version the form showed (hidden): refused when the job changed since."})
