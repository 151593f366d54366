"""FHIR over HTTP on orders that HL7 placed (issue 7): the HL7 acceptance samples arrive over MLLP; the
ServiceRequest / ImagingStudy the hub serves for them go back in a PUT with ``If-Match`` (FHIR R4 RESTful API
3.1.0.4 update) and reschedule or revoke the worklist item - the subject Patient the hub renders names the
order's own patient; another patient is refused. authoredOn is an instant and ``authored`` searches it (R4
SearchParameter ServiceRequest-authored); a code outside a required binding is 400 ``invalid``."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import requests

from hub.app import Hub
from hub.domain.query import Condition, Match
from interfaces.hl7.mllp import MllpDecoder, frame
from tests.contract.conftest import Http
from tests.hl7_samples import samples_dir

SAMPLES = samples_dir()
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
FHIR_JSON = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}


def mllp(port: int, name: str) -> None:
    """One sample over MLLP to the hub's HL7 listener; it must be accepted (MSA-1 AA)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(frame((SAMPLES / name).read_bytes()))
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    (ack,) = MllpDecoder().feed(data)
    assert b"MSA|AA|" in ack, ack


def get(api: Http, path: str) -> tuple[dict[str, Any], str]:
    resp = api.get(f"/fhir/{path}", headers={"Accept": "application/fhir+json"})
    assert resp.status_code == 200, resp.text
    return resp.json(), resp.headers["ETag"]


def put(api: Http, path: str, body: dict[str, Any], etag: str | None = None) -> requests.Response:
    headers = {**FHIR_JSON, **({"If-Match": etag} if etag else {})}
    return api.put(f"/fhir/{path}", json=body, headers=headers)


def found(api: Http, query: str) -> list[str]:
    resp = api.get(f"/fhir/ServiceRequest?{query}", headers={"Accept": "application/fhir+json"})
    assert resp.status_code == 200, resp.text
    return [e["resource"]["id"] for e in resp.json().get("entry", [])]


def items(hub: Hub, accession: str) -> list[dict[str, Any]]:
    return list(hub.worklist.find([Condition("AccessionNumber", Match.SINGLE, accession)]))


def test_an_hl7_order_is_rescheduled_and_revoked_over_fhir(hub: Hub, listeners: Any, api: Http):
    mllp(listeners.hl7.port, "01_orm_o01_nw_ct_v231.hl7")
    (rid,) = found(api, "identifier=ACC20250314001")
    current, etag = get(api, f"ServiceRequest/{rid}")
    assert current["status"] == "active" and len(items(hub, "ACC20250314001")) == 1
    # the body as read, with a new time: the worklist item moves
    resp = put(api, f"ServiceRequest/{rid}", {**current, "occurrenceDateTime": "2031-04-05T11:30:00Z"}, etag)
    assert resp.status_code == 200, resp.text
    (item,) = items(hub, "ACC20250314001")
    assert (item["start_date"], item["start_time"], item["patient_id"]) == ("20310405", "113000", "4711001")
    moved, etag = get(api, f"ServiceRequest/{rid}")
    assert moved["meta"]["versionId"] == "2" and moved["subject"] == current["subject"]
    # the same body naming another patient (its Patient resource: another Patient ID) is refused
    other = {**moved, "subject": {"identifier": {"system": "urn:oid:2.999.1.1", "value": "4711999"}}}
    assert put(api, f"ServiceRequest/{rid}", {**other, "status": "revoked"}, etag).status_code == 409
    # revoked: the worklist item is cancelled
    resp = put(api, f"ServiceRequest/{rid}", {**moved, "status": "revoked"}, etag)
    assert resp.status_code == 200 and resp.json()["status"] == "revoked", resp.text
    assert items(hub, "ACC20250314001") == []
    study_uid = next(i["value"] for i in moved["identifier"] if i.get("system") == "urn:dicom:uid")[8:]
    assert {s["status"] for s in hub.orders.steps(study_uid)} == {"CANCELED"}


def test_an_hl7_scheduled_imaging_study_is_cancelled_over_fhir(hub: Hub, listeners: Any, api: Http):
    mllp(listeners.hl7.port, "04_omi_o23_nw_mr_two_sps_v251.hl7")
    (rid,) = found(api, "identifier=ACC-MR-000731")
    study, etag = get(api, f"ImagingStudy/o-{rid}")
    assert study["status"] == "registered" and len(items(hub, "ACC-MR-000731")) == 2
    resp = put(api, f"ImagingStudy/o-{rid}", {**study, "status": "cancelled"}, etag)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelled" and items(hub, "ACC-MR-000731") == []
    assert get(api, f"ServiceRequest/{rid}")[0]["status"] == "revoked"


def test_authored_on_round_trip_and_search(hub: Hub, listeners: Any, api: Http):
    mllp(listeners.hl7.port, "04_omi_o23_nw_mr_two_sps_v251.hl7")  # ORC-9 20250315101500+0100
    (hl7,) = found(api, "identifier=ACC-MR-000731")
    assert get(api, f"ServiceRequest/{hl7}")[0]["authoredOn"] == "2025-03-15T09:15:00Z"
    body = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "identifier": [{"type": {"coding": [{"system": V2, "code": "ACSN"}]}, "value": "AUTH-1"}],
            "subject": {"identifier": {"system": "urn:oid:2.999.8", "value": "AUTH-P1"}},
            "occurrenceDateTime": "2031-02-03T09:45:00+01:00", "authoredOn": "2031-01-01T10:00:00-05:00"}
    resp = api.post("/fhir/ServiceRequest", json=body, headers=FHIR_JSON)
    assert resp.status_code == 201, resp.text
    rid = resp.json()["id"]
    read, etag = get(api, f"ServiceRequest/{rid}")
    assert read["authoredOn"] == resp.json()["authoredOn"] == "2031-01-01T15:00:00Z"  # the same instant
    assert found(api, "authored=2031-01-01") == [rid]
    assert found(api, "authored=ge2031-01-01T10:00:00-05:00&authored=lt2031-01-01T10:00:01-05:00") == [rid]
    assert found(api, "authored=2025-03-15") == [hl7]
    assert rid not in found(api, f"authored={read['meta']['lastUpdated'][:10]}")  # not the receipt time
    # a FHIR-made order goes back as read, too (its subject is the hub's Patient)
    resp = put(api, f"ServiceRequest/{rid}", {**read, "status": "revoked"}, etag)
    assert resp.status_code == 200 and resp.json()["authoredOn"] == "2031-01-01T15:00:00Z", resp.text


@pytest.mark.parametrize("change", [{"status": "bogus"}, {"intent": "bogus"}])
def test_a_code_outside_a_required_binding_is_invalid(api: Http, change: dict[str, str]):
    body = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "identifier": [{"type": {"coding": [{"system": V2, "code": "ACSN"}]}, "value": "BAD-1"}],
            "subject": {"identifier": {"system": "urn:oid:2.999.8", "value": "BAD-P1"}}, **change}
    resp = api.post("/fhir/ServiceRequest", json=body, headers=FHIR_JSON)
    assert resp.status_code == 400, resp.text
    issue = resp.json()["issue"][0]
    assert issue["code"] == "invalid" and issue["expression"] == [f"ServiceRequest.{next(iter(change))}"]
