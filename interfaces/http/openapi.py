"""``GET /openapi.json``: an OpenAPI 3.0 document generated from the registered routes (OpenAPI
Specification 3.0.3), so the description never drifts from what the server answers."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from werkzeug.routing import Rule

from hub.app import Hub
from interfaces.http.auth import is_public

bp = Blueprint("openapi", __name__)

_PARAM = re.compile(r"<(?:(?P<conv>[a-z]+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)>")
_TYPES = {"int": "integer", "float": "number"}
_IGNORED_METHODS = {"HEAD", "OPTIONS"}
_ERRORS = {
    "400": "Bad request (Orthanc error JSON)",
    "401": "Authentication required",
    "403": "The user lacks the role this route needs",
    "404": "Unknown resource (Orthanc error JSON)",
}


def openapi_path(rule: Rule) -> tuple[str, list[dict[str, Any]]]:
    """The OpenAPI path of a Flask rule (``<int:n>`` -> ``{n}``) and its path parameters."""
    params: list[dict[str, Any]] = []

    def repl(m: re.Match[str]) -> str:
        name = m.group("name")
        schema: dict[str, Any] = {"type": _TYPES.get(m.group("conv") or "", "string")}
        if m.group("conv") == "any" and m.group("args"):
            schema["enum"] = [a.strip().strip("'\"") for a in m.group("args").split(",")]
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return _PARAM.sub(repl, rule.rule), params


def _summary(view: Any) -> str:
    doc = (getattr(view, "__doc__", None) or "").strip()
    return doc.splitlines()[0].rstrip(".") if doc else getattr(view, "__name__", "")


def build_openapi(app: Flask, hub: Hub) -> dict[str, Any]:
    """The OpenAPI document of ``app``: one operation per (rule, method), tagged by blueprint."""
    paths: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        path, params = openapi_path(rule)
        blueprint = rule.endpoint.rsplit(".", 1)[0] if "." in rule.endpoint else "core"
        for method in sorted((rule.methods or set()) - _IGNORED_METHODS):
            op_id = f"{rule.endpoint}.{method.lower()}"
            n = 1
            while op_id in seen:  # one view serving several paths (e.g. with and without a trailing part)
                n += 1
                op_id = f"{rule.endpoint}.{method.lower()}.{n}"
            seen.add(op_id)
            op: dict[str, Any] = {
                "operationId": op_id,
                "summary": _summary(view),
                "tags": [blueprint],
                "responses": {"200": {"description": "Success"}, **{k: {"description": v} for k, v in _ERRORS.items()}},
            }
            if params:
                op["parameters"] = params
            role = getattr(view, "required_role", None) or ("user" if method == "GET" else "admin")
            op["x-rishub-role"] = role
            if is_public(hub, view):  # a configured discovery document (SMART): no authentication
                op["security"], op["x-rishub-role"] = [], "none"
            paths.setdefault(path, {})[method.lower()] = op
    schemes: dict[str, Any] = {"basic": {"type": "http", "scheme": "basic"}}
    if hub.auth.bearer_enabled:
        schemes["bearer"] = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "rishub", "version": hub.version,
                 "description": "Orthanc-compatible REST API of the rishub RIS-PACS hub."},
        "paths": paths,
        "components": {"securitySchemes": schemes},
    }
    if not hub.settings.http.open:
        doc["security"] = [{name: []} for name in schemes]
    return doc


@bp.get("/openapi.json")
def openapi():  # noqa: ANN201
    """The OpenAPI 3.0 description of this server's routes."""
    app = current_app
    cached = app.extensions.get("rishub.openapi")
    if cached is None:
        cached = build_openapi(app, app.extensions["rishub"])  # type: ignore[arg-type]
        app.extensions["rishub.openapi"] = cached
    return jsonify(cached)
