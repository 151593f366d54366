"""Shared by the DICOMweb routes (PS3.18): base URL, content negotiation, JSON responses with gzip
and validators."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable
from datetime import UTC, datetime

from flask import Response, request

from hub.errors import HubError
from interfaces.http.context import hub as hub  # re-exported for the DICOMweb modules

DICOM_JSON = "application/dicom+json"


_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def check_uids(*uids: str | None) -> None:
    """400 for a URL segment that cannot be a UID (PS3.5 9.1: digits and dots, at most 64)."""
    for uid in uids:
        if uid is not None and (len(uid) > 64 or not _UID.match(uid)):
            raise HubError("bad_request", "a study, series or instance UID has digits and dots only (PS3.5 9.1)")




def base_url() -> str:
    """Absolute URL of the DICOMweb root as the client sees it: the configured public base URL, else
    the reverse proxy's X-Forwarded-Proto/-Host/-Prefix, else the request's own host."""
    configured = hub().settings.http.public_base_url.rstrip("/")
    if configured:
        return configured + "/dicom-web"
    # waitress has already applied X-Forwarded-Proto/-Host/-Port of a trusted proxy (settings
    # http.trusted_proxy) to the scheme and host, and dropped them from anyone else.
    proto, host = request.scheme, request.host
    port = str(request.environ.get("SERVER_PORT", ""))
    default = "443" if proto == "https" else "80"
    if ":" not in host.rsplit("]", 1)[-1] and port and port != default:
        # a Host header without the port (dicomweb-client sends one) on a direct connection to a
        # non-default port: the port it connected to is the one its next request must use
        host = f"{host}:{port}"
    prefix = ""
    if hub().settings.http.trusted_proxy:
        prefix = request.headers.get("X-Forwarded-Prefix", "").split(",")[0].strip().rstrip("/")
        if prefix and not prefix.startswith("/"):
            prefix = "/" + prefix
    return f"{proto}://{host}{prefix}/dicom-web"


def accept_list(header: str | None) -> list[tuple[str, dict[str, str], float]]:
    """The media ranges of an Accept header (RFC 9110 12.5.1), best first: (type, params, q)."""
    from interfaces.http.multipart import parse_content_type, split_unquoted

    out = []
    for i, item in enumerate(split_unquoted(header or "*/*", ",")):
        if not item.strip():
            continue
        mtype, params = parse_content_type(item)
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        if q > 0:
            out.append((mtype, params, q, -i))
    out.sort(key=lambda x: (x[2], x[3]), reverse=True)
    return [(t, p, q) for t, p, q, _ in out]


def matches(range_type: str, offered: str) -> bool:
    if range_type in ("*/*", offered):
        return True
    return range_type.endswith("/*") and offered.split("/")[0] == range_type[:-2]


def negotiate(offered: Iterable[str]) -> str:
    """The offered media type the Accept header prefers; 406 when it accepts none of them."""
    offered = list(offered)
    for mtype, _, _ in accept_list(request.headers.get("Accept")):
        for o in offered:
            if matches(mtype, o):
                return o
    raise HubError("not_acceptable", f"none of {', '.join(offered)} is acceptable")


def json_response(body: bytes, *, status: int = 200, etag: str | None = None,
                  last_modified: datetime | None = None, headers: dict[str, str] | None = None) -> Response:
    """A DICOM JSON response; gzip when the client accepts it, 304 when its validator still holds
    (If-None-Match first, else If-Modified-Since: RFC 9110 13.2.2)."""
    mtype = negotiate([DICOM_JSON, "application/json"])
    if last_modified is not None:
        last_modified = last_modified.replace(microsecond=0, tzinfo=last_modified.tzinfo or UTC)
    fresh = (etag and request.if_none_match.contains(etag)) or (
        not request.if_none_match and last_modified is not None and request.if_modified_since is not None
        and last_modified <= request.if_modified_since)
    if fresh:
        resp = Response(status=304)
        if etag:
            resp.set_etag(etag)
        return resp
    resp = Response(body, status=status, mimetype=mtype)
    if len(body) > 1024 and "gzip" in request.headers.get("Accept-Encoding", ""):
        resp.set_data(gzip.compress(body, compresslevel=1))
        resp.headers["Content-Encoding"] = "gzip"
        resp.headers["Vary"] = "Accept-Encoding"
    if etag:
        resp.set_etag(etag)
    if last_modified is not None:
        resp.last_modified = last_modified
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp
