"""The real Flask app over a hub whose bearer JWTs are real RS256 tokens against a JWKS file, and a client
that checks every FHIR answer with the npm R4 validator: shared by the FHIR HTTP tests of this folder."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hub.app import Hub
from interfaces.http.app import create_app
from tests.conftest import make_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, jwt

ISSUER = "https://idp.test"
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACC = "http://ris.example/accession"
FHIR_JSON = "application/fhir+json"


def order(acc: str, pid: str, *, subject: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:  # noqa: ANN401
    body = {
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "identifier": [{"type": {"coding": [{"system": V2, "code": "ACSN"}]}, "system": ACC, "value": acc}],
        "contained": [{"resourceType": "Patient", "id": "p", "identifier": [{"system": "urn:oid:1.2.3", "value": pid}],
                       "name": [{"family": "Http", "given": [pid]}], "birthDate": "1980-04-05", "gender": "female"}],
        "subject": subject or {"reference": "#p"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2", "display": "CT Chest"}]},
        "category": [{"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}]}],
        "occurrenceDateTime": "2031-02-03T09:45:00+01:00",
    }
    if subject is not None and not subject.get("reference", "").startswith("#"):
        del body["contained"]
    return {**body, **extra}


class Client:
    """The Flask test client of the real app with one Authorization header; every FHIR JSON answer is checked
    by the npm R4 validator."""

    def __init__(self, app: Any, authorization: str, r4: Any) -> None:  # noqa: ANN401 - flask.Flask, R4Validator
        self.http = app.test_client()
        self.hub = app.extensions["rishub"]
        self.authorization = authorization
        self.r4 = r4

    def send(self, method: str, path: str, body: Any = None, **headers: str) -> Any:  # noqa: ANN401
        hdrs = {"Authorization": self.authorization, "Accept": FHIR_JSON, **headers}
        if body is not None:
            hdrs["Content-Type"] = FHIR_JSON
        resp = self.http.open(f"/fhir/{path}", method=method, headers=hdrs,
                              data=json.dumps(body) if body is not None else None)
        if resp.mimetype == FHIR_JSON and resp.get_data():
            self.r4.check(resp.get_json())
        return resp

    def search_form(self, path: str, form: dict[str, str] | str, **headers: str) -> Any:  # noqa: ANN401
        """``POST /fhir/<path>`` with an ``application/x-www-form-urlencoded`` body (a dict, or the encoded text)."""
        hdrs = {"Authorization": self.authorization, "Accept": FHIR_JSON,
                "Content-Type": "application/x-www-form-urlencoded", **headers}
        resp = self.http.post(f"/fhir/{path}", headers=hdrs, data=form)
        if resp.mimetype == FHIR_JSON and resp.get_data():
            self.r4.check(resp.get_json())
        return resp


FhirWorld = tuple[Client, Callable[..., Client], dict[str, str]]


@contextmanager
def fhir_world(tmp_path: Path, db_url: str, r4: Any) -> Iterator[FhirWorld]:  # noqa: ANN401 - R4Validator
    """(a system/*.cruds client, a factory of clients for other scopes, Patient ids of P1 and P2)."""
    key = JsonWebKey.generate_key("RSA", 2048, is_private=True, options={"kid": "k1"})
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(is_private=False)]}))
    settings = make_settings(tmp_path / "d", db_url, RISHUB_AUTH_JWT_ISSUER=ISSUER, RISHUB_AUTH_JWT_AUDIENCE="rishub",
                             RISHUB_AUTH_JWT_JWKS_FILE=str(jwks))
    hub = Hub.open(settings, upgrade_schema=True)
    app = create_app(hub)

    def client(scope: str, **claims: str) -> Client:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": "rishub", "sub": "app", "iat": now, "exp": now + 300, "scope": scope, **claims}
        return Client(app, "Bearer " + jwt.encode({"alg": "RS256", "kid": "k1"}, body, key).decode(), r4)

    system = client("system/*.cruds")
    ids = {}
    for acc, pid in (("H-1", "P1"), ("H-2", "P2")):
        made = system.send("POST", "ServiceRequest", order(acc, pid))
        assert made.status_code == 201, made.get_data(as_text=True)
        ids[pid] = made.get_json()["subject"]["reference"].removeprefix("Patient/")
    try:
        yield system, client, ids
    finally:
        hub.close()
