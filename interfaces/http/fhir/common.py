"""Shared by the FHIR R4 routes at ``/fhir`` (http://hl7.org/fhir/R4/http.html, search.html).

* :data:`bp`, the one Blueprint every FHIR resource module adds its routes to, and :func:`register`,
  the registry the CapabilityStatement is built from (a resource appears there once registered);
* OperationOutcome errors (:class:`FhirError`, HTTP 400/404/405/406/409/412/422), ``application/fhir+json``
  responses (``_format``, ``_pretty``), ``ETag: W/"<versionId>"`` and ``Last-Modified`` from ``meta``,
  conditional reads (If-None-Match / If-Modified-Since);
* :func:`query_args`, the parameters of a search (the URL's, and a ``POST _search`` form body's), parsed by
  :mod:`interfaces.http.fhir.search`; the routes every type shares are in :mod:`interfaces.http.fhir.routes`;
* :func:`authorize`, the one hook for SMART scopes (:mod:`interfaces.http.fhir.auth` decides).
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from hub.errors import HubError
from interfaces.http.context import hub as hub  # re-exported for the FHIR modules
from interfaces.http.dicomweb.common import base_url as dicomweb_base
from mappings.order_to_fhir import etag_matches, parse_etag

FHIR_JSON = "application/fhir+json"
Json = dict[str, Any]
bp = Blueprint("fhir", __name__, url_prefix="/fhir")
log = logging.getLogger(__name__)


def authorize(resource_type: str, interaction: str) -> set[str] | None:
    """The Patient ids the caller may see for ``interaction`` (read, search; writers: create, update,
    delete) on ``resource_type`` (None: no restriction). Called by every FHIR route before it reads;
    SMART scopes decide (``interfaces.http.fhir.auth``)."""
    from interfaces.http.fhir import auth

    return auth.authorize(resource_type, interaction)




# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str  # FHIR search param type: token, reference, date, string, number, uri
    documentation: str = ""
    modifiers: tuple[str, ...] = ()  # what the parameter takes besides none (R4 search.html#modifiers)


@dataclass
class ResourceSupport:
    """What the server does with one resource type; the CapabilityStatement lists exactly these."""

    type: str
    interactions: list[str]  # read, search-type, create, update, ...
    params: list[SearchParam] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)
    documentation: str = ""
    conditional_read: str = "full-support"
    extra: Json = field(default_factory=dict)  # more CapabilityStatement.rest.resource elements


REGISTRY: dict[str, ResourceSupport] = {}


def register(support: ResourceSupport) -> ResourceSupport:
    REGISTRY[support.type] = support
    return support


# --------------------------------------------------------------------------- errors and responses
class FhirError(Exception):
    """An error answered as an OperationOutcome (issue.code from the R4 IssueType value set)."""

    def __init__(self, status: int, diagnostics: str, code: str = "processing", severity: str = "error",
                 expression: str | None = None) -> None:
        super().__init__(diagnostics)
        self.status, self.diagnostics, self.code, self.severity = status, diagnostics, code, severity
        self.expression = expression  # the offending element as a simple FHIRPath (issue.expression)


ISSUE_BY_STATUS = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
                   406: "not-supported", 409: "conflict", 410: "deleted", 412: "conflict", 415: "not-supported",
                   422: "business-rule"}
# issue.expression is "a simple subset of FHIRPath": element names, [index] and the child accessor.
_PATH_STEP = re.compile(r"[A-Za-z][A-Za-z0-9]*(\[[0-9]+\])?")


def outcome(diagnostics: str, code: str, severity: str = "error", expression: str | None = None) -> Json:
    issue: Json = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def fhir_path(attribute: str | None) -> str | None:
    """A HubError's ``attribute`` as issue.expression when it names a FHIR element (``ServiceRequest.contained.0``
    -> ``ServiceRequest.contained[0]``); None for anything else (an HL7 field, a header name)."""
    steps = re.sub(r"\.([0-9]+)(?=\.|$)", r"[\1]", attribute or "").split(".")
    if len(steps) < 2 or steps[0] not in REGISTRY or not all(_PATH_STEP.fullmatch(x) for x in steps):
        return None
    return ".".join(steps)


def query_args() -> MultiDict[str, str]:
    """The request's search and control parameters: the URL's, and for ``POST [type]/_search`` also the
    ``application/x-www-form-urlencoded`` body's (R4 http.html#search: both together are the search)."""
    if request.method == "POST" and request.path.endswith("/_search"):
        merged: MultiDict[str, str] = MultiDict(request.args.items(multi=True))
        for key, value in request.form.items(multi=True):
            merged.add(key, value)
        return merged
    return request.args


def auth_outcome(status: int, diagnostics: str) -> Response:
    """A 401/403 of the authentication layer for a ``/fhir`` route, as an OperationOutcome (login/forbidden)
    instead of the REST API's JSON error: a FHIR client reads errors as OperationOutcome."""
    text = json.dumps(outcome(diagnostics, ISSUE_BY_STATUS[status]), separators=(",", ":"))
    return Response(text, status, content_type=f"{FHIR_JSON}; charset=utf-8")


