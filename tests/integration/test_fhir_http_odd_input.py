"""Odd input at ``/fhir`` gets the protocol's own error, never a 500 (interfaces/http/fhir/search.py, common.py,
service_request.py; hub/services/fhir.py, fhir_orders.py; mappings/fhir_values.py, fhir_to_order.py): dates
past year 9999 or before year 1 once in UTC, offsets past 14:00, ``_history`` references, Unicode digits that
``str.isdigit`` takes and ``int`` refuses, ids past BIGINT, a subject that is not a Reference, JSON nested past
the parser. A real fault of the server is a 500 OperationOutcome whose log line holds no patient value."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from mappings.dicom_json_to_order import dicom_json_to_order
from tests.integration.fhir_http import ACC, FhirWorld, order

BIG = "9" * 30

SEARCHES = [
    "ImagingStudy?started=2030-01-01T10:00:00%2B99:00", "ImagingStudy?started=2030-01-01T10:00:00%2B14:60",
    "ImagingStudy?started=0000", "ImagingStudy?started=٢٠٢٠", "ImagingStudy?started=2030-13",
    "Patient?birthdate=0000-01-01", "ServiceRequest?authored=2030-02-30", "ServiceRequest?authored=0000",
    "ImagingStudy?_count=²", "ImagingStudy?_offset=²", "Patient?_count=¹²",
]
EMPTY = [
    "ImagingStudy?patient=Patient/_history/1", "ImagingStudy?patient=_history/x", "ImagingStudy?subject=/",
    "ImagingStudy?basedon=ServiceRequest/²", f"ImagingStudy?basedon=ServiceRequest/{BIG}", "ImagingStudy?_id=o-²",
    f"ImagingStudy?_id=o-{BIG}", "ServiceRequest?patient=Patient/_history/1",
]
READS = ["ServiceRequest/²", f"ServiceRequest/{BIG}", "ImagingStudy/o-²", f"ImagingStudy/o-{BIG}", "Patient/²",
         "ServiceRequest/1/_history/²", f"ImagingStudy/o-{BIG}/_history/1"]


@pytest.mark.parametrize(("path", "status", "code"), [*((p, 400, "invalid") for p in SEARCHES),
                                                    *((p, 404, "not-found") for p in READS)])
def test_a_value_out_of_range_or_an_id_that_cannot_exist_is_refused(fhir: FhirWorld, path: str, status: int,
                                                                     code: str) -> None:
    """A value out of range is 400 invalid; an id that cannot exist is 404 not-found."""
    system, _, _ = fhir
    resp = system.send("GET", path)
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.get_json()["issue"][0]["code"] == code


@pytest.mark.parametrize(("path", "total"), [
    ("ImagingStudy?started=0001-01-01", 0), ("ImagingStudy?started=lt0001-01-02", 0),
    ("ImagingStudy?started=9999-12-31T23:58", 0), ("ImagingStudy?started=ge9999-12-31", 0),
    ("ImagingStudy?started=9999", 0), ("ImagingStudy?started=9999-12-31", 0),
    ("ImagingStudy?started=lt9999-12-31T23:59:59-14:00", 2), ("ImagingStudy?started=0001-01-01T00:00:00%2B01:00", 0),
    ("ImagingStudy?_lastUpdated=9999-12-31", 0), ("ImagingStudy?_lastUpdated=0001-01-01T00:00:00%2B14:00", 0),
    ("ImagingStudy?_lastUpdated=gt0001-01-01T00:00:00%2B14:00", 2),
    ("Patient?birthdate=9999", 0), ("Patient?birthdate=lt0999", 0), ("Patient?birthdate=0001-01-01", 0),
    ("ServiceRequest?authored=9999-12-31T23:59:59-14:00", 0), ("ServiceRequest?authored=9999", 0),
    ("ServiceRequest?authored=0001-01-01T00:00:00%2B01:00", 0), ("ServiceRequest?authored=lt9999", 2),
    ("ServiceRequest?authored=lt0001-01-01T00:30:00%2B01:00", 0), *((p, 0) for p in EMPTY)])
def test_the_ends_of_the_calendar_and_references_to_nothing_are_searched(fhir: FhirWorld, path: str,
                                                                        total: int) -> None:
    """A date at the edge of the calendar, whose UTC instant in the hub's zone falls outside it, is searched
    clamped to that edge (it used to be a 500); year 999 compares before every 4-digit year (it matched all).
    A reference that names nothing finds nothing."""
    system, _, _ = fhir
    resp = system.send("GET", path)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["total"] == total


@pytest.mark.parametrize("change", [
    {"subject": "x"}, {"subject": ["Patient/1"]}, {"subject": {"reference": 7}},
    {"authoredOn": "9999-12-31T23:59:59-14:00"}, {"authoredOn": "2030-01-01T10:00:00+15:00"},
    {"occurrenceDateTime": "2031-02-03T09:45:00+99:00"},
])
def test_an_odd_service_request_is_a_clear_400_and_stores_nothing(fhir: FhirWorld, change: dict[str, Any]) -> None:
    system, _, _ = fhir
    body = {k: v for k, v in order("ODD-1", "P9").items() if k not in change} | change
    if "subject" in change:
        del body["contained"]
    resp = system.send("POST", "ServiceRequest", body)
    assert resp.status_code in (400, 422), resp.get_data(as_text=True)
    assert resp.get_json()["resourceType"] == "OperationOutcome"
    assert system.send("GET", f"ServiceRequest?identifier={ACC}|ODD-1").get_json()["total"] == 0


def test_json_nested_past_the_parser_is_400(fhir: FhirWorld) -> None:
    system, _, _ = fhir
    deep = '{"resourceType": "ServiceRequest", "note": ' + "[" * 200_000 + "]" * 200_000 + "}"
    resp = system.http.post("/fhir/ServiceRequest", data=deep, headers={
        "Authorization": system.authorization, "Content-Type": "application/fhir+json"})
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.get_json()["issue"][0]["code"] == "invalid"


def test_contained_nested_past_the_models_is_400(fhir: FhirWorld) -> None:
    system, _, _ = fhir
    patient: dict[str, Any] = {"resourceType": "Patient", "id": "p"}
    for depth in range(400):
        patient = {"resourceType": "Patient", "id": f"p{depth}", "contained": [patient]}
    for kind, body in (("ServiceRequest", {**order("DEEP-1", "P9"), "contained": [patient]}),
                       ("ImagingStudy", {"resourceType": "ImagingStudy", "status": "registered",
                                         "subject": {"reference": "#p399"}, "contained": [patient]})):
        resp = system.send("POST", kind, body)
        assert resp.status_code == 400, (kind, resp.get_data(as_text=True)[:300])
        assert resp.get_json()["issue"][0]["code"] == "invalid"


def test_a_placeholder_birth_date_is_no_birth_date(fhir: FhirWorld) -> None:
    """An order whose Patient's Birth Date is ``00000000`` (a placeholder for unknown; the worklist REST API
    takes it): its Patient has no birthDate (R4 has no year 0) and birthdate searches pass over it."""
    system, _, _ = fhir
    item = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "UNKNOWN^BIRTH"}]},
            "00100020": {"vr": "LO", "Value": ["NOBIRTH-1"]}, "00100030": {"vr": "DA", "Value": ["00000000"]},
            "00080050": {"vr": "SH", "Value": ["ACC-NOBIRTH"]},
            "00400100": {"vr": "SQ", "Value": [{"00080060": {"vr": "CS", "Value": ["CR"]},
                                                "00400002": {"vr": "DA", "Value": ["20311122"]}}]}}
    with system.hub.orders.unit() as unit:
        unit.apply_order(dicom_json_to_order(item), "rest|test")
    found = system.send("GET", "Patient?identifier=NOBIRTH-1")
    assert found.status_code == 200 and found.get_json()["total"] == 1, found.get_data(as_text=True)
    assert "birthDate" not in found.get_json()["entry"][0]["resource"]
    for query in ("birthdate=1980", "birthdate=lt2000", "birthdate=ne1980-04-05"):
        resp = system.send("GET", f"Patient?{query}")
        assert resp.status_code == 200, (query, resp.get_data(as_text=True))
        assert "NOBIRTH-1" not in resp.get_data(as_text=True), query


def test_a_fault_of_the_server_is_a_500_operation_outcome_logged_without_phi(
        fhir: FhirWorld, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The orders table is gone under the running hub (a real database error, whose message carries the
    statement's parameters): the answer is an OperationOutcome, the log names the route and error type only."""
    system, _, _ = fhir
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE orders RENAME TO orders_gone"))
    engine.dispose()
    with caplog.at_level(logging.ERROR):
        resp = system.send("GET", f"ServiceRequest?identifier={ACC}|SECRET-ACC-77")
    assert resp.status_code == 500, resp.get_data(as_text=True)
    assert resp.mimetype == "application/fhir+json"
    assert resp.get_json()["issue"][0]["code"] == "exception"
    assert "SECRET-ACC-77" not in resp.get_data(as_text=True)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/fhir/ServiceRequest" in logged and "SECRET-ACC-77" not in logged
