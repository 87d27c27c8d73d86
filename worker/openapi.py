"""The OpenAPI 3.1 document of the web app, served at ``GET /v1/openapi.json``.

The checkout request's properties and required list are read from ``CheckoutRequestSchema``
itself, so the document cannot drift from the validation; a test pins the paths to the app's
routes.
"""

from __future__ import annotations

from schemas import CheckoutRequestSchema

__all__ = ["build_openapi", "FIELD_DOCS"]

FIELD_DOCS = {
    "tradeNo": "Your unique order number (idempotency key), at most 32 of [A-Za-z0-9_-]; generated when absent.",
    "userId": "Your user's id.",
    "amount": "Whole yen as a string of ASCII digits, e.g. \"300\".",
    "mobile": "The payer's mobile: 11 digits starting with 0, no country code.",
    "firstname": "The payer's legal first name in full-width Katakana.",
    "lastname": "The payer's legal last name in full-width Katakana.",
    "email": "The payer's email address.",
    "channelCode": "Payment channel, e.g. EWALLET.",
    "wayCode": "Payment method, e.g. PAYPAY.",
    "ipAddress": "The payer's real public IP address.",
    "notifyUrl": "Where the gateway posts outcomes; defaults to VEXORA_NOTIFY_URL.",
    "returnUrl": "Where the payer returns after paying.",
    "remark": "Free text echoed back by the gateway.",
}

_ERROR = {"type": "object", "properties": {"error": {"type": "string"},
                                            "errors": {"type": "object", "additionalProperties": {
                                                "type": "array", "items": {"type": "string"}}}}}


def _request_schema(schema: CheckoutRequestSchema) -> dict:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": sorted(name for name, field in schema.fields.items() if field.required),
        "properties": {name: {"type": "string", "description": FIELD_DOCS.get(name, "")}
                       for name in schema.fields},
    }


