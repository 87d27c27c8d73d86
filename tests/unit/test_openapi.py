"""The OpenAPI document stays in step with the code: it is a valid OpenAPI 3.1 document, its paths
are the app's JSON and public routes (the /ops pages left out on purpose), every constraint in it
is the one a schema validates with (read from the document and compared with the schema's own
validators, for the default settings and others), what a generator makes from the document is
accepted by the validators that run (so the document is as strict as the server), the links name
real operations and parameters, and the web app serves exactly the generated document."""

from __future__ import annotations

import json
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from marshmallow import ValidationError, validate
from openapi_spec_validator import validate as validate_spec

from schemas import CheckoutRecordSchema, CheckoutRequestSchema
from schemas._rules import FullMatch, digits_at_most_pattern
from schemas.api import WEBHOOK_SECRET_PATTERN, ResolveRequestSchema
from schemas.checkout import PUBLIC_IP_FORMAT
from schemas.record import HIDDEN
from worker.config.settings import Settings
from worker.domain import access
from worker.runtime.wiring import checkout_schema
from worker.domain.webhook_secret import secret_bytes
from worker.web import create_app
from worker.web.audit_api import parse_when
from worker.web.openapi import COMPONENTS, build_openapi
from worker.web.webhooks_api import parse_time_ms
from worker.webhooks.endpoints import EVENT_TYPES as ENDPOINT_EVENT_TYPES
from worker.webhooks.endpoints import check_url

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
            expected["pattern"] = digits_at_most_pattern(v.max)  # the field's pattern and the maximum in one
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


def test_paths_and_methods_are_exactly_the_routes_but_the_ops_pages():
    """Every /v1 and public route is documented; the /ops pages (HTML, operator sign-in) are left
    out of the API document on purpose, and its description says so."""
    app = create_app(Settings(app_secret="s", api_token="t", metrics=False))
    served = routes(app)
    ops_pages = {path for path in served if path == "/ops" or path.startswith("/ops/")}
    assert ops_pages, "the app still has its /ops pages"
    assert {path: set(ops) for path, ops in DOCUMENT["paths"].items()} == {
        path: ops for path, ops in served.items() if path not in ops_pages}
    assert "opsSession" not in DOCUMENT["components"]["securitySchemes"]
    assert "/ops pages" in DOCUMENT["info"]["description"] and "left out" in DOCUMENT["info"]["description"]
    assert "text/html" not in json.dumps(DOCUMENT)


