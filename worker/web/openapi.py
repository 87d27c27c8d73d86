"""The OpenAPI 3.1 document of the web app, served at ``GET /v1/openapi.json``.

Generated with apispec's ``MarshmallowPlugin`` from the schemas the code validates and shows
with (``schemas/``): every constraint in the document — lengths, patterns, enums, formats, the
settings' allowed codes and maximum amount — is read from a marshmallow validator, so the
document cannot drift from the validation. ``validate.Email`` and ``validate.URL``, which apispec
does not read, become ``format: email`` and ``format: uri`` here. The checkout request is
the schema instance built from the settings (``worker.runtime.wiring.checkout_schema``). What no
marshmallow validator can say is stated here from the rule's own constants: an amount's maximum
as one ``pattern`` (``digits_at_most_pattern``), the ipAddress rule as the format ``public-ip``,
the resolve's amount-with-succeeded rule as a ``oneOf``, the webhook and audit times and their range.

The paths are the app's JSON and public routes (a test pins them): the ``/ops`` pages are HTML for
operators who sign in, not part of the API, and are left out on purpose. Operations carry an
``operationId`` and ``links`` (create -> read, query, attempts; read -> resolve with its ETag as
If-Match; the endpoint list -> disable, enable, rotate), so a generated client or a fuzzer can get
from a created resource to its actions. ``webhooks`` describes the events sent to merchants.
"""

from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields, validate

from schemas import (
    CallbackSchema,
    CheckoutEventDataSchema,
    CheckoutRecordSchema,
    CheckoutRequestSchema,
    ContactSchema,
    HistoryEntrySchema,
    ReviewItemSchema,
)
from schemas.api import (
    AcceptedSchema,
    ApiDismissRequestSchema,
    ApiResolveRequestSchema,
    AuditEntrySchema,
    CheckoutEventSchema,
    EndpointDisabledEventSchema,
    ErrorSchema,
    OrphanSchema,
    QueryAnswerSchema,
    ReplayRequestSchema,
    ReplayResultSchema,
    ReviewQueueSchema,
    WebhookAttemptSchema,
    WebhookAttemptsSchema,
    WebhookEndpointCreatedSchema,
    WebhookEndpointRequestSchema,
    WebhookEndpointSchema,
    WebhookSecretTailSchema,
)
from schemas.api import (
    ACCOUNT_PATTERN,
    DATE_TIME,
    EPOCH_MS_TEXT,
    WEBHOOK_SECRET_PATTERN,
)
from schemas._rules import digits_at_most_pattern
from schemas.record import STATES
from schemas.checkout import TRADE_NO_RULES

__all__ = ["build_openapi", "COMPONENTS", "BATCH_MAX_ITEMS", "BATCH_MAX_BYTES"]

# the batch form of POST /v1/checkouts: at most this many checkouts, and bytes, in one request
# (the server refuses more with 413; worker.web.api reads them from here)
BATCH_MAX_ITEMS = 500
BATCH_MAX_BYTES = 4 * 1024 * 1024

# component name -> schema; CheckoutRequest is the settings' instance, given to build_openapi
COMPONENTS: dict[str, type[Schema]] = {
    "Contact": ContactSchema,
    "HistoryEntry": HistoryEntrySchema,
    "CheckoutRecord": CheckoutRecordSchema,
    "CheckoutEventData": CheckoutEventDataSchema,
    "ReviewItem": ReviewItemSchema,
    "Accepted": AcceptedSchema,
    "Error": ErrorSchema,
    "Orphan": OrphanSchema,
    "ReviewQueue": ReviewQueueSchema,
    "QueryAnswer": QueryAnswerSchema,
    "ResolveRequest": ApiResolveRequestSchema,
    "DismissRequest": ApiDismissRequestSchema,
    "AuditEntry": AuditEntrySchema,
    "WebhookSecretTail": WebhookSecretTailSchema,
    "WebhookEndpointRequest": WebhookEndpointRequestSchema,
    "WebhookEndpoint": WebhookEndpointSchema,
    "WebhookEndpointCreated": WebhookEndpointCreatedSchema,
    "ReplayRequest": ReplayRequestSchema,
    "ReplayResult": ReplayResultSchema,
    "WebhookAttempt": WebhookAttemptSchema,
    "WebhookAttempts": WebhookAttemptsSchema,
    "CheckoutEvent": CheckoutEventSchema,
    "EndpointDisabledEvent": EndpointDisabledEventSchema,
    "Callback": CallbackSchema,
}

