"""Shared by the FHIR R4 routes at ``/fhir`` (http://hl7.org/fhir/R4/http.html, search.html).

* :data:`bp`, the one Blueprint every FHIR resource module adds its routes to, and :func:`register`,
  the registry the CapabilityStatement is built from (a resource appears there once registered);
* OperationOutcome errors (:class:`FhirError`, HTTP 400/404/405/406/409/412/422), ``application/fhir+json``
  responses (``_format``, ``_pretty``), ``ETag: W/"<versionId>"`` and ``Last-Modified`` from ``meta``,
  conditional reads (If-None-Match / If-Modified-Since);
* search parameters: AND (repeated) of OR (comma) values, date prefixes eq/ne/lt/gt/le/ge/sa/eb,
  ``_count``/``_offset`` paging, ``_sort``, ``_include``; an unknown parameter is a 400 unless the
  client sent ``Prefer: handling=lenient`` (then it is ignored and left out of the self link);
* :func:`authorize`, the one hook for SMART scopes (:mod:`interfaces.http.fhir.auth` decides).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from hub.errors import HubError
from hub.services.fhir import DateParam
from interfaces.http.context import hub as hub  # re-exported for the FHIR modules
from interfaces.http.dicomweb.common import base_url as dicomweb_base

FHIR_JSON = "application/fhir+json"
Json = dict[str, Any]
bp = Blueprint("fhir", __name__, url_prefix="/fhir")
DEFAULT_COUNT, MAX_COUNT = 20, 1000
CONTROL = {"_count", "_offset", "_sort", "_include", "_format", "_pretty", "_summary", "_total", "_elements"}
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


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


def fhir_response(body: Json, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``application/fhir+json`` (or ``application/json`` when that is what ``_format`` asked)."""
    mime = _format()
    pretty = request.args.get("_pretty") == "true"
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
    wanted = request.args.get("_format", "")
    if wanted:
        if wanted in ("json", FHIR_JSON, "application/json", "application/json+fhir"):
            return "application/json" if wanted == "application/json" else FHIR_JSON
        raise FhirError(406, f"_format {wanted} is not supported: this server speaks JSON only", "not-supported")
    accept = request.accept_mimetypes
    if not accept or accept.best_match([FHIR_JSON, "application/json+fhir", "application/json"]):
        return FHIR_JSON
    raise FhirError(406, "only application/fhir+json is offered", "not-supported")


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


def not_found(resource_type: str, rid: str) -> FhirError:
    return FhirError(404, f"{resource_type}/{rid} is not known", "not-found")


def resource_response(resource: Json, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """One resource with ``ETag: W/"versionId"`` and ``Last-Modified``; 304 when the client's copy
    is current (RFC 9110 13.2.2: If-None-Match first, else If-Modified-Since)."""
    meta = resource.get("meta", {})
    etag = f'W/"{meta["versionId"]}"' if meta.get("versionId") else None
    modified = None
    if meta.get("lastUpdated"):
        modified = datetime.fromisoformat(meta["lastUpdated"].replace("Z", "+00:00")).replace(microsecond=0)
    inm = request.headers.get("If-None-Match")
    tags = [t.strip().removeprefix("W/") for t in (inm or "").split(",")]
    if etag and inm and ("*" in tags or etag.removeprefix("W/") in tags):
        return Response(status=304, headers={"ETag": etag})
    ims = request.if_modified_since
    if not inm and modified is not None and ims is not None and modified <= ims:
        return Response(status=304, headers={"ETag": etag} if etag else {})
    resp = fhir_response(resource, status, headers)
    if etag:
        resp.headers["ETag"] = etag
    if modified is not None:
        resp.last_modified = modified
    return resp


def fhir_base() -> str:
    """Absolute URL of ``/fhir`` as the client sees it (same rules as the DICOMweb base)."""
    return dicomweb_base().removesuffix("/dicom-web") + "/fhir"


# --------------------------------------------------------------------------- search parameters
@dataclass
class Search:
    """A parsed search: ``params[name]`` = list (AND) of (modifier, values (OR))."""

    params: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)
    count: int = DEFAULT_COUNT
    offset: int = 0
    sort: list[tuple[str, bool]] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)  # the (key, value) pairs applied, for links

    def values(self, name: str) -> list[list[str]]:
        return [vals for _, vals in self.params.get(name, [])]


