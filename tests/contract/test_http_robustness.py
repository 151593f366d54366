"""Every HTTP route, whatever it is: a read-only user gets 403 on writes, and unknown ids or garbage
bodies get a 4xx with Orthanc's error JSON, never a 500 (issue 4, "Auth and errors")."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hub.app import Hub
from interfaces.http import create_app
from tests.contract.conftest import Http

_PARAM = re.compile(r"<(?:(?P<conv>[a-z]+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
UNKNOWN_ID = "00000000-00000000-00000000-00000000-00000000"
GARBAGE: list[dict[str, Any]] = [
    {"data": b"\x00\x01not json nor dicom", "headers": {"Content-Type": "application/octet-stream"}},
    {"data": b"{\"Level\": 42, \"Query\": [", "headers": {"Content-Type": "application/json"}},
    {"json": {"Level": "Nowhere", "Query": "x", "Resources": 5, "Replace": 7, "AET": []}},
]


def _routes(hub: Hub, *, writes_only: bool = False) -> list[tuple[str, str]]:
    """(method, concrete path) for every rule, parameters filled with values that name nothing;
    ``writes_only``: the non-GET routes that need more than the ``user`` role."""
    app = create_app(hub)
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        if writes_only and getattr(app.view_functions[rule.endpoint], "required_role", None) == "user":
            continue  # read-only POSTs (/tools/find, archive creation) are open to readers
        path = _PARAM.sub(lambda m: "7" if m.group("conv") in ("int", "float") else UNKNOWN_ID, rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if writes_only and method == "GET":
                continue
            out.append((method, path))
    return out


def _is_orthanc_error(resp: Any) -> bool:
    """The protocol's own error body: Orthanc-style JSON, or a FHIR OperationOutcome under /fhir."""
    try:
        body = resp.json()
    except ValueError:
        return False
    if isinstance(body, dict) and "/fhir/" in resp.url and body.get("resourceType") == "OperationOutcome":
        return bool(body.get("issue"))
    return isinstance(body, dict) and body.get("HttpStatus") == resp.status_code and "Message" in body


def test_read_only_user_gets_403_on_every_write(hub: Hub, api: Http) -> None:
    hub.auth.set_password("reader", "reader-secret-pw", ("user",))
    reader = Http(api.base, ("reader", "reader-secret-pw"))
    writes = _routes(hub, writes_only=True)
    assert writes, "no write routes registered"
    for method, path in writes:
        resp = reader.request(method, path, json={})
        assert resp.status_code == 403, (method, path, resp.status_code, resp.text[:200])
        assert _is_orthanc_error(resp), (method, path)


@pytest.mark.parametrize("garbage", range(len(GARBAGE)))
def test_unknown_ids_and_garbage_bodies_never_give_500(hub: Hub, api: Http, garbage: int) -> None:
    for method, path in _routes(hub):
        kwargs = GARBAGE[garbage] if method != "GET" else {}
        resp = api.request(method, path, **kwargs)
        assert resp.status_code < 500 or resp.status_code in (502, 504), (method, path, resp.status_code,
                                                                          resp.text[:300])
        if resp.status_code >= 400:
            assert _is_orthanc_error(resp), (method, path, resp.status_code, resp.text[:300])
            assert "Traceback" not in resp.text