DESCRIPTION = """Enqueue Vexora checkouts and follow them; gateway callbacks in; signed webhooks out.

Records: every time is an integer of milliseconds since the Unix epoch (UTC); every amount is yen
as the gateway's integer string ("1500"; the gateway's own text of a paid amount is
gatewayPaidAmount); payer data only masked, in contact; a field a job does not have is absent.

Errors: every error answer of every /v1 route (and /metrics, /healthz, unknown paths and
methods) is an RFC 9457 problem document, Content-Type application/problem+json: {type
(about:blank), title, status, detail, instance, error} (the schema Error; error repeats detail
for older clients). A 422 (and a 409) adds errors at the top level: field name -> its rules,
never the values sent; a 422 stores nothing. A 503 on POST /v1/checkouts adds tradeNo, to retry
with. A body too large for /v1 is a 413 problem document too; only POST /vexora/notify, the
gateway's callback (not in this document), answers text/plain, as the gateway expects.

Access: every /v1 route but this document needs Authorization: Bearer <API key> (vexora-checkout
keys create). A key acts for one account (or every account, *) and holds scopes; each operation's
security names the scope it needs. No key, an unknown or a revoked one: 401. A key without the
scope: 403 naming it (scope). A job or endpoint of another account: 404, the same answer as one
that does not exist. VEXORA_API_TOKEN still works, deprecated, as a key with every scope on the
account default.

Rules: the document states every rule the server checks a request with, so a request valid here is
refused only for what it cannot show: a tradeNo already used by another payload (409), a webhook
host that does not resolve to public addresses, a job not in review. The format public-ip (the
checkout's ipAddress) means an IP address that is globally routable; amounts are whole yen up to
the configured maximum, written into their pattern.

Not in this document: the /ops pages (HTML for operators signed in with a session cookie, or
behind the SSO proxy) are not part of the API and are left out on purpose; docs/console.md and
the README's "Operate" describe them."""

SCOPE_DESCRIPTION = (
    "An API key, vxk_<id>_<secret> (vexora-checkout keys create; stored as a SHA-256 hash only), or "
    "the deprecated VEXORA_API_TOKEN (every scope on the account default). Scopes, named in each "
    "operation's security: checkouts:write (enqueue), checkouts:read (read jobs, their webhooks, the "
    "review queue), review:write (query, resolve, dismiss), webhooks:admin (endpoints, replay), "
    "audit:read (the audit log).")


def _bearer(scope: str) -> list[dict]:
    """An operation's security: a bearer key holding ``scope`` (OpenAPI 3.1 lets a non-OAuth
    scheme name the roles it needs in the array)."""
    return [{"bearer": [scope]}]


def _forbidden(scope: str) -> dict:
    return _error(f"The key lacks the scope {scope} (the answer's scope names it)")


def _formats(self, field, ret, **_kwargs) -> dict:
    """Validators apispec does not read: ``validate.Email``, ``validate.URL``, and the amount's
    maximum (a ``Range`` over digits that carries its ``pattern``: the field's own pattern and the
    maximum in one, as JSON Schema cannot compare a string with a number)."""
    out = {}
    for validator in field.validators:
        if isinstance(validator, validate.Email):
            out["format"] = "email"
        elif isinstance(validator, validate.URL):
            out["format"] = "uri"
        elif isinstance(validator, validate.Range) and getattr(validator, "pattern", None):
            out["pattern"] = validator.pattern
    return out


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str) -> dict:
    return {"application/json": {"schema": _ref(name)}}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/problem+json": {"schema": _ref("Error")}}}


def _text(description: str, example: str | None = None) -> dict:
    schema = {"type": "string"} if example is None else {"type": "string", "example": example}
    return {"description": description, "content": {"text/plain": {"schema": schema}}}


# an audit entry's id: two numbers up to 2^64 - 1 (a Redis stream id)
_ENTRY_ID_PATTERN = "^" + digits_at_most_pattern(2**64 - 1)[1:-1].replace("(?:", "(?:0|", 1) + "-" + \
    digits_at_most_pattern(2**64 - 1)[1:-1].replace("(?:", "(?:0|", 1) + "$"
