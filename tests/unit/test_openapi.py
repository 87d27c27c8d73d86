"""The OpenAPI document stays in step with the code: its paths are the app's routes, and the
checkout request is the schema the API validates with."""

import re

from schemas import CheckoutRequestSchema
from worker.openapi import FIELD_DOCS, build_openapi
from worker.settings import Settings
from worker.web import create_app


def routes() -> dict[str, set[str]]:
    app = create_app(Settings(app_secret="s", api_token="t", metrics=False))
    found: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.rule == "/ops" or rule.rule.startswith("/ops/"):
            continue  # the operations pages are HTML for people, not API
        path = re.sub(r"<(?:[^:>]+:)?trade_no>", "{tradeNo}", rule.rule)
        path = path.replace("<endpoint_id>", "{endpointId}").replace("<action>", "{action}")
        found.setdefault(path, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    return found


def test_paths_and_methods_are_exactly_the_routes():
    document = build_openapi(CheckoutRequestSchema())
    assert {path: set(ops) for path, ops in document["paths"].items()} == routes()


def test_the_request_schema_is_the_validation_schema():
    schema = CheckoutRequestSchema()
    request = build_openapi(schema)["components"]["schemas"]["CheckoutRequest"]
    assert set(request["properties"]) == set(schema.fields)
    assert set(request["required"]) == {n for n, f in schema.fields.items() if f.required}
    assert "tradeNo" not in request["required"] and "email" in request["required"]
    assert all(FIELD_DOCS.get(name) for name in schema.fields), "every field needs a description"


def test_every_ref_resolves():
    document = build_openapi(CheckoutRequestSchema())
    text = repr(document)
    for ref in re.findall(r"#/components/schemas/(\w+)", text):
        assert ref in document["components"]["schemas"]