def lenient() -> bool:
    """``Prefer: handling=lenient`` (R4 search.html#errors): ignore what cannot be used."""
    prefer = request.headers.get("Prefer", "")
    return any(p.strip().replace(" ", "") == "handling=lenient" for p in prefer.split(";") + prefer.split(","))


def parse_search(resource_type: str, sorts: set[str] | None = None) -> Search:
    """Read ``request.args`` against the registry's parameters of ``resource_type``."""
    support = REGISTRY[resource_type]
    known = {p.name: p for p in support.params}
    loose, s, problems = lenient(), Search(), []
    for key, value in request.args.items(multi=True):
        name, _, modifier = key.partition(":")
        if name in ("_format", "_pretty"):
            s.used.append((key, value))
        elif name == "_count":
            s.count = _int(key, value, 0, MAX_COUNT)
        elif name == "_offset":
            s.offset = _int(key, value, 0, 10**9)
        elif name == "_total" and value in ("none", "estimate", "accurate"):
            s.used.append((key, value))
        elif name == "_summary" and value == "count":
            s.count = 0
        elif name == "_sort":
            applied = []
            for item in (v.strip() for v in value.split(",") if v.strip()):
                if item.lstrip("-") in (sorts or set()):
                    s.sort.append((item.lstrip("-"), item.startswith("-")))
                    applied.append(item)
                else:
                    problems.append(f"_sort by {item} is not supported")
            if applied:  # the self link lists what was applied only (search.html#errors)
                s.used.append((key, ",".join(applied)))
        elif name == "_include" and not modifier:
            if value in support.includes:
                s.includes.append(value)
                s.used.append((key, value))
            else:
                problems.append(f"_include={value} is not supported for {resource_type}")
        elif name in known and modifier in _modifiers(known[name].type):
            s.params.setdefault(name, []).append((modifier, [v for v in _split(value) if v != ""]))
            s.used.append((key, value))
        else:
            problems.append(f"search parameter {key} is not supported for {resource_type}")
    if problems and not loose:
        raise FhirError(400, "; ".join(problems), "not-supported")
    return s


def _modifiers(ptype: str) -> set[str]:
    return {"string": {"", "exact", "contains"}, "reference": {"", "identifier"}}.get(ptype, {""})


def _split(value: str) -> list[str]:
    """Comma-separated alternatives; ``\\,`` is a literal comma (search.html#escaping)."""
    return [p.replace("\\,", ",") for p in re.split(r"(?<!\\),", value)]


def _int(key: str, value: str, low: int, high: int) -> int:
    if not value.isdigit():
        raise FhirError(400, f"{key} must be a non-negative integer", "invalid")
    return max(low, min(int(value), high))


def parse_token(value: str) -> tuple[str | None, str]:
    """``[system]|code`` -> (system, code); no ``|`` -> (None, code); ``|code`` -> ("", code)."""
    if "|" in value:
        system, _, code = value.partition("|")
        return system, code
    return None, value


def parse_reference(value: str, resource_type: str) -> str | None:
    """``Type/id``, an absolute URL ending in it, or a bare id -> id (None: another resource type)."""
    parts = value.rstrip("/").split("/")
    if len(parts) == 1:
        return parts[0]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts[-1] if parts[-2] == resource_type else None


_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
                   r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")


