"""FHIR R4 Endpoint (http://hl7.org/fhir/R4/endpoint.html): the hub's DICOMweb service base, which
every ImagingStudy references (connection type ``dicom-wado-rs``, mapping-reference 3.2)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from flask import Response

from interfaces.http.dicomweb.common import base_url as dicomweb_base
from interfaces.http.fhir.common import (
    ResourceSupport,
    SearchParam,
    authorize,
    bp,
    fhir_response,
    hub,
    not_found,
    register,
    resource_response,
)
from interfaces.http.fhir.search import (
    parse_reference,
    parse_search,
    parse_token,
    searchset,
)
from mappings.dicom_to_fhir import CONNECTION_TYPE, ENDPOINT_ID, dicomweb_endpoint

register(ResourceSupport(
    "Endpoint", ["read", "vread", "search-type"],
    params=[SearchParam("_id", "token", "Endpoint id"),
            SearchParam("connection-type", "token", f"{CONNECTION_TYPE}|dicom-wado-rs"),
            SearchParam("status", "token", "active")],
    documentation=f"One Endpoint, {ENDPOINT_ID}: the DICOMweb (WADO-RS/QIDO-RS/STOW-RS) base URL.",
))


def current_endpoint() -> dict[str, Any]:
    """The Endpoint as this request sees it: its address is this host's DICOMweb base; its version
    is the hub's start (configuration changes need a restart)."""
    started = hub().started_at.astimezone(UTC).replace(tzinfo=None)
    return dicomweb_endpoint(dicomweb_base(), started)


@bp.get("/Endpoint/<rid>")
def read_endpoint(rid: str) -> Response:
    authorize("Endpoint", "read")
    if rid != ENDPOINT_ID:
        raise not_found("Endpoint", rid)
    return resource_response(current_endpoint())


@bp.get("/Endpoint")
def search_endpoint() -> Response:
    authorize("Endpoint", "search")
    s = parse_search("Endpoint", {"_id"})
    resource = current_endpoint()
    ok = all(any(parse_reference(v, "Endpoint") == ENDPOINT_ID for v in g) for g in s.values("_id"))
    ok = ok and all(any(parse_token(v)[1] == "dicom-wado-rs" and parse_token(v)[0] in (None, "", CONNECTION_TYPE)
                        for v in g) for g in s.values("connection-type"))
    ok = ok and all(any(parse_token(v)[1] == "active" for v in g) for g in s.values("status"))
    found = [resource] if ok and s.count > 0 and s.offset == 0 else []
    return fhir_response(searchset("Endpoint", s, found, 1 if ok else 0, []))
