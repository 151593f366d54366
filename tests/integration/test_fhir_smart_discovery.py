"""SMART App Launch 2.x discovery (interfaces/http/fhir/smart.py): ``/fhir/.well-known/smart-configuration``
and the CapabilityStatement's oauth-uris extension, on a served hub over loopback, read with ``requests`` and
with the ``fhirclient`` PyPI client; the settings that configure it (hub/settings.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from hub.app import Hub
from hub.settings import SettingsError
from interfaces.serve import Listeners
from tests.conftest import make_settings
from tests.integration.fhir_http import ISSUER, JsonWebKey, jwt

TOKEN_URL = "https://idp.test/oauth2/token"
AUTHORIZE_URL = "https://idp.test/oauth2/authorize"
WELL_KNOWN = "/.well-known/smart-configuration"


def _jwks(tmp_path: Path) -> tuple[Path, object]:
    key = JsonWebKey.generate_key("RSA", 2048, is_private=True, options={"kid": "k1"})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [key.as_dict(is_private=False)]}))
    return path, key


def _served(tmp_path: Path, db_url: str, **env: str) -> Iterator[str]:
    hub = Hub.open(make_settings(tmp_path / "d", db_url, **env), upgrade_schema=True)
    ls = Listeners(hub)
    ls.start()
    try:
        yield f"http://127.0.0.1:{ls.http.port}/fhir"
    finally:
        ls.stop()
        hub.close()


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, object]:
    return _jwks(tmp_path)


@pytest.fixture
def smart_base(tmp_path: Path, db_url: str, key: tuple[Path, object]) -> Iterator[str]:
    yield from _served(tmp_path, db_url, RISHUB_AUTH_JWT_ISSUER=ISSUER, RISHUB_AUTH_JWT_AUDIENCE="rishub",
                       RISHUB_AUTH_JWT_JWKS_FILE=str(key[0]), RISHUB_AUTH_JWT_TOKEN_ENDPOINT=TOKEN_URL,
                       RISHUB_AUTH_JWT_AUTHORIZATION_ENDPOINT=AUTHORIZE_URL)


def test_discovery_is_served_without_a_token_once_configured(smart_base: str, key: tuple[Path, object],
                                                            r4: Any) -> None:  # noqa: ANN401 - R4Validator
    """SMART App Launch conformance.html: the document a client reads before it has a token."""
    resp = requests.get(smart_base + WELL_KNOWN, timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/json")
    doc = resp.json()
    assert doc["token_endpoint"] == TOKEN_URL and doc["authorization_endpoint"] == AUTHORIZE_URL
    assert doc["grant_types_supported"] == ["client_credentials", "authorization_code"]
    assert doc["code_challenge_methods_supported"] == ["S256"] and doc["response_types_supported"] == ["code"]
    assert {"permission-v1", "permission-v2", "permission-patient", "permission-user",
            "client-confidential-asymmetric"} == set(doc["capabilities"])
    assert "issuer" not in doc  # only with sso-openid-connect
    scopes = set(doc["scopes_supported"])
    assert {"system/ImagingStudy.rs", "patient/ServiceRequest.crus", "user/Patient.rs", "system/Endpoint.rs",
            "patient/ImagingStudy.read", "system/ServiceRequest.write"} <= scopes
    assert "patient/Patient.write" not in scopes  # Patient is read-only here

    # The CapabilityStatement too (a client reads it before it has a token); everything else needs
    # authentication, and a token from the issuer works as before.
    assert requests.get(smart_base + "/metadata", timeout=10).status_code == 200
    assert requests.get(smart_base + "/ImagingStudy", timeout=10).status_code == 401
    now = int(time.time())
    token = jwt.encode({"alg": "RS256", "kid": "k1"}, {"iss": ISSUER, "aud": "rishub", "sub": "app", "iat": now,
                                                       "exp": now + 300, "scope": "system/*.rs"}, key[1]).decode()
    found = requests.get(smart_base + "/ImagingStudy", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert found.status_code == 200 and found.json()["resourceType"] == "Bundle"
    meta = requests.get(smart_base + "/metadata", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    r4.check(meta)  # the npm R4 validator accepts the CapabilityStatement with the extension
    uris = meta["rest"][0]["security"]["extension"][0]
    assert uris["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    assert {e["url"]: e["valueUri"] for e in uris["extension"]} == {"token": TOKEN_URL, "authorize": AUTHORIZE_URL}
    api = requests.get(smart_base.removesuffix("/fhir") + "/openapi.json",
                       headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    assert api["paths"]["/fhir/.well-known/smart-configuration"]["get"]["security"] == []
    assert api["paths"]["/fhir/metadata"]["get"]["security"] == []  # public with bearer JWTs configured
    assert "security" not in api["paths"]["/fhir/ImagingStudy"]["get"]  # the document-wide requirement applies


def test_fhirclient_finds_the_oauth_endpoints(smart_base: str, key: tuple[Path, object]) -> None:
    """fhirclient (PyPI) reads the oauth-uris extension of the CapabilityStatement (SMART 1.0 discovery,
    still what it uses) and builds its authorize redirect on the configured endpoint."""
    from fhirclient import client

    now = int(time.time())
    token = jwt.encode({"alg": "RS256", "kid": "k1"}, {"iss": ISSUER, "aud": "rishub", "sub": "app", "iat": now,
                                                       "exp": now + 300, "scope": "system/*.rs"}, key[1]).decode()
    smart = client.FHIRClient(settings={"app_id": "rishub-test", "api_base": smart_base + "/",
                                       "redirect_uri": "http://127.0.0.1/callback"})
    assert smart.prepare() is False  # read /metadata without a token: an OAuth server, not yet authorized
    assert smart.server.auth.auth_type == "oauth2"
    smart.server.session.headers["Authorization"] = f"Bearer {token}"
    redirect = smart.server.authorize_uri  # the redirect a user-facing app sends the browser to, with PKCE
    assert redirect.startswith(AUTHORIZE_URL + "?") and "code_challenge_method=S256" in redirect


def test_without_a_token_endpoint_the_route_is_not_public(tmp_path: Path, db_url: str,
                                                         key: tuple[Path, object]) -> None:
    """Secure by default: nothing is readable anonymously unless configured; an authenticated caller gets a
    FHIR 404 that says what to configure, and the CapabilityStatement has no oauth-uris."""
    for base in _served(tmp_path, db_url, RISHUB_AUTH_JWT_ISSUER=ISSUER, RISHUB_AUTH_JWT_JWKS_FILE=str(key[0])):
        assert requests.get(base + WELL_KNOWN, timeout=10).status_code == 401
        admin = ("admin", "admin-secret-pw")
        missing = requests.get(base + WELL_KNOWN, auth=admin, timeout=10)
        assert missing.status_code == 404 and "token_endpoint" in missing.json()["issue"][0]["diagnostics"]
        security = requests.get(base + "/metadata", auth=admin, timeout=10).json()["rest"][0]["security"]
        assert "extension" not in security


@pytest.mark.parametrize(("env", "word"), [
    ({"RISHUB_AUTH_JWT_TOKEN_ENDPOINT": TOKEN_URL}, "needs bearer tokens"),
    ({"RISHUB_AUTH_JWT_ISSUER": ISSUER, "RISHUB_AUTH_JWT_TOKEN_ENDPOINT": "idp.test/token"}, "http(s) URL"),
    ({"RISHUB_AUTH_JWT_ISSUER": ISSUER, "RISHUB_AUTH_JWT_AUTHORIZATION_ENDPOINT": AUTHORIZE_URL},
     "needs auth.jwt.token_endpoint"),
])
def test_settings_refuse_an_incomplete_smart_configuration(tmp_path: Path, key: tuple[Path, object],
                                                           env: dict[str, str], word: str) -> None:
    if "RISHUB_AUTH_JWT_ISSUER" in env:
        env = {**env, "RISHUB_AUTH_JWT_JWKS_FILE": str(key[0])}
    with pytest.raises(SettingsError, match=word.replace("(", r"\(").replace(")", r"\)")):
        make_settings(tmp_path / "d", "sqlite://", **env)
