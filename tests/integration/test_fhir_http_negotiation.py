"""FHIR R4 HTTP negotiation on the real app (interfaces/http/fhir/common.py, metadata.py, routes.py, app.py):
``Accept`` with the ``fhirVersion`` parameter (http.html#version-parameter), conditional-read headers that
never turn a committed write into a 304, the CapabilityStatement readable before a client has its token, and
the base URL answered as OperationOutcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from tests.integration.fhir_http import ACC, FHIR_JSON, FhirWorld, order


@pytest.mark.parametrize("accept", [f"{FHIR_JSON}; fhirVersion=4.0", f"{FHIR_JSON};fhirVersion=4.0.1",
                                    'application/fhir+json; charset=utf-8; fhirVersion="4.0"',
                                    "text/html, application/json;q=0.2", "*/*"])
def test_accept_of_r4_json_is_served(fhir: FhirWorld, accept: str) -> None:
    system, _, _ = fhir
    resp = system.send("GET", "ServiceRequest", Accept=accept)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == FHIR_JSON and resp.get_json()["total"] == 2


@pytest.mark.parametrize("accept", [f"{FHIR_JSON}; fhirVersion=3.0", "application/fhir+xml", "text/html",
                                    f"{FHIR_JSON};q=0"])
def test_accept_of_anything_else_is_406(fhir: FhirWorld, accept: str) -> None:
    system, _, _ = fhir
    resp = system.send("GET", "ServiceRequest", Accept=accept)
    assert resp.status_code == 406, resp.get_data(as_text=True)
    assert resp.get_json()["issue"][0]["code"] == "not-supported"


def test_conditional_headers_do_not_hide_a_committed_write(fhir: FhirWorld) -> None:
    """If-None-Match / If-Modified-Since make a read conditional (RFC 9110 13.1); on a PUT or POST that has
    been committed the answer is the write's, with its body, never 304 (which told a client nothing changed)."""
    system, _, _ = fhir
    sr = system.send("GET", f"ServiceRequest?identifier={ACC}|H-1").get_json()["entry"][0]["resource"]
    later = format_datetime(datetime.now(UTC) + timedelta(days=1), usegmt=True)
    put = system.send("PUT", f"ServiceRequest/{sr['id']}", {**sr, "status": "on-hold"},
                      **{"If-None-Match": "*", "If-Modified-Since": later})
    assert put.status_code == 200, put.get_data(as_text=True)
    assert put.get_json()["status"] == "on-hold" and put.headers["ETag"] == f'W/"{put.get_json()["meta"]["versionId"]}"'
    made = system.send("POST", "ServiceRequest", order("H-3", "P3"), **{"If-Modified-Since": later})
    assert made.status_code == 201 and made.get_json()["resourceType"] == "ServiceRequest"
    again = system.send("POST", "ServiceRequest", order("H-3", "P3"),
                        **{"If-None-Exist": f"identifier={ACC}|H-3", "If-None-Match": made.headers["ETag"]})
    assert again.status_code == 200 and again.get_json()["id"] == made.get_json()["id"]
    # A read stays conditional.
    assert system.send("GET", f"ServiceRequest/{sr['id']}", **{"If-None-Match": put.headers["ETag"]}).status_code == 304


def test_capability_statement_is_readable_before_a_token(fhir: FhirWorld) -> None:
    """With bearer JWTs configured an OAuth client reads /metadata first (fhirclient's prepare()); it holds
    no patient data. Every other route still needs the token."""
    system, _, _ = fhir
    anonymous = system.http.get("/fhir/metadata", headers={"Accept": FHIR_JSON})
    assert anonymous.status_code == 200, anonymous.get_data(as_text=True)
    system.r4.check(anonymous.get_json())
    assert anonymous.get_json()["resourceType"] == "CapabilityStatement"
    assert system.http.get("/fhir/Patient", headers={"Accept": FHIR_JSON}).status_code == 401


@pytest.mark.parametrize("path", ["/fhir", "/fhir/"])
def test_the_base_answers_as_fhir(fhir: FhirWorld, path: str) -> None:
    system, _, _ = fhir
    anonymous = system.http.get(path)
    assert anonymous.status_code == 401 and anonymous.mimetype == FHIR_JSON
    assert anonymous.get_json()["issue"][0]["code"] == "login"
    signed = system.http.post(path, headers={"Authorization": system.authorization})
    assert signed.status_code == 405 and signed.mimetype == FHIR_JSON, signed.get_data(as_text=True)
    system.r4.check(signed.get_json())
    assert signed.get_json()["issue"][0]["code"] == "not-supported"
