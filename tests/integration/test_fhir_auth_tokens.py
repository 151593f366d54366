"""SMART on FHIR authorization with real RS256 JWTs, validated by the hub against a JWKS file, inside a
request context of the real Flask app (authentication runs as for any request)."""

from __future__ import annotations

import base64
import json
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from hub.app import Hub
from hub.domain import Origin
from hub.errors import HubError
from interfaces.http.app import create_app
from interfaces.http.fhir.auth import authorize
from interfaces.serve import Listeners
from tests.conftest import make_settings
from tests.synthetic import write_series

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, jwt

ISSUER = "https://idp.test"
Token = Callable[..., str]


@pytest.fixture
def signer(tmp_path: Path) -> tuple[Path, Token]:
    key = JsonWebKey.generate_key("RSA", 2048, is_private=True, options={"kid": "k1"})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [key.as_dict(is_private=False)]}))

    def token(**claims: object) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": "rishub", "sub": "app", "iat": now, "exp": now + 300, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode({"alg": "RS256", "kid": "k1"}, body, key).decode()

    return path, token


@pytest.fixture
def app_and_token(tmp_path: Path, db_url: str, signer: tuple[Path, Token]) -> Iterator[tuple[object, Token]]:
    path, token = signer
    settings = make_settings(
        tmp_path / "d", db_url, RISHUB_AUTH_JWT_ISSUER=ISSUER, RISHUB_AUTH_JWT_AUDIENCE="rishub",
        RISHUB_AUTH_JWT_JWKS_FILE=str(path),
    )
    hub = Hub.open(settings, upgrade_schema=True)
    try:
        yield create_app(hub), token
    finally:
        hub.close()


def run(app: object, authorization: str, resource_type: str, interaction: str,
        method: str = "GET", path: str | None = None) -> set[str] | None:
    """Authenticate like a real request to ``/fhir/<type>`` (or ``path``) and call :func:`authorize`."""
    with app.test_request_context(path or f"/fhir/{resource_type}", method=method,  # type: ignore[attr-defined]
                                  headers={"Authorization": authorization}):
        refused = app.preprocess_request()  # type: ignore[attr-defined] - the app's own authentication
        assert refused is None, refused.get_json()
        return authorize(resource_type, interaction)


def denied(app: object, authorization: str, resource_type: str, interaction: str) -> HubError:
    with pytest.raises(HubError) as exc:
        run(app, authorization, resource_type, interaction)
    assert exc.value.http_status == 403
    return exc.value


def test_patient_token_sees_only_its_patient(app_and_token: tuple[object, Token]):
    app, token = app_and_token
    bearer = "Bearer " + token(scope="openid fhirUser launch/patient patient/ImagingStudy.rs", patient="pat-1")
    assert run(app, bearer, "ImagingStudy", "search") == {"pat-1"}
    assert run(app, bearer, "ImagingStudy", "read") == {"pat-1"}
    err = denied(app, bearer, "ImagingStudy", "create")
    assert "patient/ImagingStudy.c" in err.message and "pat-1" not in err.message
    denied(app, bearer, "Patient", "read")  # no scope for that type


def test_v1_patient_wildcard_and_scope_as_list(app_and_token: tuple[object, Token]):
    app, token = app_and_token
    bearer = "Bearer " + token(scope=["launch/patient", "patient/*.read"], patient="pat-2")
    assert run(app, bearer, "ImagingStudy", "search") == {"pat-2"}
    assert run(app, bearer, "Patient", "read") == {"pat-2"}
    denied(app, bearer, "ServiceRequest", "update")


def test_patient_scope_without_launch_patient_is_refused(app_and_token: tuple[object, Token]):
    app, token = app_and_token
    err = denied(app, "Bearer " + token(scope="patient/ImagingStudy.rs"), "ImagingStudy", "search")
    assert "launch context" in err.message


def test_system_scopes(app_and_token: tuple[object, Token]):
    app, token = app_and_token
    reader = "Bearer " + token(scope="system/*.read")
    assert run(app, reader, "ImagingStudy", "search") is None
    assert run(app, reader, "Endpoint", "read") is None
    denied(app, reader, "ServiceRequest", "create")
    everything = "Bearer " + token(scope="system/*.cruds")
    for interaction in ("read", "search", "create", "update", "delete"):
        assert run(app, everything, "ServiceRequest", interaction) is None