def fhir_response(body: Json, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``application/fhir+json`` (or ``application/json`` when that is what ``_format`` asked)."""
    mime = _format()
    pretty = query_args().get("_pretty") == "true"
    text = json.dumps(body, ensure_ascii=False, indent=2 if pretty else None,
                      separators=None if pretty else (",", ":"))
    resp = Response(text, status=status, mimetype=mime)
    resp.headers["Content-Type"] = f"{mime}; charset=utf-8"
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def error_response(err: FhirError) -> Response:
    return fhir_response(outcome(err.diagnostics, err.code, err.severity, err.expression), err.status)


def _format() -> str:
    """The response media type: ``_format`` overrides Accept (http.html#mime-type); XML is not offered."""
    wanted = query_args().get("_format", "")
    if wanted:
        if wanted in ("json", FHIR_JSON, "application/json", "application/json+fhir"):
            return "application/json" if wanted == "application/json" else FHIR_JSON
        raise FhirError(406, f"_format {wanted} is not supported: this server speaks JSON only", "not-supported")
    accept = request.accept_mimetypes
    if not accept or any(q > 0 and _offered(value) for value, q in accept):
        return FHIR_JSON
    raise FhirError(406, "only application/fhir+json (FHIR 4.0) is offered", "not-supported")


_OFFERED = (FHIR_JSON, "application/json+fhir", "application/json", "application/*", "*/*")


def _offered(value: str) -> bool:
    """An Accept entry this server can answer: a JSON FHIR media type (or a wildcard) whose ``fhirVersion``
    parameter, if any, is R4 (http.html#version-parameter: ``application/fhir+json; fhirVersion=4.0``)."""
    media, *params = (p.strip() for p in value.split(";"))
    version = next((v.strip().strip('"') for k, _, v in (p.partition("=") for p in params)
                    if k.strip().lower() == "fhirversion"), None)
    return media.lower() in _OFFERED and version in (None, "4.0", "4.0.1")


@bp.errorhandler(FhirError)
def _fhir_error(err: FhirError) -> Response:
    try:
        return error_response(err)
    except FhirError:  # the _format itself was refused: answer in JSON anyway
        resp = Response(json.dumps(outcome(err.diagnostics, err.code)), err.status, mimetype=FHIR_JSON)
        return resp


@bp.errorhandler(HubError)
def _hub_error(err: HubError) -> Response:
    resp = _fhir_error(FhirError(err.http_status, err.message, ISSUE_BY_STATUS.get(err.http_status, "processing"),
                                 expression=fhir_path(err.attribute)))
    if type(err).__name__ == "InsufficientScope":  # RFC 6750 3.1
        resp.headers["WWW-Authenticate"] = 'Bearer error="insufficient_scope"'
    return resp


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException) -> Response:
    status = err.code or 500
    return _fhir_error(FhirError(status, err.description or "error", ISSUE_BY_STATUS.get(status, "processing")))


@bp.errorhandler(Exception)
def _unexpected(err: Exception) -> Response:
    """A fault of the server: 500 with an OperationOutcome (code ``exception``), as every other FHIR answer.
    Logged by route, exception type and stack only: the message and the URL may hold a patient's values."""
    stack = "".join(traceback.format_tb(err.__traceback__))
    log.error("FHIR %s %s failed with %s\n%s", request.method, request.url_rule, type(err).__name__, stack)
    return _fhir_error(FhirError(500, "internal error: the request was not completed", "exception"))


def not_found(resource_type: str, rid: str) -> FhirError:
    return FhirError(404, f"{resource_type}/{rid} is not known", "not-found")


def version_headers(resource: Json) -> tuple[str | None, datetime | None]:
    """``ETag: W/"<versionId>"`` and ``Last-Modified`` (whole seconds) from the resource's ``meta``
    (R4 http.html#versioning), None where it has none."""
    meta = resource.get("meta", {})
    etag = f'W/"{meta["versionId"]}"' if meta.get("versionId") else None
    modified = None
    if meta.get("lastUpdated"):
        modified = datetime.fromisoformat(meta["lastUpdated"].replace("Z", "+00:00")).replace(microsecond=0)
    return etag, modified


def resource_response(resource: Json, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """One resource with ``ETag: W/"versionId"`` and ``Last-Modified``; 304 when the client's copy
    is current (RFC 9110 13.2.2: If-None-Match first, else If-Modified-Since). Only a read (GET/HEAD) is
    conditional so: the answer to a create or update that has been committed is never a 304."""
    etag, modified = version_headers(resource)
    if request.method not in ("GET", "HEAD"):
        return with_version(fhir_response(resource, status, headers), etag, modified)
    inm = request.headers.get("If-None-Match")
    if etag and inm and etag_matches(inm, parse_etag(etag)):  # weak comparison, lists and * (RFC 9110 13.1.2)
        return Response(status=304, headers={"ETag": etag})
    ims = request.if_modified_since
    if not inm and modified is not None and ims is not None and modified <= ims:
        return Response(status=304, headers={"ETag": etag} if etag else {})
    return with_version(fhir_response(resource, status, headers), etag, modified)


def with_version(resp: Response, etag: str | None, modified: datetime | None) -> Response:
    """``resp`` with ``ETag`` and ``Last-Modified`` (from :func:`version_headers`) where known."""
    if etag:
        resp.headers["ETag"] = etag
    if modified is not None:
        resp.last_modified = modified
    return resp


def fhir_base() -> str:
    """Absolute URL of ``/fhir`` as the client sees it (same rules as the DICOMweb base)."""
    return dicomweb_base().removesuffix("/dicom-web") + "/fhir"