UNAUTHORIZED = _error("No bearer key, or an unknown or revoked one: WWW-Authenticate: Bearer")
UNAVAILABLE = _error("Redis unavailable; retry")


def build_openapi(schema: CheckoutRequestSchema) -> dict:
    """The document, with ``schema`` (the settings' checkout schema) as the checkout request."""
    plugin = MarshmallowPlugin()
    spec = APISpec(title="vexora-checkout", version="1", openapi_version="3.1.0", plugins=[plugin],
                   info={"description": DESCRIPTION})
    plugin.converter.add_attribute_function(_formats)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "description": SCOPE_DESCRIPTION})
    spec.components.schema("CheckoutRequest", schema=schema)
    for name, component in COMPONENTS.items():
        spec.components.schema(name, schema=component)

    trade_no = {"name": "tradeNo", "in": "path", "required": True,
                "schema": plugin.converter.field2property(fields.String(validate=TRADE_NO_RULES))}
    spec.components.schema("CheckoutBatchResult", component=_batch_result())
    spec.components.schema("CheckoutBatchResults", component={
        "type": "object", "additionalProperties": False, "required": ["results", "counts"],
        "description": "The answer to a batch: one result per item, in the order sent, and how many of each.",
        "properties": {
            "results": {"type": "array", "items": _ref("CheckoutBatchResult")},
            "counts": {"type": "object", "additionalProperties": False,
                       "required": ["created", "duplicate", "conflict", "invalid"],
                       "properties": {name: {"type": "integer", "minimum": 0}
                                      for name in ("created", "duplicate", "conflict", "invalid")}},
        }})
    for path, operations in _paths(trade_no).items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    # ResolveRequestSchema's _amount_with_succeeded, which no field validator can state
    document["components"]["schemas"]["ResolveRequest"]["oneOf"] = [
        {"properties": {"state": {"const": "succeeded"}}, "required": ["amount"]},
        {"properties": {"state": {"const": "failed"}}, "not": {"required": ["amount"]}}]
    document["webhooks"] = _webhooks()
    return document


def _batch_result() -> dict:
    """One item's answer in a batch: created or duplicate (the single form's 202 body and the
    result), conflict (its 409), invalid (its 422: field errors, nothing stored)."""
    errors = {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
              "description": "Field name -> its rules (never the values sent), as a 422's or 409's errors."}
    return {"oneOf": [
        {"type": "object", "additionalProperties": False, "required": ["tradeNo", "result", "state", "statusUrl"],
         "description": "Stored and queued (created), or the same payload was already that job (duplicate).",
         "properties": {"tradeNo": {"type": "string"}, "result": {"enum": ["created", "duplicate"]},
                        "state": {"type": "string", "enum": list(STATES)},
                        "statusUrl": {"type": "string", "format": "uri"}}},
        {"type": "object", "additionalProperties": False, "required": ["tradeNo", "result", "errors"],
         "description": "The tradeNo is used by another payload (or another account): nothing stored.",
         "properties": {"tradeNo": {"type": "string"}, "result": {"const": "conflict"}, "errors": errors}},
        {"type": "object", "additionalProperties": False, "required": ["tradeNo", "result", "errors"],
         "description": "Not a valid checkout: nothing stored; tradeNo is the one sent (null: none, or not a string).",
         "properties": {"tradeNo": {"type": ["string", "null"]}, "result": {"const": "invalid"}, "errors": errors}},
    ]}


def _link(operation_id: str, description: str, **parameters: str) -> dict:
    return {"operationId": operation_id, "description": description, "parameters": parameters}


def _links_to_job(source: str) -> dict:
    """From an answer naming a job in its body's tradeNo to the operations on that job."""
    trade_no = "$response.body#/tradeNo"
    links = {
        "GetCheckout": _link("getCheckout", f"Read the job {source}", tradeNo=trade_no),
        "QueryCheckout": _link("queryCheckout", f"Ask the gateway about the job {source}", tradeNo=trade_no),
        "GetCheckoutWebhooks": _link("getCheckoutWebhooks", f"The webhook attempts of the job {source}",
                                     tradeNo=trade_no),
    }
    return links


