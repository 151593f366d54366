"""``/openapi.json`` describes every route the server has, and is a valid OpenAPI 3.0 document."""

from __future__ import annotations

from openapi_spec_validator import validate

from hub.app import Hub
from interfaces.http import create_app
from interfaces.http.openapi import openapi_path
from tests.contract.conftest import Http


def test_openapi_lists_every_route_and_validates(hub: Hub, api: Http) -> None:
    resp = api.get("/openapi.json")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    doc = resp.json()
    validate(doc)
    assert doc["openapi"].startswith("3.0")
    app = create_app(hub)
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path, params = openapi_path(rule)
        assert path in doc["paths"], path
        assert "<" not in path and len(params) == rule.rule.count("<")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc["paths"][path]
    system = doc["paths"]["/system"]["get"]
    assert system["x-rishub-role"] == "user" and "basic" in doc["components"]["securitySchemes"]


def test_openapi_needs_authentication(api: Http) -> None:
    anonymous = Http(api.base)
    assert anonymous.get("/openapi.json").status_code == 401