def test_every_api_route_but_the_public_ones_needs_the_bearer_token():
    public = {"/v1/openapi.json", "/vexora/notify", "/healthz", "/metrics"}
    scheme = DOCUMENT["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert all(scope in scheme["description"] for scope in access.SCOPES)
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            if path in public:
                assert all(not s.get("bearer") for s in operation.get("security", [])), (method, path)
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
    assert amount["pattern"] == "^(?:[1-9][0-9]{0,5}|1000000)$" and amount["x-maximum"] == "1000000"
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
    assert request_property(document, "amount")["pattern"] == "^(?:[1-9][0-9]{0,3}|[1-4][0-9]{4}|50000)$"
    assert request_property(document, "remark")["maxLength"] == 40
    # a default notifyUrl makes it optional on the wire
    assert "notifyUrl" not in document["components"]["schemas"]["CheckoutRequest"]["required"]
    # and one schema's settings never leak into another's (fields are shared between instances)
    assert build_openapi(CheckoutRequestSchema()) == DOCUMENT
    assert DEFAULT.field_errors({"channelCode": "BANK"})["channelCode"] == ["must be one of: EWALLET"]


def document_accepts(prop: dict, text: str) -> bool:
    """A string property's pattern and lengths (JSON Schema counts code points, as len does)."""
    return (re.search(prop["pattern"], text) is not None and len(text) >= prop.get("minLength", 0)
            and len(text) <= prop.get("maxLength", len(text)))


def field_accepts(field, text: str) -> bool:
    try:
        field.deserialize(text)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("name", ["tradeNo", "userId", "amount", "mobile", "firstname", "lastname", "remark"])
@given(text=st.text(max_size=40))
def test_a_pattern_means_the_same_in_the_document(name, text):
    """JSON Schema searches with the document's pattern; the schema full-matches with the same
    text. (A final newline is left out: the JSON Schema validators written in Python give "$"
    Python's meaning there, ECMA-262 and the schema refuse it.)"""
    text = text.rstrip("\n")
    assert document_accepts(request_property(DOCUMENT, name), text) == field_accepts(DEFAULT.fields[name], text)


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



def test_the_description_tells_the_error_body_and_the_413_the_app_gives():
    """info.description says what test_the_answers_the_app_gives_match_the_error_schema checks:
    problem documents with errors at the top level, 413 on /v1 too; text/plain only for notify."""
    import jsonschema
    from worker.config.settings import Settings
    from worker.web import create_app

    text = " ".join(DOCUMENT["info"]["description"].split())
    assert "{error, errors" not in text  # the body before problem documents
    assert "RFC 9457 problem document, Content-Type application/problem+json" in text
    assert "adds errors at the top level" in text
    assert "413 problem document" in text and "only POST /vexora/notify" in text
    assert DOCUMENT["paths"]["/v1/checkouts"]["post"]["responses"]["413"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    client = create_app(Settings(api_token="t" * 24, callback_max_bytes=100)).test_client()
    big = client.post("/v1/checkouts", data=b"{" + b" " * 5000 + b"}", content_type="application/json",
                      headers={"Authorization": "Bearer " + "t" * 24})
    assert (big.status_code, big.mimetype) == (413, "application/problem+json")
    jsonschema.validate(big.get_json(), dict(DOCUMENT["components"]["schemas"]["Error"], additionalProperties=False))
    notify = client.post("/vexora/notify", data=b"{" + b" " * 5000 + b"}", content_type="application/json")
    assert (notify.status_code, notify.mimetype) == (413, "text/plain")

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


# --- the document is as strict as the server: what a generator makes from it is accepted ----------

def _public_ip():
    """The ``public-ip`` format: what CheckoutRequestSchema's ipAddress rule accepts."""
    return st.ip_addresses().filter(lambda a: a.is_global and not (a.is_multicast or a.is_reserved)).map(str)


schemathesis.openapi.format(PUBLIC_IP_FORMAT, _public_ip())
GENERATED = dict(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def _body_strategy(document: dict, path: str, method: str):
    return schemathesis.openapi.from_dict(document)[path][method].as_strategy()


@pytest.mark.parametrize("schema", [DEFAULT, checkout_schema(OTHER_SETTINGS)], ids=["default", "other"])
def test_every_checkout_generated_from_the_document_is_accepted(schema):
    """Katakana names, mobiles, amounts up to the maximum, public addresses, emails, URLs: a
    checkout valid per the document passes the schema the API validates with (one that does not
    is a rule the document does not state)."""
    @settings(**GENERATED)
    @given(case=_body_strategy(build_openapi(schema), "/v1/checkouts", "POST"))
    def accepted(case):
        # the single form or the batch form's items: each passes
        for body in case.body if isinstance(case.body, list) else [case.body]:
            assert schema.field_errors(body) == {}, {k: body.get(k) for k in schema.field_errors(body)}
    accepted()


def test_the_ip_rule_is_stated_as_a_format():
    prop = request_property(DOCUMENT, "ipAddress")
    assert prop["format"] == PUBLIC_IP_FORMAT == "public-ip" and "globally routable" in prop["description"]
    assert prop["maxLength"] == 45
    for private in ("10.0.0.1", "127.0.0.1", "192.168.1.1", "100.64.0.1", "::1", "fe80::1", "224.0.0.1",
                    "192.0.2.1"):
        assert "ipAddress" in DEFAULT.field_errors({"ipAddress": private}), private
    for public in ("133.0.0.1", "8.8.8.8", "2001:4860:4860::8888"):
        assert "ipAddress" not in DEFAULT.field_errors({"ipAddress": public}), public
        assert document_accepts(prop, public)
    relaxed = build_openapi(CheckoutRequestSchema(allow_private_ip=True))
    assert request_property(relaxed, "ipAddress")["anyOf"] == [{"format": "ipv4"}, {"format": "ipv6"}]
    assert "format" not in request_property(relaxed, "ipAddress")


@given(name=st.from_regex(request_property(DOCUMENT, "firstname")["pattern"], fullmatch=True))
def test_a_katakana_name_matching_the_pattern_is_accepted(name):
    name = name[:64]
    assert "firstname" not in DEFAULT.field_errors({"firstname": name})


@pytest.mark.parametrize("name", ["たろう", "Taro", "ﾀﾛｳ", "タロウ ", "太郎", "タロウ1", "ア" * 65])
def test_a_name_outside_the_pattern_is_refused_by_both(name):
    prop = request_property(DOCUMENT, "firstname")
    assert not document_accepts(prop, name)
    assert "firstname" in DEFAULT.field_errors({"firstname": name})


@pytest.mark.parametrize("amount, ok", [("1", True), ("1000000", True), ("1000001", False), ("0", False),
                                        ("0100", False), ("-5", False), ("99999999999999999999", False)])
def test_an_amount_is_refused_by_both_past_the_maximum(amount, ok):
    prop = request_property(DOCUMENT, "amount")
    assert document_accepts(prop, amount) is ok
    assert ("amount" not in DEFAULT.field_errors({"amount": amount})) is ok


@settings(**GENERATED)
@given(case=_body_strategy(DOCUMENT, "/v1/webhooks/replay", "POST"))
def test_every_replay_window_generated_from_the_document_is_accepted(case):
    parse_time_ms(case.body["since"])
    if case.body.get("until") is not None:
        parse_time_ms(case.body["until"])


@pytest.mark.parametrize("value", [-8.4e67, -1, 253402300800, "-5", "nan", "1960-01-01T00:00:00Z",
                                   "2026-12-03T09:00:60Z", "yesterday", True])
def test_a_replay_time_outside_the_document_is_refused_by_both(value):
    replay = DOCUMENT["components"]["schemas"]["ReplayRequest"]
    assert not Draft202012Validator(replay, format_checker=FormatChecker()).is_valid({"since": value})
    with pytest.raises(ValueError):
        parse_time_ms(value)


@settings(**GENERATED)
@given(case=_body_strategy(DOCUMENT, "/v1/audit", "GET"))
def test_every_audit_query_generated_from_the_document_is_accepted(case):
    query = case.query or {}
    for name, durations in (("since", True), ("until", False)):
        if query.get(name):
            assert 0 <= parse_when(query[name], durations=durations) <= 253_402_300_799_999
    if "limit" in query:
        assert 1 <= int(query["limit"]) <= 500


@settings(**GENERATED)
@given(case=_body_strategy(DOCUMENT, "/v1/webhooks/endpoints", "POST"))
def test_every_endpoint_generated_from_the_document_passes_the_endpoint_rules(case):
    """The URL's form (its host resolving to public addresses is checked when it is added: a
    stub resolver answers a public one here), the secret, the types."""
    body = case.body
    assert check_url(body["url"], allow_private=False, resolve=lambda host: ["133.0.0.1"]) is None, body["url"]
    if "secret" in body:
        secret_bytes(body["secret"])
    assert set(body.get("types") or ()) <= set(ENDPOINT_EVENT_TYPES)


@settings(**GENERATED)
@given(secret=st.from_regex(WEBHOOK_SECRET_PATTERN, fullmatch=True))
def test_a_secret_matching_the_pattern_is_a_secret(secret):
    assert len(secret_bytes(secret)) >= 16


@settings(**GENERATED)
@given(case=_body_strategy(DOCUMENT, "/v1/checkouts/{tradeNo}/resolve", "POST"))
def test_every_resolve_generated_from_the_document_is_accepted(case):
    # what worker.flows.review checks, the key's label as the operator (the body's is ignored)
    assert ResolveRequestSchema().validate({**case.body, "operator": "key:k_1"}) == {}


@pytest.mark.parametrize("body", [{"state": "succeeded", "reason": "paid"},
                                  {"state": "failed", "reason": "no", "amount": "300"},
                                  {"state": "failed", "reason": " \u3000"}])
def test_a_resolve_outside_the_document_is_refused_by_both(body):
    assert not Draft202012Validator(DOCUMENT["components"]["schemas"]["ResolveRequest"]).is_valid(body)
    assert ResolveRequestSchema().validate({**body, "operator": "key:k_1"})


def test_not_blank_means_the_same_in_python_and_ecma_262():
    """The reason's pattern spells white space out: Python's \\s and ECMA-262's differ."""
    from schemas.api import _NOT_BLANK
    assert "\\s]" not in _NOT_BLANK.replace("[\\s\\S]", "")
    blank = {chr(c) for c in range(0x110000) if chr(c).isspace()}
    for c in range(0x110000):
        assert (re.fullmatch(_NOT_BLANK, chr(c)) is None) == (chr(c) in blank), hex(c)


# --- links -----------------------------------------------------------------------------------

def _operations(document: dict) -> dict[str, tuple[str, str, dict]]:
    return {op["operationId"]: (path, method, op) for path, ops in document["paths"].items()
            for method, op in ops.items()}


def test_every_operation_has_a_unique_operation_id():
    ids = [op["operationId"] for ops in DOCUMENT["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) == sum(len(ops) for ops in DOCUMENT["paths"].values())


def test_links_name_real_operations_and_parameters():
    operations = _operations(DOCUMENT)
    found = {}
    for path, ops in DOCUMENT["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                for name, link in answer.get("links", {}).items():
                    target_path, target_method, target = operations[link["operationId"]]
                    names = {(p["in"], p["name"]) for p in target.get("parameters", [])}
                    for key, expression in link["parameters"].items():
                        where, _, pname = key.rpartition(".")
                        assert (where or "path", pname) in names or any(n == pname for _, n in names), (name, key)
                        if expression.startswith("$response.header."):
                            assert expression.removeprefix("$response.header.") in answer["headers"], (name, key)
                        elif expression.startswith("$response.body#/"):
                            schema = answer["content"]["application/json"]["schema"]
                            field = expression.rsplit("/", 1)[1]
                            ref = schema.get("$ref") or schema["items"]["$ref"]
                            component = DOCUMENT["components"]["schemas"][ref.rsplit("/", 1)[1]]
                            assert field in component["properties"] and field in component["required"], (name, key)
                        else:
                            assert expression in target_path or expression in json.dumps(target), (name, key)
                    found.setdefault((op["operationId"], status), set()).add(link["operationId"])
    assert found[("createCheckout", "202")] == {"getCheckout", "queryCheckout", "getCheckoutWebhooks"}
    assert found[("getCheckout", "200")] == {"resolveCheckout", "queryCheckout"}
    assert found[("listWebhookEndpoints", "200")] == {"changeWebhookEndpoint"}
    assert found[("addWebhookEndpoint", "201")] == {"changeWebhookEndpoint"}
    resolve = DOCUMENT["paths"]["/v1/checkouts/{tradeNo}"]["get"]["responses"]["200"]["links"]["ResolveCheckout"]
    assert resolve["parameters"] == {"tradeNo": "$response.body#/tradeNo", "header.If-Match": "$response.header.ETag"}
    actions = {link["parameters"]["action"] for link in
               DOCUMENT["paths"]["/v1/webhooks/endpoints"]["get"]["responses"]["200"]["links"].values()}
    assert actions == {"disable", "enable", "rotate"}


def test_schemathesis_reads_every_link():
    """The fuzzer's state machine is built from the links (a link naming a missing operation or
    parameter raises here): create -> read, query, attempts; read -> resolve, query; the endpoint
    list and a new endpoint -> disable, enable, rotate."""
    machine = schemathesis.openapi.from_dict(DOCUMENT).as_state_machine()
    rules = {name for name in dir(machine) if "__" in name and not name.startswith("_")}
    expected = {("POST_v1_checkouts___202", link) for link in ("GetCheckout", "QueryCheckout", "GetCheckoutWebhooks")}
    expected |= {("GET_v1_checkouts_tradeNo___200", link) for link in ("ResolveCheckout", "QueryCheckout")}
    expected |= {(source, f"{action}Endpoint") for source in ("GET_v1_webhooks_endpoints___200",
                                                              "POST_v1_webhooks_endpoints___201")
                 for action in ("Disable", "Enable", "Rotate")}
    for source, link in expected:
        assert any(rule.startswith(f"{source}_{link}__") for rule in rules), (source, link)


@given(maximum=st.integers(min_value=1, max_value=10**20), text=st.one_of(
    st.integers(min_value=0, max_value=10**21).map(str), st.from_regex(r"\A0?[0-9]{1,22}\Z"), st.text(max_size=5)))
def test_digits_at_most_pattern_is_the_numbers_1_to_the_maximum(maximum, text):
    written = text.isascii() and text.isdigit() and not text.startswith("0")
    expected = written and 1 <= int(text) <= maximum
    assert (re.fullmatch(digits_at_most_pattern(maximum), text) is not None) == expected
