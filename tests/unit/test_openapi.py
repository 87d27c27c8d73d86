"""The OpenAPI document stays in step with the code: it is a valid OpenAPI 3.1 document, its paths
are the app's routes, every constraint in it is the one a schema validates with (read from the
document and compared with the schema's own validators, for the default settings and others),
and the web app serves exactly the generated document."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import validate
from openapi_spec_validator import validate as validate_spec

from schemas import CheckoutRecordSchema, CheckoutRequestSchema
from schemas._rules import FullMatch
from schemas.record import HIDDEN
from worker.config.settings import Settings
from worker.domain import access
from worker.runtime.wiring import checkout_schema
from worker.web import create_app
from worker.web.openapi import COMPONENTS, build_openapi

DEFAULT = CheckoutRequestSchema()
DOCUMENT = build_openapi(DEFAULT)
OTHER_SETTINGS = Settings(app_secret="s", api_token="t", metrics=False, amount_max=50_000,
                          channel_codes=("EWALLET", "BANK"), way_codes=("PAYPAY", "LINEPAY"),
                          remark_max_length=40, notify_url="https://merchant.example/notify")


def routes(app) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?trade_no>", "{tradeNo}", rule.rule)
        path = path.replace("<endpoint_id>", "{endpointId}").replace("<action>", "{action}")
        found.setdefault(path, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    return found


def request_property(document: dict, name: str) -> dict:
    return document["components"]["schemas"]["CheckoutRequest"]["properties"][name]


def expected_from_validators(field) -> dict:
    """What the document must say of a field, computed from its marshmallow validators."""
    expected = {}
    for v in field.validators:
        if isinstance(v, validate.Length):
            expected.update({k: n for k, n in (("minLength", v.min), ("maxLength", v.max)) if n is not None})
        elif isinstance(v, FullMatch):
            expected["pattern"] = v.regex.pattern
        elif isinstance(v, validate.OneOf):
            expected["enum"] = list(v.choices)
        elif isinstance(v, validate.Email):
            expected["format"] = "email"
        elif isinstance(v, validate.URL):
            expected["format"] = "uri"
        elif isinstance(v, validate.Range):
            expected["x-maximum"] = str(v.max)
        else:
            raise AssertionError(f"a validator the document cannot carry: {v!r}")
    return expected


# --- the document ---------------------------------------------------------------------------

@pytest.mark.parametrize("schema", [DEFAULT, checkout_schema(OTHER_SETTINGS)], ids=["default", "other"])
def test_the_document_is_valid_openapi_3_1(schema):
    document = build_openapi(schema)
    validate_spec(document)
    assert document["openapi"] == "3.1.0"
    json.dumps(document)  # plain JSON, as served


def test_paths_and_methods_are_exactly_the_routes():
    app = create_app(Settings(app_secret="s", api_token="t", metrics=False))
    served = routes(app)
    assert {path: set(ops) for path, ops in DOCUMENT["paths"].items()} == served


def test_every_api_route_but_the_public_ones_needs_the_bearer_token():
    public = {"/v1/openapi.json", "/vexora/notify", "/healthz", "/metrics", "/ops/login", "/ops/logout"}
    scheme = DOCUMENT["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert all(scope in scheme["description"] for scope in access.SCOPES)
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            if path in public:
                assert all(not s.get("bearer") for s in operation.get("security", [])), (method, path)
            elif path.startswith("/ops"):
                assert operation["security"] == [{"opsSession": []}], (method, path)
            else:
                [scope] = operation["security"][0]["bearer"]
                assert operation["security"] == [{"bearer": [scope]}] and scope in access.SCOPES, (method, path)
                for status in ("401", "403"):
                    assert operation["responses"][status]["content"]["application/problem+json"]["schema"] == {
                        "$ref": "#/components/schemas/Error"}, (method, path, status)
                assert scope in operation["responses"]["403"]["description"]


# each route's scope (issue 21): what the API enforces (tests/integration/test_api_keys.py) and documents
ROUTE_SCOPES = {
    ("post", "/v1/checkouts"): "checkouts:write",
    ("get", "/v1/checkouts/{tradeNo}"): "checkouts:read",
    ("get", "/v1/checkouts/{tradeNo}/webhooks"): "checkouts:read",
    ("get", "/v1/review"): "checkouts:read",
    ("post", "/v1/checkouts/{tradeNo}/query"): "review:write",
    ("post", "/v1/checkouts/{tradeNo}/resolve"): "review:write",
    ("post", "/v1/review/orphans/{tradeNo}/dismiss"): "review:write",
    ("get", "/v1/webhooks/endpoints"): "webhooks:admin",
    ("post", "/v1/webhooks/endpoints"): "webhooks:admin",
    ("post", "/v1/webhooks/endpoints/{endpointId}/{action}"): "webhooks:admin",
    ("post", "/v1/webhooks/replay"): "webhooks:admin",
    ("get", "/v1/audit"): "audit:read",
}


def test_each_operation_names_its_scope_and_its_404_where_a_job_may_be_another_accounts():
    documented = {(method, path): op["security"][0]["bearer"][0] for path, ops in DOCUMENT["paths"].items()
                  for method, op in ops.items() if path.startswith("/v1/") and op.get("security")}
    assert documented == ROUTE_SCOPES
    for (method, path) in ROUTE_SCOPES:
        if "{tradeNo}" in path or "{endpointId}" in path:
            assert "404" in DOCUMENT["paths"][path][method]["responses"], (method, path)
    audit = DOCUMENT["paths"]["/v1/audit"]["get"]
    assert {p["name"] for p in audit["parameters"]} == {"since", "until", "limit", "before", "account"}
    entry = DOCUMENT["components"]["schemas"]["AuditEntry"]
    assert set(entry["properties"]) == {"id", "at", "actor", "actorKind", "actorAccount", "action", "target",
                                        "account", "address", "before", "after", "detail"}
    # the API's resolve takes no operator: who resolved is the key
    assert "operator" not in DOCUMENT["components"]["schemas"]["ResolveRequest"].get("required", [])


def test_every_ref_resolves():
    text = json.dumps(DOCUMENT)
    refs = re.findall(r'"#/components/schemas/([^"]+)"', text)
    assert refs and set(refs) <= set(DOCUMENT["components"]["schemas"])


# --- the checkout request: the schema the API validates with ---------------------------------

@pytest.mark.parametrize("schema", [DEFAULT, checkout_schema(OTHER_SETTINGS)], ids=["default", "other"])
def test_every_constraint_is_the_schemas_own(schema):
    document = build_openapi(schema)
    request = document["components"]["schemas"]["CheckoutRequest"]
    assert set(request["properties"]) == set(schema.fields)
    assert set(request.get("required", [])) == {n for n, f in schema.fields.items() if f.required}
    assert request["additionalProperties"] is False  # unknown = RAISE
    for name, field in schema.fields.items():
        prop = request_property(document, name)
        assert prop["type"] == "string" and prop["minLength"] == 1, name
        assert prop.get("description"), f"{name} needs a description"
        expected = expected_from_validators(field)
        assert {k: prop.get(k) for k in expected} == expected, name


def test_the_named_constraints_are_in_the_document():
    trade_no, mobile, amount = (request_property(DOCUMENT, n) for n in ("tradeNo", "mobile", "amount"))
    assert trade_no["maxLength"] == 32 and trade_no["pattern"] == "^[A-Za-z0-9_-]+$"
    assert mobile["pattern"] == "^0[0-9]{10}$"
    assert amount["pattern"] == "^[1-9][0-9]*$" and amount["x-maximum"] == "1000000"
    assert request_property(DOCUMENT, "email")["format"] == "email"
    assert request_property(DOCUMENT, "returnUrl")["format"] == "uri"
    assert request_property(DOCUMENT, "channelCode")["enum"] == ["EWALLET"]
    assert request_property(DOCUMENT, "wayCode")["enum"] == ["PAYPAY"]
    assert request_property(DOCUMENT, "remark")["maxLength"] == 256
    assert "tradeNo" not in DOCUMENT["components"]["schemas"]["CheckoutRequest"]["required"]


def test_the_settings_rules_follow_the_settings():
    document = build_openapi(checkout_schema(OTHER_SETTINGS))
    assert request_property(document, "channelCode")["enum"] == ["EWALLET", "BANK"]
    assert request_property(document, "wayCode")["enum"] == ["PAYPAY", "LINEPAY"]
    assert request_property(document, "amount")["x-maximum"] == "50000"
    assert request_property(document, "remark")["maxLength"] == 40
    # a default notifyUrl makes it optional on the wire
    assert "notifyUrl" not in document["components"]["schemas"]["CheckoutRequest"]["required"]
    # and one schema's settings never leak into another's (fields are shared between instances)
    assert build_openapi(CheckoutRequestSchema()) == DOCUMENT
    assert DEFAULT.field_errors({"channelCode": "BANK"})["channelCode"] == ["must be one of: EWALLET"]


@pytest.mark.parametrize("name", ["tradeNo", "userId", "amount", "mobile", "firstname"])
@given(text=st.text(max_size=40))
def test_a_pattern_means_the_same_in_the_document(name, text):
    """JSON Schema searches with the document's pattern; the schema full-matches with the same
    text. (A final newline is left out: the JSON Schema validators written in Python give "$"
    Python's meaning there, ECMA-262 and the schema refuse it.)"""
    pattern = request_property(DOCUMENT, name)["pattern"]
    (rule,) = [v for v in DEFAULT.fields[name].validators if isinstance(v, FullMatch)]
    text = text.rstrip("\n")
    assert (re.search(pattern, text) is not None) == (rule.regex.fullmatch(text) is not None)


def test_the_422_error_shape_is_described():
    error = DOCUMENT["components"]["schemas"]["Error"]
    # an RFC 9457 problem document that keeps the documented 422 members (errors, error)
    assert sorted(error["required"]) == ["detail", "error", "status", "title", "type"]
    assert error["properties"]["errors"]["additionalProperties"] == {"type": "array", "items": {"type": "string"}}
    answer = DOCUMENT["paths"]["/v1/checkouts"]["post"]["responses"]["422"]
    assert answer["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_the_answers_the_app_gives_match_the_error_schema():
    import jsonschema
    from worker.config.settings import Settings
    from worker.web import create_app

    error = dict(DOCUMENT["components"]["schemas"]["Error"], additionalProperties=False)
    client = create_app(Settings(api_token="t" * 24)).test_client()
    answers = [client.post("/v1/checkouts", json={"tradeNo": "A1"}),  # 401: no token
               client.get("/v1/nowhere"),  # 404
               client.delete("/healthz")]  # 405
    for answer in answers:
        assert answer.status_code in (401, 404, 405) and answer.mimetype == "application/problem+json"
        jsonschema.validate(answer.get_json(), error)


# --- the record -----------------------------------------------------------------------------

def test_the_record_is_described_by_its_schema():
    record = DOCUMENT["components"]["schemas"]["CheckoutRecord"]
    schema = CheckoutRecordSchema()
    assert set(record["properties"]) == {f.data_key or n for n, f in schema.fields.items()}
    assert not set(record["properties"]) & HIDDEN
    assert {"tradeNo", "state", "createdAt", "updatedAt", "needsReview", "history"} <= set(record["required"])
    assert record["properties"]["createdAt"]["type"] == "integer"
    assert record["properties"]["paidAmount"]["type"] == "string"
    get = DOCUMENT["paths"]["/v1/checkouts/{tradeNo}"]["get"]["responses"]["200"]
    assert get["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/CheckoutRecord"}
    event = DOCUMENT["components"]["schemas"]["CheckoutEvent"]["properties"]["data"]
    assert event == {"$ref": "#/components/schemas/CheckoutEventData"}
    assert DOCUMENT["webhooks"]["checkoutEvent"]["post"]["requestBody"]["content"]["application/json"][
        "schema"] == {"$ref": "#/components/schemas/CheckoutEvent"}


def test_every_component_is_a_schema_of_schemas_package():
    assert all(cls.__module__.startswith("schemas.") for cls in COMPONENTS.values())


# --- served ---------------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [Settings(app_secret="s", api_token="t", metrics=False), OTHER_SETTINGS],
                         ids=["default", "other"])
def test_the_served_document_is_the_generated_one(settings):
    client = create_app(settings).test_client()
    answer = client.get("/v1/openapi.json")  # no token needed
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert answer.get_json() == json.loads(json.dumps(build_openapi(checkout_schema(settings))))