def test_user_scopes_are_unrestricted(app_and_token: tuple[object, Token]):
    app, token = app_and_token
    bearer = "Bearer " + token(scope="openid fhirUser user/ImagingStudy.rs", patient="pat-3")
    assert run(app, bearer, "ImagingStudy", "search") is None
    denied(app, bearer, "ImagingStudy", "delete")


def test_malformed_scope_grants_nothing_and_no_role_fallback(app_and_token: tuple[object, Token]):
    app, token = app_and_token
    # Out-of-order v2 letters: a SMART token whose only scope is malformed gets nothing,
    # even though the default role ("user") would open the rest of the API.
    bearer = "Bearer " + token(scope="patient/ImagingStudy.sr", patient="pat-4")
    denied(app, bearer, "ImagingStudy", "search")
    narrowed = "Bearer " + token(scope="system/ImagingStudy.rs?modality=CT")
    denied(app, narrowed, "ImagingStudy", "search")


def test_tokens_without_smart_scopes_follow_roles(app_and_token: tuple[object, Token]):
    app, token = app_and_token
    # No roles claim: the default role ("user") applies; no SMART scope: unrestricted like the rest of the API.
    assert run(app, "Bearer " + token(scope="openid profile"), "ImagingStudy", "search") is None
    assert run(app, "Bearer " + token(), "Patient", "read") is None
    # Only "uploader": a route declared for uploaders (POST /instances) passes the app's role gate;
    # authorize still refuses FHIR access to a token with neither a SMART scope nor the user role.
    with pytest.raises(HubError) as exc:
        run(app, "Bearer " + token(roles=["uploader"]), "ImagingStudy", "create", method="POST", path="/instances")
    assert exc.value.http_status == 403 and "no SMART scope" in exc.value.message


def test_admin_role_overrides_scopes(app_and_token: tuple[object, Token]):
    app, token = app_and_token
    bearer = "Bearer " + token(roles=["admin"], scope="patient/ImagingStudy.rs", patient="pat-5")
    assert run(app, bearer, "ImagingStudy", "search") is None
    assert run(app, bearer, "ServiceRequest", "delete") is None
    # "user" role does not: scopes narrow a user token.
    user = "Bearer " + token(roles="user", scope="patient/ImagingStudy.rs", patient="pat-5")
    assert run(app, user, "ImagingStudy", "search") == {"pat-5"}


def test_basic_auth_is_unrestricted(app_and_token: tuple[object, Token]):
    app, _ = app_and_token
    basic = "Basic " + base64.b64encode(b"admin:admin-secret-pw").decode()
    assert run(app, basic, "ImagingStudy", "search") is None
    assert run(app, basic, "ServiceRequest", "create") is None


def test_invalid_token_never_reaches_authorize(app_and_token: tuple[object, Token]):
    app, token = app_and_token
    forged = token(scope="system/*.cruds", iss="https://evil.test")
    with app.test_request_context("/fhir/ImagingStudy", headers={"Authorization": "Bearer " + forged}):  # type: ignore[attr-defined]
        resp = app.preprocess_request()  # type: ignore[attr-defined]
        assert resp is not None and resp.status_code == 401
        with pytest.raises(HubError) as exc:
            authorize("ImagingStudy", "search")
        assert exc.value.http_status == 401


@dataclass
class Served:
    """``rishub``'s listeners over a hub that validates JWTs of ``token``; ``get`` sends one GET with a bearer."""

    hub: Hub
    base: str
    token: Token

    def get(self, bearer: str, url: str, params: dict[str, Any] | None = None) -> requests.Response:
        return requests.get(url, params=params, headers={"Authorization": f"Bearer {bearer}",
                                                         "Accept": "application/fhir+json"}, timeout=30)

    def store(self, tmp: Path, patient_id: str, seed: str) -> None:
        for p in write_series(tmp / patient_id, 1, seed=seed, patient_id=patient_id):
            self.hub.ingest.store(Origin("import"), p)