def _links_to_endpoint(pointer: str, source: str) -> dict:
    """From an answer naming an endpoint (``pointer`` to its id) to its actions."""
    return {f"{action.capitalize()}Endpoint": _link(
        "changeWebhookEndpoint", f"{action.capitalize()} the endpoint {source}",
        endpointId=f"$response.body#{pointer}", action=action) for action in ("disable", "enable", "rotate")}


def _paths(trade_no: dict) -> dict[str, dict]:
    endpoint_id = {"name": "endpointId", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
                   "description": "An endpoint's id, as GET /v1/webhooks/endpoints lists it."}
    action = {"name": "action", "in": "path", "required": True,
              "schema": {"type": "string", "enum": ["disable", "enable", "rotate"]}}
    not_found = _error("No such checkout (a job of another account is the same answer)")
    account_header = {"name": "Vexora-Account", "in": "header", "required": False,
                      "schema": {"type": "string", "pattern": ACCOUNT_PATTERN},
                      "description": "With a key for every account (*), required: the account the checkout "
                                     "belongs to, one this deployment serves; a key of one account leaves it out "
                                     "(it is the key's)."}
    etag = {"ETag": {"description": "The record's version, quoted (strong): send it as If-Match to resolve.",
                     "schema": {"type": "string", "pattern": '^"[0-9]+"$'}}}
    location = {"Location": {"description": "The statusUrl: GET it for the record.",
                             "schema": {"type": "string", "format": "uri"}}}
    if_match = {"name": "If-Match", "in": "header", "required": True,
                "schema": {"type": "string", "example": '"1"'},
                "description": "The ETag of the record the operator decided on (GET /v1/checkouts/{tradeNo}); "
                               "one that is not the current version is 412, none (or *) is 428."}
    since_until = {"anyOf": [DATE_TIME, EPOCH_MS_TEXT]}
    duration = {"type": "string", "pattern": "^[0-9]{1,9}[smhd]$",
                "description": "A duration back from now: 90s, 30m, 24h, 7d (a window reaching before the "
                               "Unix epoch starts at the epoch)."}
    return {
        "/v1/checkouts": {"post": {
            "operationId": "createCheckout",
            "tags": ["checkouts"], "summary": "Enqueue a checkout", "security": _bearer("checkouts:write"),
            "parameters": [account_header],
            "description": "Validated at once (422, nothing stored), stored and queued; idempotent on "
                           "tradeNo: the same payload again answers the same job.\n\nBatch form: a JSON array "
                           f"of 1 to {BATCH_MAX_ITEMS} checkouts (one account: the key's, or Vexora-Account). "
                           "Each item is validated as a single checkout is, and answered on its own, in order, "
                           "with 200: created or duplicate (the 202 body), conflict (the 409: the tradeNo is "
                           "another payload's), invalid (the 422's field errors; nothing stored for it). The "
                           "valid items are stored with one Redis round trip per 500; a 503 means some may "
                           "be stored: send the same batch again (they answer duplicate).",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                _ref("CheckoutRequest"),
                {"type": "array", "items": _ref("CheckoutRequest"), "minItems": 1, "maxItems": BATCH_MAX_ITEMS},
            ]}}}},
            "responses": {
                "200": {"description": "A batch (an array body): one result per item, in order",
                        "content": _json("CheckoutBatchResults")},
                "202": {"description": "Stored and queued; Location is the statusUrl", "content": _json("Accepted"),
                        "headers": location, "links": _links_to_job("just created")},
                "400": _error("Not a JSON object or array"),
                "401": UNAUTHORIZED,
                "403": _forbidden("checkouts:write"),
                "409": _error("tradeNo used by another payload (or another account)"),
                "413": _error(f"Body larger than VEXORA_CALLBACK_MAX_BYTES (a batch: {BATCH_MAX_BYTES // 2**20} MiB), or a batch of more "
                              f"than {BATCH_MAX_ITEMS} checkouts"),
                "422": _error("Invalid fields: errors maps each field to its rules; nothing stored (or a key for "
                              "every account without a known Vexora-Account, or an empty batch)"),
                "503": _error("Redis or the broker refused; retry with the tradeNo"),
            }}},
        "/v1/checkouts/{tradeNo}": {"get": {
            "operationId": "getCheckout",
            "tags": ["checkouts"], "summary": "A checkout's public record (payer data masked)",
            "security": _bearer("checkouts:read"), "parameters": [trade_no],
            "responses": {"200": {"description": "The record", "content": _json("CheckoutRecord"), "headers": etag,
                                  "links": {
                                      "ResolveCheckout": _link(
                                          "resolveCheckout", "Resolve this job as read: its ETag is the If-Match",
                                          tradeNo="$response.body#/tradeNo",
                                          **{"header.If-Match": "$response.header.ETag"}),
                                      "QueryCheckout": _link("queryCheckout", "Ask the gateway about this job",
                                                             tradeNo="$response.body#/tradeNo")}},
                          "401": UNAUTHORIZED, "403": _forbidden("checkouts:read"), "404": not_found, "503": UNAVAILABLE}}},
        "/v1/review": {"get": {
            "operationId": "getReviewQueue",
            "tags": ["review"], "summary": "The review queue: jobs flagged for a person, oldest flag first",
            "security": _bearer("checkouts:read"),
            "responses": {"200": {"description": "The queue", "content": _json("ReviewQueue")},
                          "401": UNAUTHORIZED, "403": _forbidden("checkouts:read"), "503": UNAVAILABLE}}},
        "/v1/checkouts/{tradeNo}/query": {"post": {
            "operationId": "queryCheckout",
            "tags": ["review"], "summary": "Ask the gateway now; its answer is applied by the normal rules",
            "security": _bearer("review:write"), "parameters": [trade_no],
            "responses": {"200": {"description": "What the gateway said and the record after it",
                                  "content": _json("QueryAnswer")},
                          "401": UNAUTHORIZED, "403": _forbidden("review:write"), "404": not_found,
                          "502": _error("The gateway gave no usable answer"), "503": UNAVAILABLE}}},
        "/v1/checkouts/{tradeNo}/resolve": {"post": {
            "operationId": "resolveCheckout",
            "tags": ["review"], "summary": "Settle a job in review as succeeded or failed",
            "description": "Conditional on the record the operator decided on: If-Match with its ETag. The "
                           "check, the move, the unflag and the review queue change are one atomic step.",
            "security": _bearer("review:write"), "parameters": [trade_no, if_match],
            "requestBody": {"required": True, "content": _json("ResolveRequest")},
            "responses": {"200": {"description": "The record", "content": _json("CheckoutRecord"), "headers": etag},
                          "400": _error("Not a JSON object"), "401": UNAUTHORIZED, "403": _forbidden("review:write"), "404": not_found,
                          "409": _error("The job is not in review"),
                          "412": _error("The job changed since that ETag; nothing changed (ETag: the current one)"),
                          "422": _error("No valid state or reason, or (succeeded) amount"),
                          "428": _error("No If-Match (or *): nothing changed"), "503": UNAVAILABLE}}},
        "/v1/review/orphans/{tradeNo}/dismiss": {"post": {
            "operationId": "dismissOrphan",
            "tags": ["review"], "summary": "Dismiss money reported for a tradeNo with no job, once looked at",
            "security": _bearer("review:write"), "parameters": [trade_no],
            "requestBody": {"required": True, "content": _json("DismissRequest")},
            "responses": {"200": {"description": "Dismissed", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"tradeNo": {"type": "string"}, "dismissedBy": {"type": "string"},
                                                 "dismissedReason": {"type": "string"}}}}}},
                          "400": _error("Not a JSON object"), "401": UNAUTHORIZED, "403": _forbidden("review:write"),
                          "404": _error("No orphan report for this tradeNo (or another account's: an orphan "
                                        "belongs to the account its entry records, else to default)"),
                          "409": _error("Dismissed already"), "422": _error("No valid reason"),
                          "503": UNAVAILABLE}}},
        "/v1/checkouts/{tradeNo}/webhooks": {"get": {
            "operationId": "getCheckoutWebhooks",
            "tags": ["webhooks"], "summary": "Every delivery attempt of the job's webhook events",
            "security": _bearer("checkouts:read"), "parameters": [trade_no],
            "responses": {"200": {"description": "The attempts, oldest first", "content": _json("WebhookAttempts")},
                          "401": UNAUTHORIZED, "403": _forbidden("checkouts:read"), "404": not_found,
                          "503": UNAVAILABLE}}},
        "/v1/webhooks/endpoints": {
            "get": {"operationId": "listWebhookEndpoints",
                    "tags": ["webhooks"], "summary": "Webhook endpoints (secrets by their last 4 characters)",
                    "security": _bearer("webhooks:admin"),
                    "responses": {"200": {"description": "The endpoints, oldest first", "content": {"application/json": {
                        "schema": {"type": "array", "items": _ref("WebhookEndpoint")}}},
                        "links": _links_to_endpoint("/0/id", "listed first")},
                                  "401": UNAUTHORIZED, "403": _forbidden("webhooks:admin"), "503": UNAVAILABLE}},
            "post": {"operationId": "addWebhookEndpoint",
                     "tags": ["webhooks"], "summary": "Add a webhook endpoint; the answer shows its secret once",
                     "security": _bearer("webhooks:admin"),
                     "requestBody": {"required": True, "content": _json("WebhookEndpointRequest")},
                     "responses": {"201": {"description": "Added", "content": _json("WebhookEndpointCreated"),
                                           "links": _links_to_endpoint("/id", "just added")},
                                   "400": _error("Not a JSON object"), "401": UNAUTHORIZED, "403": _forbidden("webhooks:admin"),
                                   "422": _error("A private URL, an unknown type, a bad secret, an account "
                                                 "that is not the key's (or, for a * key, not a known one)"),
                                   "503": UNAVAILABLE}}},
        "/v1/webhooks/endpoints/{endpointId}/{action}": {"post": {
            "operationId": "changeWebhookEndpoint",
            "tags": ["webhooks"],
            "summary": "disable, enable or rotate (a new secret; the old one signs for a grace period)",
            "security": _bearer("webhooks:admin"), "parameters": [endpoint_id, action],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"secret": {"type": "string", "pattern": WEBHOOK_SECRET_PATTERN,
                                                            "description": "whsec_ and the base64 of at least 16 "
                                                                           "bytes of key"}},
                "description": "rotate only: the new secret; generated when absent"}}}},
            "responses": {"200": {"description": "The endpoint (rotate: with its new secret, once)",
                                  "content": {"application/json": {"schema": {"oneOf": [
                                      _ref("WebhookEndpoint"), _ref("WebhookEndpointCreated")]}}}},
                          "400": _error("rotate: a JSON body that is not an object"),
                          "401": UNAUTHORIZED, "403": _forbidden("webhooks:admin"),
                          "404": _error("No such endpoint or action (another account's endpoint is the same answer)"),
                          "422": _error("A bad secret"), "503": UNAVAILABLE}}},
        "/v1/webhooks/replay": {"post": {
            "operationId": "replayWebhooks",
            "tags": ["webhooks"], "summary": "Deliver again the events of a window: failed ones, or all",
            "security": _bearer("webhooks:admin"), "requestBody": {"required": True, "content": _json("ReplayRequest")},
            "responses": {"200": {"description": "How many deliveries were scheduled", "content": _json("ReplayResult")},
                          "400": _error("Not a JSON object with since"), "401": UNAUTHORIZED, "403": _forbidden("webhooks:admin"),
                          "404": _error("No such enabled endpoint"),
                          "422": _error("A time that is not one, or out of range"),
                          "503": UNAVAILABLE}}},
        "/v1/audit": {"get": {
            "operationId": "readAudit",
            "tags": ["audit"], "summary": "The audit log, newest first: who did what, when, from where",
            "description": "Every operator and admin action: review resolves, queries and dismissals, webhook "
                           "replays and endpoint changes, keys and operators created or revoked, logins and "
                           "failed logins. A key of one account sees its account's entries (and those for "
                           "none or every account); kept VEXORA_AUDIT_RETENTION_DAYS.",
            "security": _bearer("audit:read"),
            "parameters": [
                {"name": "since", "in": "query", "required": False,
                 "schema": {"anyOf": [DATE_TIME, EPOCH_MS_TEXT, duration]},
                 "description": "Entries from then: an RFC 3339 date-time, epoch milliseconds (digits), or a "
                                "duration back from now (90s, 30m, 24h, 7d)."},
                {"name": "until", "in": "query", "required": False, "schema": since_until,
                 "description": "Entries until then: an RFC 3339 date-time or epoch milliseconds (digits)."},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}},
                {"name": "before", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": _ENTRY_ID_PATTERN},
                 "description": "An entry's id (a page's `next`): the entries older than it."},
                {"name": "account", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": "^(?:\\*|" + ACCOUNT_PATTERN[1:-1] + ")$"},
                 "description": "One account's entries (a key of every account only; a key of one "
                                "account always sees its own)."}],
            "responses": {"200": {"description": "The entries, newest first, and the id to page on from",
                                  "content": {"application/json": {"schema": {
                                      "type": "object", "required": ["entries", "next"],
                                      "properties": {"entries": {"type": "array", "items": _ref("AuditEntry")},
                                                     "next": {"type": ["string", "null"]}}}}}},
                          "400": _error("A parameter that is not a time, a limit, an id or an account"),
                          "401": UNAUTHORIZED, "403": _forbidden("audit:read"),
                          "503": UNAVAILABLE}}},
        "/v1/openapi.json": {"get": {
            "operationId": "getOpenapi",
            "tags": ["meta"], "summary": "This document",
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {
                "schema": {"type": "object"}}}}}}},
        "/vexora/notify": {"post": {
            "operationId": "notify",
            "tags": ["gateway"], "summary": "Gateway callback (signed per the gateway's rules)",
            "description": "The raw body is parsed keeping numbers as their JSON text, the signature "
                           "verified on those values, the schema checked, the fields queued; OK only "
                           "once queued. Only the documented fields are accepted, and no value may "
                           "contain '=' (the signed text has no separator between fields, so such a "
                           "body could carry a genuine signature re-split onto other fields). "
                           "VEXORA_CALLBACK_ALLOWED_IPS may restrict the sources.",
            "requestBody": {"required": True, "content": _json("Callback")},
            "responses": {"200": _text("Queued", "OK"),
                          "400": {"description": "Malformed: not JSON, not an object, or fields the schema "
                                                 "refuses (JSON: {error, fields}); or refused: a field the "
                                                 "gateway does not document or '=' in a value (JSON: "
                                                 "{error, fields, undocumentedFields})"},
                          "401": _text("Bad signature", "invalid signature"),
                          "403": _text("Source not allowed", "forbidden"),
                          "413": _text("Larger than VEXORA_CALLBACK_MAX_BYTES"),
                          "503": _text("Not queued; the gateway will resend")}}},
        "/metrics": {"get": {
            "operationId": "metrics",
            "tags": ["monitoring"], "summary": "Prometheus metrics of the whole deployment",
            "security": [{}, {"bearer": []}],
            "responses": {"200": _text("Prometheus text format, version 0.0.4"),
                          "401": _text("VEXORA_METRICS_TOKEN is set and not given"),
                          "404": _text("VEXORA_METRICS=off"), "503": _text("Redis unavailable")}}},
        "/healthz": {"get": {
            "operationId": "healthz",
            "tags": ["monitoring"], "summary": "200 when Redis answers",
            "responses": {"200": _text("Redis answers", "ok"), "503": _text("Redis unavailable")}}},
    }