def _json(ref: str) -> dict:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def build_openapi(schema: CheckoutRequestSchema) -> dict:
    error = {"content": _json("Error")}
    return {
        "openapi": "3.1.0",
        "info": {"title": "vexora-checkout", "version": "1",
                 "description": "Enqueue Vexora checkouts and follow them; gateway callbacks in."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "CheckoutRequest": _request_schema(schema),
                "Accepted": {"type": "object", "required": ["tradeNo", "state", "statusUrl"],
                             "properties": {"tradeNo": {"type": "string"}, "state": {"type": "string"},
                                            "statusUrl": {"type": "string", "format": "uri"}}},
                "Checkout": {"type": "object", "required": ["tradeNo", "state", "history"],
                             "properties": {"tradeNo": {"type": "string"}, "state": {"type": "string", "enum": [
                                 "queued", "submitting", "paying", "succeeded", "partially_paid", "failed",
                                 "rejected", "declined", "unknown"]},
                                 "paymentLink": {"type": "string"}, "history": {"type": "array"}},
                             "additionalProperties": True},
                "Error": _ERROR,
            },
        },
        "paths": {
            "/v1/checkouts": {"post": {
                "summary": "Enqueue a checkout", "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": _json("CheckoutRequest")},
                "responses": {"202": {"description": "Stored and queued", "content": _json("Accepted")},
                              "400": {"description": "Not a JSON object", **error},
                              "401": {"description": "Missing or wrong bearer token", **error},
                              "409": {"description": "tradeNo used by another payload", **error},
                              "422": {"description": "Invalid fields", **error},
                              "503": {"description": "Redis unavailable; retry", **error}}}},
            "/v1/checkouts/{tradeNo}": {"get": {
                "summary": "A checkout's record (payer data masked)", "security": [{"bearer": []}],
                "parameters": [{"name": "tradeNo", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The record", "content": _json("Checkout")},
                              "401": {"description": "Missing or wrong bearer token", **error},
                              "404": {"description": "No such checkout", **error}}}},
            "/v1/review": {"get": {
                "summary": "The review queue: jobs flagged for a person", "security": [{"bearer": []}],
                "responses": {"200": {"description": "{count, items: [{tradeNo, state, amount, paidAmount, "
                                                     "reviewReason, gatewayStatus, reconcileChecks, ageSeconds...}]}"},
                              "401": {"description": "Missing or wrong bearer token", **error}}}},
            "/v1/checkouts/{tradeNo}/query": {"post": {
                "summary": "Ask the gateway now; its answer is applied by the normal rules",
                "security": [{"bearer": []}],
                "parameters": [{"name": "tradeNo", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "{gateway, result, record}"},
                              "401": {"description": "Missing or wrong bearer token", **error},
                              "404": {"description": "No such checkout", **error},
                              "502": {"description": "The gateway gave no usable answer", **error}}}},
            "/v1/checkouts/{tradeNo}/resolve": {"post": {
                "summary": "Settle a job in review as succeeded or failed", "security": [{"bearer": []}],
                "parameters": [{"name": "tradeNo", "in": "path", "required": True, "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["state", "reason", "operator"],
                    "properties": {"state": {"type": "string", "enum": ["succeeded", "failed"]},
                                   "reason": {"type": "string", "minLength": 1, "maxLength": 500},
                                   "operator": {"type": "string", "minLength": 1, "maxLength": 100}}}}}},
                "responses": {"200": {"description": "The record", "content": _json("Checkout")},
                              "401": {"description": "Missing or wrong bearer token", **error},
                              "404": {"description": "No such checkout", **error},
                              "409": {"description": "The job is not in review", **error},
                              "422": {"description": "No state, reason or operator", **error}}}},
            "/v1/webhooks/endpoints": {
                "get": {"summary": "Webhook endpoints (secrets shown by their last 4 characters)",
                        "security": [{"bearer": []}],
                        "responses": {"200": {"description": "The endpoints"},
                                      "401": {"description": "Missing or wrong bearer token", **error}}},
                "post": {"summary": "Add a webhook endpoint; the answer shows its secret once",
                         "security": [{"bearer": []}],
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {
                             "type": "object", "required": ["url"],
                             "properties": {"url": {"type": "string", "format": "uri"},
                                            "types": {"type": "array", "items": {"type": "string"}},
                                            "secret": {"type": "string", "pattern": "^whsec_"}}}}}},
                         "responses": {"201": {"description": "Added"},
                                       "401": {"description": "Missing or wrong bearer token", **error},
                                       "422": {"description": "A private URL, an unknown type, a bad secret", **error}}}},
            "/v1/webhooks/endpoints/{endpointId}/{action}": {"post": {
                "summary": "disable, enable or rotate (a new secret; the old one signs for a grace period)",
                "security": [{"bearer": []}],
                "parameters": [{"name": "endpointId", "in": "path", "required": True, "schema": {"type": "string"}},
                               {"name": "action", "in": "path", "required": True,
                                "schema": {"type": "string", "enum": ["disable", "enable", "rotate"]}}],
                "responses": {"200": {"description": "The endpoint"},
                              "401": {"description": "Missing or wrong bearer token", **error},
                              "404": {"description": "No such endpoint or action", **error}}}},
            "/v1/webhooks/replay": {"post": {
                "summary": "Deliver again the events of a window: failed ones, or all",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["since"],
                    "properties": {"since": {"type": ["string", "number"]}, "until": {"type": ["string", "number"]},
                                   "endpoint": {"type": "string"}, "all": {"type": "boolean"}}}}}},
                "responses": {"200": {"description": "{scheduled: n}"},
                              "401": {"description": "Missing or wrong bearer token", **error},
                              "404": {"description": "No such enabled endpoint", **error}}}},
            "/v1/checkouts/{tradeNo}/webhooks": {"get": {
                "summary": "Every delivery attempt of the job's webhook events", "security": [{"bearer": []}],
                "parameters": [{"name": "tradeNo", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "{tradeNo, attempts: [...]}"},
                              "401": {"description": "Missing or wrong bearer token", **error}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics of the whole deployment",
                                 "responses": {"200": {"description": "text/plain; version=0.0.4"},
                                               "401": {"description": "VEXORA_METRICS_TOKEN is set"},
                                               "404": {"description": "VEXORA_METRICS=off"}}}},
            "/v1/openapi.json": {"get": {"summary": "This document",
                                         "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/vexora/notify": {"post": {
                "summary": "Gateway callback (signed per the gateway's rules)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {"200": {"description": "Queued: plain text OK",
                                      "content": {"text/plain": {"schema": {"const": "OK"}}}},
                              "400": {"description": "Malformed"}, "401": {"description": "Bad signature"},
                              "403": {"description": "Source not allowed"}, "413": {"description": "Too large"},
                              "503": {"description": "Not queued; the gateway will resend"}}}},
            "/healthz": {"get": {"summary": "200 when Redis answers",
                                 "responses": {"200": {"description": "ok"}, "503": {"description": "down"}}}},
        },
    }