def parse_date(value: str, zone: tzinfo | None = None, *, utc: bool = False) -> DateParam:
    """``[prefix]YYYY[-MM[-DD[Thh:mm[:ss[.f]][zone]]]]`` -> the range it stands for, as naive times in the
    hub's zone (or UTC for ``_lastUpdated``); a value without offset is in that zone."""
    prefix = value[:2] if value[:2] in PREFIXES else "eq"
    text = value[2:] if value[:2] in PREFIXES else value
    if prefix == "ap":
        raise FhirError(400, "the ap (approximately) date prefix is not supported", "not-supported")
    found = _DATE.match(text)
    if not found:
        raise FhirError(400, f"{value!r} is not a FHIR date", "invalid")
    y, mo, d, hh, mi, ss, frac, off = found.groups()
    try:
        low = datetime(int(y), int(mo or 1), int(d or 1), int(hh or 0), int(mi or 0), int(ss or 0),
                       int(((frac or ".")[1:] + "000000")[:6]))
    except ValueError as exc:
        raise FhirError(400, f"{value!r} is not a valid date ({exc})", "invalid") from None
    if frac:
        high = low + timedelta(microseconds=10 ** (6 - min(len(frac) - 1, 6)))
    elif ss or mi:
        high = low + (timedelta(seconds=1) if ss else timedelta(minutes=1))
    elif d:
        high = low + timedelta(days=1)
    elif mo:
        high = datetime(low.year + low.month // 12, low.month % 12 + 1, 1)
    else:
        high = datetime(low.year + 1, 1, 1)
    target = UTC if utc else zone
    if off:
        source = UTC if off == "Z" else datetime.strptime(off, "%z").tzinfo
        low, high = (_to_zone(t.replace(tzinfo=source), target) for t in (low, high))
    elif utc and hh is not None:
        low, high = (_to_zone(t.astimezone() if zone is None else t.replace(tzinfo=zone), UTC)
                     for t in (low, high))
    return DateParam(prefix, low, high)


def _to_zone(moment: datetime, zone: tzinfo | None) -> datetime:
    return (moment.astimezone(zone) if zone is not None else moment.astimezone()).replace(tzinfo=None)


# --------------------------------------------------------------------------- bundles
def searchset(resource_type: str, s: Search, resources: list[Json], total: int, included: list[Json]) -> Json:
    """A searchset Bundle with ``total`` and self/first/previous/next/last links (offset paging)."""
    base = fhir_base()

    def link(relation: str, offset: int) -> Json:
        query = [*s.used, ("_count", str(s.count)), ("_offset", str(max(offset, 0)))]
        return {"relation": relation, "url": f"{base}/{resource_type}?{urlencode(query)}"}

    links = [link("self", s.offset)]
    if s.count > 0:
        # Pages keep the grid of the asked offset: from _offset=1&_count=2 of 4, next and last are both 3.
        last = max(s.offset + (max(total, 1) - 1 - s.offset) // s.count * s.count, 0)
        links.append(link("first", 0))
        if s.offset > 0:  # from past the end, the previous page is the last one
            links.append(link("previous", max(min(s.offset - s.count, last), 0)))
        if s.offset + s.count < total:
            links.append(link("next", s.offset + s.count))
        links.append(link("last", last))
    entries = [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
               for r in resources]
    entries += [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "include"}}
                for r in included]
    bundle: Json = {"resourceType": "Bundle", "type": "searchset", "total": total, "link": links}
    if entries:
        bundle["entry"] = entries
    return bundle



@bp.route("/<path:rest>", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
def unknown_route(rest: str) -> Response:
    """What no FHIR route serves: 405 for a registered resource type (interaction not supported),
    404 otherwise - both as OperationOutcome, not the REST API's error shape."""
    if rest.split("/")[0] in REGISTRY:
        raise FhirError(405, f"{request.method} {rest} is not supported by this server", "not-supported")
    raise FhirError(404, f"{rest} is not a FHIR resource type or route of this server", "not-supported")