def _webhooks() -> dict:
    """What the webhook endpoints receive (Standard Webhooks: webhook-id, webhook-timestamp,
    webhook-signature headers)."""
    headers = [{"name": name, "in": "header", "required": True, "schema": {"type": "string"},
                "description": text} for name, text in (
        ("webhook-id", "The event's id: a repeat has the same one"),
        ("webhook-timestamp", "Unix seconds of the attempt"),
        ("webhook-signature", "v1,<base64 HMAC-SHA256> per secret, space-separated"))]
    answers = {"2XX": {"description": "Received (answer quickly)"},
               "410": {"description": "Gone: the endpoint is disabled"},
               "default": {"description": "Retried on 429 and 5xx, on the retry schedule; any other "
                                          "answer fails the delivery"}}
    return {
        "checkoutEvent": {"post": {
            "summary": "A job's change: checkout.paying, succeeded, partially_paid, failed, declined, rejected, "
                       "unknown, needs_review", "parameters": headers,
            "requestBody": {"required": True, "content": _json("CheckoutEvent")}, "responses": answers}},
        "endpointDisabled": {"post": {
            "summary": "webhook.endpoint_disabled, to the other endpoints", "parameters": headers,
            "requestBody": {"required": True, "content": _json("EndpointDisabledEvent")}, "responses": answers}},
    }
