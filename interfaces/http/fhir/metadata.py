"""``GET /fhir/metadata``: the CapabilityStatement (http://hl7.org/fhir/R4/capabilitystatement.html),
built from the registry of :mod:`interfaces.http.fhir.common`, so it lists only what is served."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from flask import Response

from interfaces.http.auth import public_if
from interfaces.http.fhir.common import REGISTRY, bp, fhir_base, fhir_response, hub

SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def security(bearer: bool, cors: bool, token: str = "", authorize: str = "") -> dict[str, Any]:
    """CapabilityStatement.rest.security: Basic always; OAuth and SMART-on-FHIR when bearer JWTs are configured
    (SMART App Launch 2.x scopes decide what a token may do, see interfaces.http.fhir.auth). With a configured
    token endpoint also SMART's oauth-uris extension, which clients older than .well-known discovery read."""
    codes = ["Basic", *(["OAuth", "SMART-on-FHIR"] if bearer else [])]
    text = "HTTP Basic, as every rishub route."
    if bearer:
        text = ("HTTP Basic, or an OAuth2 bearer JWT (RFC 6750) from the configured issuer: SMART v1 and v2 scopes "
                "(patient/, user/, system/; .read/.write, .cruds) decide what it may do, a patient/ scope only for "
                "the token's patient claim.")
    out: dict[str, Any] = {}
    if bearer and token:
        uris = [("token", token), *([("authorize", authorize)] if authorize else [])]
        out["extension"] = [{"url": OAUTH_URIS, "extension": [{"url": k, "valueUri": v} for k, v in uris]}]
    return {**out, "cors": cors,
            "service": [{"coding": [{"system": SECURITY_SERVICE, "code": c}]} for c in codes], "description": text}


def capability_statement() -> dict[str, Any]:
    h = hub()
    resources = []
    for support in sorted(REGISTRY.values(), key=lambda r: r.type):
        entry: dict[str, Any] = {"type": support.type, "profile": f"http://hl7.org/fhir/StructureDefinition/{support.type}"}
        if support.documentation:
            entry["documentation"] = support.documentation
        entry["interaction"] = [{"code": i} for i in support.interactions]
        entry["versioning"] = "versioned"
        entry["readHistory"] = False
        entry["conditionalRead"] = support.conditional_read
        if support.includes:
            entry["searchInclude"] = list(support.includes)
        if support.params:
            entry["searchParam"] = [{"name": p.name, "type": p.type, **({"documentation": p.documentation}
                                                                       if p.documentation else {})}
                                    for p in support.params]
        entry.update(support.extra)
        resources.append(entry)
    started = h.started_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": started, "kind": "instance",
        "software": {"name": "rishub", "version": h.version},
        "implementation": {"description": "rishub FHIR R4 server", "url": fhir_base()},
        "fhirVersion": "4.0.1", "format": ["json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": ("Searches: GET [type]?... or POST [type]/_search with a form body; repeated "
                              "parameter = AND, comma = OR, an empty value is ignored; unknown parameters or "
                              "modifiers are a 400 OperationOutcome unless 'Prefer: handling=lenient'. Paging: "
                              "_count, _offset. Only the current version is kept: vread answers it, no history."),
            "security": security(h.auth.bearer_enabled, bool(h.settings.http.cors_origins),
                                 h.settings.auth.jwt.token_endpoint, h.settings.auth.jwt.authorization_endpoint),
            "resource": resources,
        }],
    }


@bp.get("/metadata")
@public_if(lambda h: h.auth.bearer_enabled)
def metadata() -> Response:
    """The CapabilityStatement. With bearer JWTs configured it is served without authentication: an OAuth
    client reads it (SMART's oauth-uris, its security) before it has a token, as fhirclient's prepare() does.
    It holds no patient data. With HTTP Basic only it stays behind authentication like every route."""
    return fhir_response(capability_statement())
