"""FHIR R4 read side at ``/fhir`` (issue 7) on a live hub (SQLite and, with RISHUB_TEST_PG, PostgreSQL):
studies stored through the ingest path and orders received as HL7 (the shared samples), read back with
``requests`` and with the ``fhirclient`` and ``fhirpy`` clients; every resource checked by the R4B models."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome

from hub.app import Hub
from hub.domain.ids import orthanc_id
from hub.domain.origin import Origin
from tests.conftest import TEST_FILES
from tests.contract.conftest import ADMIN_PASSWORD, Http
from tests.hl7_samples import samples_dir

SAMPLES = samples_dir()
CT_UID = "2.25.192717855085157701099642667497404171930"  # sample 01 (and its cancel, 02)
MR_UID = "2.25.200233365037459004953088623702178552356"  # sample 04
FHIR = {"Accept": "application/fhir+json"}
A40 = (b"MSH|^~\\&|ADT|HOSP_A|HUB|PACS|20250316120001||ADT^A40^ADT_A39|ADT-A40-1|P|2.5.1\r"
       b"EVN|A40|20250316120000\rPID|1||4711999^^^HOSP_A&2.999.1.1&ISO^MR||MUELLER^JOERG||19670523|M\r"
       b"MRG|4711001^^^HOSP_A&2.999.1.1&ISO^MR\r")


def hl7(hub: Hub, name: str) -> None:
    ack = hub.hl7.handle((SAMPLES / name).read_bytes())
    assert b"MSA|AA|" in ack, ack


def store(hub: Hub, tmp: Path, name: str, **tags: str) -> pydicom.Dataset:
    """Store a pydicom test file, with ``tags`` replaced (new series/instance UIDs when the study changes)."""
    ds = pydicom.dcmread(TEST_FILES / name)
    for key, value in tags.items():
        setattr(ds, key, value)
    if "StudyInstanceUID" in tags:
        ds.SeriesInstanceUID = tags["StudyInstanceUID"] + ".1"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = tags["StudyInstanceUID"] + ".1.1"
    path = tmp / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path)
    hub.ingest.store(Origin("rest"), path)
    return ds


_R4: list[Any] = []  # the session's npm R4 validator, set for every test here (and where ``r4_checks`` is used)


@pytest.fixture(autouse=True)
def r4_checks(r4: Any) -> Iterator[None]:  # noqa: ANN401 - tests.fhir_validator.R4Validator
    """Every answer :func:`get` receives is also checked by the npm FHIR R4 validator (issue 7's proof)."""
    _R4.append(r4)
    try:
        yield
    finally:
        _R4.remove(r4)


def get(api: Http, path: str, status: int = 200, **kw: Any) -> Any:
    resp = api.get(path, headers={**FHIR, **kw.pop("headers", {})}, **kw)
    assert resp.status_code == status, (path, resp.status_code, resp.text[:500])
    assert resp.headers["Content-Type"].startswith("application/fhir+json")
    body = resp.json()
    for validator in _R4:
        validator.check(body)
    if body["resourceType"] == "Bundle":
        Bundle.model_validate(body)  # entries are validated by their own models
    elif body["resourceType"] == "OperationOutcome":
        OperationOutcome.model_validate(body)
    return body


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


@pytest.fixture
def world(hub: Hub, api: Http, tmp_path: Path) -> dict[str, Any]:
    return build_world(hub, tmp_path)


def build_world(hub: Hub, tmp_path: Path) -> dict[str, Any]:
    """CT_small and MR_small stored, order 01 (CT, registered) and order 04 (MR, two steps) received."""
    ct = store(hub, tmp_path, "CT_small.dcm", AccessionNumber="ACC-CT-1")
    mr = store(hub, tmp_path, "MR_small.dcm")
    hl7(hub, "01_orm_o01_nw_ct_v231.hl7")
    hl7(hub, "04_omi_o23_nw_mr_two_sps_v251.hl7")
    return {"ct": ct, "mr": mr, "ct_study": orthanc_id(ct.PatientID, ct.StudyInstanceUID),
            "ct_patient": orthanc_id(ct.PatientID), "order_patient": orthanc_id("4711001", "HOSP_A"),
            "mr_order_patient": orthanc_id("PL-200331", "RIS_B")}


def test_metadata_lists_what_is_served(api: Http) -> None:
    cs = get(api, "/fhir/metadata")
    CapabilityStatement.model_validate(cs)
    assert cs["fhirVersion"] == "4.0.1" and cs["kind"] == "instance"
    resources = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert set(resources) == {"ImagingStudy", "Patient", "Endpoint", "ServiceRequest"}
    study = resources["ImagingStudy"]
    assert [i["code"] for i in study["interaction"]] == ["read", "vread", "search-type", "create", "update"]
    assert [i["code"] for i in resources["ServiceRequest"]["interaction"]] == ["read", "vread", "search-type",
                                                                               "create", "update"]
    assert resources["ServiceRequest"]["conditionalCreate"] is True
    assert {p["name"] for p in study["searchParam"]} >= {"patient", "identifier", "started", "modality", "status",
                                                        "basedon", "endpoint"}
    assert "ImagingStudy:endpoint" in study["searchInclude"]


def test_fhir_routes_need_authentication(api: Http) -> None:
    anonymous = Http(api.base)
    assert anonymous.get("/fhir/ImagingStudy").status_code == 401
    assert anonymous.get("/fhir/metadata").status_code == 401


def test_stored_study_read_etag_and_conditional_read(api: Http, world: dict[str, Any]) -> None:
    resp = api.get(f"/fhir/ImagingStudy/{world['ct_study']}", headers=FHIR)
    assert resp.status_code == 200
    study = resp.json()
    assert study["status"] == "available"
    assert study["identifier"][0] == {"system": "urn:dicom:uid", "value": f"urn:oid:{world['ct'].StudyInstanceUID}"}
    assert study["subject"] == {"reference": f"Patient/{world['ct_patient']}"}
    assert study["endpoint"] == [{"reference": "Endpoint/dicomweb-wado-rs"}]
    assert study["numberOfSeries"] == 1 and study["numberOfInstances"] == 1
    series = study["series"][0]
    assert series["uid"] == world["ct"].SeriesInstanceUID
    assert series["modality"] == {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}
    assert series["instance"][0]["sopClass"] == {"system": "urn:ietf:rfc:3986",
                                                 "code": "urn:oid:1.2.840.10008.5.1.4.1.1.2"}
    assert resp.headers["ETag"] == f'W/"{study["meta"]["versionId"]}"'
    assert resp.headers["Last-Modified"]
    again = api.get(f"/fhir/ImagingStudy/{world['ct_study']}", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status_code == 304
    since = api.get(f"/fhir/ImagingStudy/{world['ct_study']}", headers={"If-Modified-Since":
                                                                         resp.headers["Last-Modified"]})
    assert since.status_code == 304
    stale = api.get(f"/fhir/ImagingStudy/{world['ct_study']}", headers={"If-None-Match": 'W/"1"'})
    assert stale.status_code == 200


def test_order_lifecycle_registered_cancelled_available(hub: Hub, api: Http, world: dict[str, Any],
                                                        tmp_path: Path) -> None:
    bundle = get(api, f"/fhir/ImagingStudy?identifier=urn:dicom:uid|urn:oid:{CT_UID}")
    assert bundle["total"] == 1
    ct_order = bundle["entry"][0]["resource"]
    assert ct_order["id"].startswith("o-") and ct_order["status"] == "registered"
    assert ct_order["subject"] == {"reference": f"Patient/{world['order_patient']}"}
    assert ct_order["started"].startswith("2025-03-14T09:30:00")
    hl7(hub, "02_orm_o01_ca_ct_v231.hl7")
    assert get(api, f"/fhir/ImagingStudy/{ct_order['id']}")["status"] == "cancelled"
    assert ids(get(api, "/fhir/ImagingStudy?status=cancelled")) == [ct_order["id"]]

    mr_order = get(api, f"/fhir/ImagingStudy?identifier=urn:oid:{MR_UID}")["entry"][0]["resource"]
    assert mr_order["status"] == "registered" and mr_order["numberOfInstances"] == 0
    ds = store(hub, tmp_path, "MR_small.dcm", StudyInstanceUID=MR_UID, PatientID="PL-200331",
               AccessionNumber="ACC-MR-000731")
    now = get(api, f"/fhir/ImagingStudy/{mr_order['id']}")  # the order's id reads as the stored study
    assert now["status"] == "available" and now["id"] == orthanc_id("PL-200331", MR_UID)
    assert now["series"][0]["uid"] == ds.SeriesInstanceUID
    assert any(b["identifier"]["value"] == "EHR-ORD-9911" for b in now["basedOn"])  # placer from the order
    registered = get(api, "/fhir/ImagingStudy?status=registered")
    assert registered["total"] == 0


def test_search_parameters(api: Http, world: dict[str, Any]) -> None:
    everything = get(api, "/fhir/ImagingStudy?_count=100")
    assert everything["total"] == 4  # 2 stored, 2 orders without images
    assert ids(get(api, f"/fhir/ImagingStudy?patient={world['ct_patient']}")) == [world["ct_study"]]
    assert ids(get(api, f"/fhir/ImagingStudy?subject=Patient/{world['ct_patient']}")) == [world["ct_study"]]
    assert get(api, "/fhir/ImagingStudy?patient=unknown")["total"] == 0
    assert get(api, "/fhir/ImagingStudy?patient:identifier=4711001")["total"] == 1
    assert get(api, "/fhir/ImagingStudy?identifier=ACC20250314001")["total"] == 1
    assert ids(get(api, "/fhir/ImagingStudy?identifier=ACC-CT-1,nothing")) == [world["ct_study"]]
    mods = get(api, "/fhir/ImagingStudy?modality=http://dicom.nema.org/resources/ontology/DCM|MR")
    assert mods["total"] == 2  # MR_small stored + the MR order
    assert get(api, "/fhir/ImagingStudy?modality=http://other|MR")["total"] == 0
    assert get(api, "/fhir/ImagingStudy?modality=CT,MR")["total"] == 4
    assert get(api, "/fhir/ImagingStudy?status=available")["total"] == 2
    assert get(api, "/fhir/ImagingStudy?basedon:identifier=PLC-556677")["total"] == 1
    assert get(api, "/fhir/ImagingStudy?endpoint=Endpoint/dicomweb-wado-rs")["total"] == 4
    assert get(api, "/fhir/ImagingStudy?endpoint=Endpoint/other")["total"] == 0
    march = get(api, "/fhir/ImagingStudy?started=ge2025-03-14&started=lt2025-03-16")
    assert march["total"] == 2  # the two orders (14 and 15 March 2025)
    assert get(api, "/fhir/ImagingStudy?started=2025-03-15")["total"] == 1
    assert get(api, "/fhir/ImagingStudy?started=gt2025-03-14T09:30:00%2B00:00&started=le2025-03")["total"] == 1
    assert get(api, "/fhir/ImagingStudy?started=ne2025-03")["total"] == 2
    started = [e["resource"].get("started", "") for e in get(api, "/fhir/ImagingStudy?_sort=started")["entry"]]
    assert started == sorted(started, key=lambda s: s[:10])
    by_id = ids(get(api, "/fhir/ImagingStudy?_sort=_id"))
    assert by_id == sorted(by_id) and len(by_id) == 4
    backwards = ids(get(api, "/fhir/ImagingStudy?_sort=-started"))
    assert backwards == list(reversed(ids(get(api, "/fhir/ImagingStudy?_sort=started"))))


def test_paging_and_includes(api: Http, world: dict[str, Any]) -> None:
    seen: list[str] = []
    page = get(api, "/fhir/ImagingStudy?_count=1&_include=ImagingStudy:subject&_include=ImagingStudy:endpoint")
    assert page["total"] == 4
    while True:
        seen += ids(page)
        included = {e["resource"]["resourceType"] for e in page["entry"] if e["search"]["mode"] == "include"}
        assert included == {"Patient", "Endpoint"}
        links = {link["relation"]: link["url"] for link in page["link"]}
        assert links["self"].startswith(api.base + "/fhir/ImagingStudy?")
        if "next" not in links:
            break
        page = get(api, links["next"].removeprefix(api.base))
    assert len(seen) == 4 and len(set(seen)) == 4
    assert "previous" in links
    endpoint = get(api, "/fhir/Endpoint/dicomweb-wado-rs")
    assert endpoint["address"] == api.base + "/dicom-web"
    assert endpoint["connectionType"]["code"] == "dicom-wado-rs"
    assert get(api, "/fhir/Endpoint")["total"] == 1
    assert get(api, "/fhir/ImagingStudy?_summary=count")["total"] == 4


def test_patients_and_merge(hub: Hub, api: Http, world: dict[str, Any]) -> None:
    order_patient = get(api, f"/fhir/Patient/{world['order_patient']}")
    assert order_patient["identifier"][0]["system"] == "urn:oid:2.999.1.1"
    assert order_patient["birthDate"] == "1967-05-23" and order_patient["gender"] == "male"
    assert ids(get(api, "/fhir/Patient?name=müller")) == [world["order_patient"]]  # accent/case insensitive
    assert ids(get(api, "/fhir/Patient?name=jörg&birthdate=1967-05-23&gender=male")) == [world["order_patient"]]
    assert get(api, "/fhir/Patient?name=jörg&birthdate=lt1960")["total"] == 0
    assert ids(get(api, "/fhir/Patient?identifier=urn:oid:2.999.1.1|4711001")) == [world["order_patient"]]
    assert get(api, "/fhir/Patient?identifier=urn:oid:9.9|4711001")["total"] == 0
    ct_patient = get(api, f"/fhir/Patient/{world['ct_patient']}")
    assert ct_patient["identifier"][0]["value"] == world["ct"].PatientID
    assert get(api, "/fhir/Patient?_count=100")["total"] == 4  # CT, MR stored; two order-only patients
    females = {p for p in ids(get(api, "/fhir/Patient?gender=female"))}
    assert world["mr_order_patient"] in females and world["order_patient"] not in females

    assert b"MSA|AA|" in hub.hl7.handle(A40)
    old = get(api, f"/fhir/Patient/{world['order_patient']}")
    survivor = orthanc_id("4711999", "HOSP_A")
    assert old["active"] is False
    assert old["link"] == [{"other": {"reference": f"Patient/{survivor}"}, "type": "replaced-by"}]
    assert get(api, f"/fhir/Patient/{survivor}")["identifier"][0]["value"] == "4711999"
    assert ids(get(api, "/fhir/Patient?identifier=4711001")) == [world["order_patient"]]  # the id it had
    moved = get(api, f"/fhir/ImagingStudy?patient={survivor}")
    assert moved["total"] == 1 and moved["entry"][0]["resource"]["identifier"][0]["value"] == f"urn:oid:{CT_UID}"
    assert get(api, f"/fhir/ImagingStudy?patient={world['order_patient']}")["total"] == 0


def test_errors_are_operation_outcomes(api: Http, world: dict[str, Any]) -> None:
    out = get(api, "/fhir/ImagingStudy?colour=red", 400)
    assert out["issue"][0]["severity"] == "error" and "colour" in out["issue"][0]["diagnostics"]
    lenient = get(api, "/fhir/ImagingStudy?colour=red", headers={"Prefer": "handling=lenient"})
    assert lenient["total"] == 4 and "colour" not in lenient["link"][0]["url"]
    assert get(api, "/fhir/ImagingStudy/nope", 404)["issue"][0]["code"] == "not-found"
    assert get(api, "/fhir/Patient/nope", 404)["issue"][0]["code"] == "not-found"
    assert get(api, "/fhir/ImagingStudy?started=2025-13-01", 400)["issue"][0]["code"] == "invalid"
    assert get(api, "/fhir/ImagingStudy?started=ap2025", 400)
    assert get(api, "/fhir/ImagingStudy?_count=x", 400)
    assert get(api, "/fhir/ImagingStudy?_sort=description", 400)
    assert get(api, "/fhir/ImagingStudy?_include=ImagingStudy:referrer", 400)
    assert get(api, "/fhir/ImagingStudy?_format=xml", 406)
    assert get(api, "/fhir/Observation", 404)["issue"][0]["code"] == "not-supported"
    resp = api.request("DELETE", f"/fhir/ImagingStudy/{world['ct_study']}")
    assert resp.status_code == 405 and resp.json()["resourceType"] == "OperationOutcome"


def test_fhirclient_reads_and_searches(api: Http, world: dict[str, Any]) -> None:
    from fhirclient import client
    from fhirclient.models.imagingstudy import ImagingStudy
    from fhirclient.models.patient import Patient

    smart = client.FHIRClient(settings={"app_id": "rishub-test", "api_base": api.base + "/fhir/"})
    smart.server.session.auth = ("admin", ADMIN_PASSWORD)
    study = ImagingStudy.read(world["ct_study"], smart.server)
    assert study.status == "available" and study.series[0].modality.code == "CT"
    found = list(ImagingStudy.where(struct={"modality": "MR"}).perform_resources_iter(smart.server))
    assert len(found) == 2 and all(isinstance(r, ImagingStudy) for r in found)
    every = list(ImagingStudy.where(struct={"_count": "1"}).perform_resources_iter(smart.server))
    assert len(every) == 4  # followed the next links
    patient = Patient.read(world["order_patient"], smart.server)
    assert patient.birthDate.isostring == "1967-05-23"


def test_fhirpy_reads_and_searches(api: Http, world: dict[str, Any]) -> None:
    from fhirpy import SyncFHIRClient

    token = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    fc = SyncFHIRClient(api.base + "/fhir", authorization=f"Basic {token}")
    studies = fc.resources("ImagingStudy").search(patient=world["ct_patient"]).fetch()
    assert [s.id for s in studies] == [world["ct_study"]]
    everything = fc.resources("ImagingStudy").limit(1).fetch_all()
    assert len(everything) == 4
    assert len(fc.resources("ImagingStudy").search(status="registered").fetch_all()) == 2
    available = fc.resources("ImagingStudy").search(status="available")
    with_subject = available.include("ImagingStudy", "subject").fetch_raw()
    assert {e["search"]["mode"] for e in with_subject["entry"]} == {"match", "include"}
    patient = fc.reference("Patient", world["order_patient"]).to_resource()
    assert patient["gender"] == "male"
