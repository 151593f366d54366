"""``GET /fhir/.well-known/smart-configuration``: SMART App Launch 2.x discovery (conformance.html).

The hub is a resource server: tokens come from the authorization server whose endpoints are configured in
``[auth.jwt]`` (``token_endpoint``, ``authorization_endpoint``). Once a token endpoint is configured the
document is served without authentication, because a client reads it before it has a token; it holds only
those URLs, the grant types they imply, the scopes this server understands (from the registry the
CapabilityStatement is built from) and capabilities. Without one the route needs authentication and answers
404.
"""

from __future__ import annotations

import json

from flask import Response

from hub.app import Hub
from interfaces.http.auth import public_if
from interfaces.http.fhir.common import REGISTRY, FhirError, bp, hub

# What the resource server itself enforces (interfaces.http.fhir.auth): v1 and v2 scopes, patient and user.
SERVER_CAPABILITIES = ("permission-v1", "permission-v2", "permission-patient", "permission-user")
LETTERS = (("create", "c"), ("read", "r"), ("update", "u"), ("delete", "d"), ("search-type", "s"))  # in order


def smart_configured(h: Hub) -> bool:
    return h.auth.bearer_enabled and bool(h.settings.auth.jwt.token_endpoint)


def scopes_supported() -> list[str]:
    """v2 scopes (``.rs``, and the type's full ``cruds`` subset where it is written) and v1 scopes (``.read``,
    ``.write``) of every registered type (SMART App Launch scopes-and-launch-context.html)."""
    out: list[str] = []
    for support in sorted(REGISTRY.values(), key=lambda r: r.type):
        letters = "".join(letter for name, letter in LETTERS if name in support.interactions)
        writes = any(i in support.interactions for i in ("create", "update", "delete"))
        for context in ("patient", "user", "system"):
            out += [f"{context}/{support.type}.rs", f"{context}/{support.type}.read"]
            out += [f"{context}/{support.type}.{letters}", f"{context}/{support.type}.write"] if writes else []
    return out


def smart_configuration_document(h: Hub) -> dict[str, object]:
    jwt = h.settings.auth.jwt
    user_facing = bool(jwt.authorization_endpoint)
    extra = [c.strip() for c in jwt.smart_capabilities.split(",") if c.strip()]
    doc: dict[str, object] = {}
    if "sso-openid-connect" in extra:  # issuer: required with that capability, otherwise omitted
        doc["issuer"] = jwt.issuer
    if jwt.jwks_url:
        doc["jwks_uri"] = jwt.jwks_url
    if user_facing:
        doc["authorization_endpoint"] = jwt.authorization_endpoint
    doc["token_endpoint"] = jwt.token_endpoint
    doc["grant_types_supported"] = ["client_credentials", *(["authorization_code"] if user_facing else [])]
    if user_facing:
        doc["response_types_supported"] = ["code"]
        doc["code_challenge_methods_supported"] = ["S256"]  # SMART 2.x: PKCE S256, never plain
    doc["scopes_supported"] = scopes_supported()
    doc["capabilities"] = list(dict.fromkeys([*extra, *SERVER_CAPABILITIES]))
    return doc


@bp.get("/.well-known/smart-configuration")
@public_if(smart_configured)
def smart_configuration() -> Response:
    h = hub()
    if not smart_configured(h):
        raise FhirError(404, "SMART discovery is not configured (auth.jwt.token_endpoint)", "not-found")
    return Response(json.dumps(smart_configuration_document(h)), mimetype="application/json",
                    headers={"Cache-Control": "no-cache"})