@pytest.fixture
def served(tmp_path: Path, db_url: str, signer: tuple[Path, Token]) -> Iterator[Served]:
    path, token = signer
    hub = Hub.open(make_settings(tmp_path / "d", db_url, RISHUB_AUTH_JWT_ISSUER=ISSUER,
                                 RISHUB_AUTH_JWT_AUDIENCE="rishub", RISHUB_AUTH_JWT_JWKS_FILE=str(path)),
                   upgrade_schema=True)
    ls = Listeners(hub)
    ls.start()
    try:
        yield Served(hub, f"http://127.0.0.1:{ls.http.port}/fhir", token)
    finally:
        ls.stop()
        hub.close()


def test_patient_context_over_http(tmp_path: Path, served: Served) -> None:
    """Through the real routes: a patient-context token finds only its patient's studies and orders,
    cannot read another patient's study, and gets 403 + ``insufficient_scope`` for a write; a system
    token sees both patients."""
    for pid in ("PAT-A", "PAT-B"):
        served.store(tmp_path, pid, f"smart-{pid}")
    base, get, token = served.base, served.get, served.token
    system = token(scope="system/*.read")
    everyone = get(system, f"{base}/ImagingStudy").json()
    by_patient = {e["resource"]["subject"]["reference"]: e["resource"]["id"] for e in everyone["entry"]}
    assert len(by_patient) == 2
    (a_ref, a_study), (b_ref, b_study) = sorted(by_patient.items())
    a_id = a_ref.removeprefix("Patient/")
    mine = token(scope="launch/patient patient/ImagingStudy.rs patient/Patient.rs", patient=a_id)
    seen = get(mine, f"{base}/ImagingStudy").json()
    assert [e["resource"]["id"] for e in seen.get("entry", [])] == [a_study]
    assert get(mine, f"{base}/ImagingStudy/{a_study}").status_code == 200
    assert get(mine, f"{base}/ImagingStudy/{b_study}").status_code == 404
    assert get(mine, f"{base}/Patient/{b_ref.removeprefix('Patient/')}").status_code == 404
    write = requests.post(f"{base}/ServiceRequest", json={"resourceType": "ServiceRequest"},
                          headers={"Authorization": f"Bearer {mine}", "Content-Type": "application/fhir+json"},
                          timeout=30)
    assert write.status_code == 403 and "insufficient_scope" in write.headers.get("WWW-Authenticate", "")
    assert write.json()["resourceType"] == "OperationOutcome"


def test_include_follows_the_scopes_of_the_included_type(tmp_path: Path, served: Served) -> None:
    """SMART App Launch 2.x: ``_include`` returns a Patient / Endpoint only under a scope that reads it (the
    same :func:`authorize` as GET /Patient); one it may not read is left out and reported by an
    OperationOutcome entry with search.mode ``outcome`` (R4 search.html#errors)."""
    served.store(tmp_path, "PAT-A", "smart-inc")
    base, get, token = served.base, served.get, served.token
    include = {"_include": ["ImagingStudy:subject", "ImagingStudy:endpoint"]}
    study = get(token(scope="system/*.read"), f"{base}/ImagingStudy").json()["entry"][0]["resource"]
    a_id = study["subject"]["reference"].removeprefix("Patient/")
    studies_only = token(scope="launch/patient patient/ImagingStudy.rs", patient=a_id)
    assert get(studies_only, f"{base}/Patient/{a_id}").status_code == 403
    bundle = get(studies_only, f"{base}/ImagingStudy", include).json()
    modes = [(e["search"]["mode"], e["resource"]["resourceType"]) for e in bundle["entry"]]
    assert modes == [("match", "ImagingStudy"), ("outcome", "OperationOutcome")]
    issue = bundle["entry"][1]["resource"]["issue"][0]
    assert issue["code"] == "suppressed" and f"Patient/{a_id}" in issue["diagnostics"]
    assert "Endpoint/" in issue["diagnostics"]

    both = token(scope="launch/patient patient/ImagingStudy.rs patient/Patient.rs patient/Endpoint.rs",
                 patient=a_id)
    bundle = get(both, f"{base}/ImagingStudy", include).json()
    included = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"]
                if e["search"]["mode"] == "include"}
    assert included == {("Patient", a_id), ("Endpoint", "dicomweb-wado-rs")}
    assert all(e["search"]["mode"] != "outcome" for e in bundle["entry"])
