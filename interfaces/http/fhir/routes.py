"""Routes every FHIR resource type shares (http://hl7.org/fhir/R4/http.html): ``POST [type]/_search``,
vread of the current version, and an OperationOutcome for whatever no route serves."""

from __future__ import annotations

from flask import Response, current_app, request

from interfaces.http.auth import requires
from interfaces.http.fhir.common import REGISTRY, FhirError, bp


@bp.post("/<resource_type>/_search")
@requires("user")  # a search is a read: the GET view's scope check decides
def post_search(resource_type: str) -> Response:
    """``POST [base]/[type]/_search`` with ``application/x-www-form-urlencoded`` parameters (R4 http.html#search):
    the same search as the GET, answered by the GET view over the merged parameters (:func:`query_args`)."""
    support = REGISTRY.get(resource_type)
    if support is None:
        raise FhirError(404, f"{resource_type} is not a FHIR resource type of this server", "not-supported")
    if "search-type" not in support.interactions:
        raise FhirError(405, f"{resource_type} cannot be searched", "not-supported")
    if request.get_data(cache=True) and request.mimetype != "application/x-www-form-urlencoded":
        raise FhirError(415, "POST _search takes application/x-www-form-urlencoded parameters", "not-supported")
    adapter = current_app.create_url_adapter(request)
    assert adapter is not None
    endpoint, values = adapter.match(f"{bp.url_prefix}/{resource_type}", method="GET")
    return current_app.view_functions[endpoint](**values)


@bp.get("/<resource_type>/<rid>/_history/<vid>")
def vread(resource_type: str, rid: str, vid: str) -> Response:
    """``GET [type]/[id]/_history/[vid]`` (R4 http.html#vread): the read of the current version when ``vid`` names
    it (what ``Location`` on a create points to); the hub keeps no history, so an earlier version is a 404."""
    support = REGISTRY.get(resource_type)
    if support is None or "vread" not in support.interactions:
        raise FhirError(404 if support is None else 405, f"vread of {resource_type} is not supported",
                        "not-supported")
    adapter = current_app.create_url_adapter(request)
    assert adapter is not None
    endpoint, values = adapter.match(f"{bp.url_prefix}/{resource_type}/{rid}", method="GET")
    resp = current_app.view_functions[endpoint](**values)  # the read: 404 and scopes as there
    if resp.headers.get("ETag", "").removeprefix("W/").strip('"') != vid:
        raise FhirError(404, f"{resource_type}/{rid} version {vid} is not kept: only the current version is",
                        "not-found")
    return resp


@bp.route("/", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"], defaults={"rest": ""},
          strict_slashes=False)  # /fhir and /fhir/ alike, no redirect
@bp.route("/<path:rest>", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
@requires("user")  # any caller learns 404/405, not a 403 for lacking the admin role of the REST API's writes
def unknown_route(rest: str) -> Response:
    """What no FHIR route serves: 405 for the base (batch/transaction, system search and history are not
    offered) and for a registered resource type (interaction not supported), 404 otherwise - all as
    OperationOutcome, not the REST API's error shape."""
    if not rest:
        raise FhirError(405, f"{request.method} [base]: batch, transaction, system search and history are not "
                             "supported by this server", "not-supported")
    if rest.split("/")[0] in REGISTRY:
        raise FhirError(405, f"{request.method} {rest} is not supported by this server", "not-supported")
    raise FhirError(404, f"{rest} is not a FHIR resource type or route of this server", "not-supported")
