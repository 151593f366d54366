"""HTTP: a real WSGI server (waitress) with Orthanc-shaped /system, /statistics, /changes, behind auth."""

from __future__ import annotations

import json
import os
import stat
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest

from hub.app import Hub
from tests.conftest import TEST_FILES, make_settings


def get(port: int, path: str, auth: str | None = None):  # -> (status, headers, json)
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read())


def basic(user: str, password: str) -> str:
    return "Basic " + b64encode(f"{user}:{password}".encode()).decode()


ADMIN = basic("admin", "admin-secret-pw")


def test_statistics_and_system_in_orthanc_shape(hub: Hub, listeners):
    from hub.domain import Origin

    hub.ingest.store(Origin("import"), TEST_FILES / "CT_small.dcm")
    status, headers, body = get(listeners.http.port, "/statistics", ADMIN)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body == {
        "CountInstances": 1, "CountPatients": 1, "CountSeries": 1, "CountStudies": 1,
        "TotalDiskSize": "39206", "TotalDiskSizeMB": 0,
        "TotalUncompressedSize": "39206", "TotalUncompressedSizeMB": 0,
    }
    status, _, system = get(listeners.http.port, "/system", ADMIN)
    assert status == 200
    assert system["DicomAet"] == "RISHUB" and system["DicomPort"] == hub.settings.dicom.port
    for key in ("ApiVersion", "DatabaseVersion", "HttpPort", "Name", "Version", "IsHttpServerSecure"):
        assert key in system
    status, _, changes = get(listeners.http.port, "/changes?since=0&limit=2", ADMIN)
    assert status == 200 and changes["Done"] is False and changes["Last"] == 2
    assert changes["Changes"][0]["ChangeType"] == "NewInstance"
    assert changes["Changes"][0]["Path"] == "/instances/f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af"
    _, _, tail = get(listeners.http.port, "/changes?since=4", ADMIN)
    assert tail == {"Changes": [], "Done": True, "Last": 4}
    status, _, err = get(listeners.http.port, "/changes?limit=abc", ADMIN)
    assert status == 400 and err["HttpStatus"] == 400 and "limit" in err["Message"]


def test_every_route_needs_authentication(hub: Hub, listeners):
    port = listeners.http.port
    for path in ("/system", "/statistics", "/changes", "/no-such-route"):
        status, headers, body = get(port, path)
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith("Basic")
        assert body["HttpStatus"] == 401
    assert get(port, "/system", basic("admin", "wrong"))[0] == 401
    assert get(port, "/system", basic("nobody", "admin-secret-pw"))[0] == 401
    assert get(port, "/system", "Basic !!!notbase64")[0] == 401
    status, _, body = get(port, "/no-such-route", ADMIN)
    assert status == 404 and body["HttpError"] == "Not Found"


def test_roles_are_enforced(hub: Hub, listeners):
    hub.auth.set_password("reader", "reader-pw-123", ("user",))
    hub.auth.set_password("modality", "upload-pw-123", ("uploader",))
    port = listeners.http.port
    assert get(port, "/statistics", basic("reader", "reader-pw-123"))[0] == 200
    status, _, body = get(port, "/statistics", basic("modality", "upload-pw-123"))
    assert status == 403 and "user" in body["Message"]


def test_open_mode_needs_no_credentials(tmp_path: Path, db_url: str):
    from interfaces.serve import Listeners

    hub = Hub.open(make_settings(tmp_path / "d", db_url, RISHUB_HTTP_OPEN="true"), upgrade_schema=True)
    ls = Listeners(hub)
    ls.start()
    try:
        assert get(ls.http.port, "/statistics")[0] == 200
    finally:
        ls.stop()
        hub.close()


def test_generated_admin_password_is_written_0600_and_printed_once(tmp_path: Path, db_url: str):
    settings = make_settings(tmp_path / "d", db_url, RISHUB_ADMIN_PASSWORD="")
    hub = Hub.open(settings, upgrade_schema=True)
    try:
        password = hub.generated_admin_password
        assert password and len(password) >= 16
        path = tmp_path / "d" / "admin-password.txt"
        assert path.read_text().strip() == password
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert hub.auth.check_basic("admin", password) is not None
    finally:
        hub.close()
    again = Hub.open(settings, upgrade_schema=True)
    try:
        assert again.generated_admin_password is None
        assert again.auth.check_basic("admin", password) is not None
    finally:
        again.close()


@pytest.fixture
def jwks(tmp_path: Path):
    import warnings

    import authlib.deprecate  # noqa: F401

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from authlib.jose import JsonWebKey, jwt

    key = JsonWebKey.generate_key("RSA", 2048, is_private=True, options={"kid": "k1"})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [key.as_dict(is_private=False)]}))

    def token(**claims: object) -> str:
        now = int(time.time())
        body = {"iss": "https://idp.test", "aud": "rishub", "sub": "svc", "iat": now, "exp": now + 300, **claims}
        return jwt.encode({"alg": "RS256", "kid": "k1"}, body, key).decode()

    return path, token


def test_jwt_bearer_tokens(tmp_path: Path, db_url: str, jwks):
    from interfaces.serve import Listeners

    path, token = jwks
    settings = make_settings(
        tmp_path / "d", db_url, RISHUB_AUTH_JWT_ISSUER="https://idp.test", RISHUB_AUTH_JWT_AUDIENCE="rishub",
        RISHUB_AUTH_JWT_JWKS_FILE=str(path),
    )
    hub = Hub.open(settings, upgrade_schema=True)
    ls = Listeners(hub)
    ls.start()
    port = ls.http.port
    try:
        assert get(port, "/statistics", "Bearer " + token())[0] == 200
        assert get(port, "/statistics", "Bearer " + token(roles=["uploader"]))[0] == 403
        assert get(port, "/statistics", "Bearer " + token(iss="https://evil.test"))[0] == 401
        assert get(port, "/statistics", "Bearer " + token(aud="other"))[0] == 401
        assert get(port, "/statistics", "Bearer " + token(exp=int(time.time()) - 3600))[0] == 401
        forged = token()[:-6] + "AAAAAA"
        assert get(port, "/statistics", "Bearer " + forged)[0] == 401
        status, headers, _ = get(port, "/statistics", "Bearer garbage")
        assert status == 401 and "Bearer" in headers["WWW-Authenticate"]
    finally:
        ls.stop()
        hub.close()
