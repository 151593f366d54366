"""FhirOrderService on SQLite and PostgreSQL (issue 7): a created ServiceRequest is a worklist item for
``WorklistService`` and for DCMTK ``findscu -W`` at once; conditional create, If-Match, revoke, 412/409/422;
the create's answer equals a later read (built from the rows as written, subject as the read side names it),
in few statements; the plain R4 check of ordinary bodies never accepts what the R4B models reject."""

from __future__ import annotations

import copy
import itertools
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest

from hub.app import Hub
from hub.domain.ids import orthanc_id
from hub.domain.query import Condition, Match
from hub.errors import HubError
from hub.services.fhir_orders import FhirOrderService
from hub.services.ingest import Origin
from mappings.fhir_structure import plainly_valid
from mappings.fhir_to_order import FhirOrderPolicy
from mappings.fhir_values import validate
from tests.conftest import dcmtk, dcmtk_env
from tests.hl7_samples import samples_dir
from tests.synthetic import write_series

V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACC_SYSTEM = "http://ris.example/accession"


def service_request(acc: str, pid: str = "FP1", *, status: str = "active", start: str = "2031-02-03T09:45:00+01:00",
                    station: str = "CT_FHIR") -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest", "status": status, "intent": "order",
        "identifier": [{"type": {"coding": [{"system": V2, "code": "ACSN"}]}, "system": ACC_SYSTEM, "value": acc}],
        "contained": [{"resourceType": "Patient", "id": "p", "identifier": [{"system": "urn:oid:1.2.3", "value": pid}],
                       "name": [{"family": "Fhir", "given": ["Fiona"]}], "birthDate": "1980-04-05",
                       "gender": "female"}],
        "subject": {"reference": "#p"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2", "display": "CT Chest"}]},
        "category": [{"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}]}],
        "occurrenceDateTime": start, "priority": "stat",
        "performer": [{"type": "Device", "display": station}],
    }


@pytest.fixture
def fhir(hub: Hub) -> FhirOrderService:
    return FhirOrderService(hub.orders, hub.db, FhirOrderPolicy())


def worklist(hub: Hub, acc: str, **extra: str) -> list[dict[str, Any]]:
    conds = [Condition("AccessionNumber", Match.SINGLE, acc)]
    conds += [Condition(k, Match.SINGLE, val) for k, val in extra.items()]
    return list(hub.worklist.find(conds))


def findscu(port: int, out: Path, acc: str) -> list[pydicom.Dataset]:
    out.mkdir(parents=True)
    sps = "ScheduledProcedureStepSequence[0]"
    keys = [f"AccessionNumber={acc}", "PatientName", "PatientID", "StudyInstanceUID", "RequestedProcedureID",
            "RequestedProcedurePriority", f"{sps}.ScheduledStationAETitle", f"{sps}.Modality",
            f"{sps}.ScheduledProcedureStepStartDate", f"{sps}.ScheduledProcedureStepStartTime"]
    args = [dcmtk("findscu"), "-W", "-aec", "RISHUB", "-X", "-od", str(out)]
    for k in keys:
        args += ["-k", k]
    proc = subprocess.run([*args, "127.0.0.1", str(port)], capture_output=True, env=dcmtk_env(), timeout=30)
    assert proc.returncode == 0, proc.stderr
    return [pydicom.dcmread(f) for f in sorted(out.glob("rsp*.dcm"))]


def test_create_is_on_the_worklist_and_on_mwl_c_find(hub: Hub, fhir: FhirOrderService, listeners, tmp_path: Path):
    res, created = fhir.create(service_request("FACC1"))
    assert created and res["status"] == "active" and res["meta"]["versionId"] == "1"
    assert res["subject"]["reference"].startswith("Patient/")
    assert fhir.read(res["id"]) == res
    (item,) = worklist(hub, "FACC1")
    assert (item["status"], item["modality"], item["station_aet"], item["start_date"], item["start_time"]) == \
        ("SCHEDULED", "CT", "CT_FHIR", "20310203", "094500")
    (ds,) = findscu(listeners.dimse.port, tmp_path / "a", "FACC1")
    step = ds.ScheduledProcedureStepSequence[0]
    assert (str(ds.PatientName), ds.PatientID, ds.RequestedProcedurePriority) == ("Fhir^Fiona", "FP1", "STAT")
    assert (step.ScheduledStationAETitle, step.Modality, step.ScheduledProcedureStepStartDate) == \
        ("CT_FHIR", "CT", "20310203")
    uid = next(i["value"] for i in res["identifier"] if i["system"] == "urn:dicom:uid")
    assert uid == f"urn:oid:{ds.StudyInstanceUID}"

    # revoke -> CANCELED, kept but hidden from the worklist and from MWL C-FIND
    revoked = fhir.update(res["id"], {**service_request("FACC1", status="revoked"), "id": res["id"]},
                          if_match='W/"1"')
    assert (revoked["status"], revoked["meta"]["versionId"]) == ("revoked", "2")
    assert worklist(hub, "FACC1") == []
    assert [i["status"] for i in worklist(hub, "FACC1", ScheduledProcedureStepStatus="CANCELED")] == ["CANCELED"]
    assert findscu(listeners.dimse.port, tmp_path / "b", "FACC1") == []
    with pytest.raises(HubError) as exc:  # a revoked order is not reopened
        fhir.update(res["id"], service_request("FACC1"))
    assert exc.value.http_status == 422


def test_conditional_create_is_idempotent(hub: Hub, fhir: FhirOrderService):
    first, created = fhir.create(service_request("FACC2"), if_none_exist=f"identifier={ACC_SYSTEM}|FACC2")
    again, created_again = fhir.create(service_request("FACC2"), if_none_exist=f"identifier={ACC_SYSTEM}|FACC2")
    assert created and not created_again and again == first
    assert len(worklist(hub, "FACC2")) == 1
    # the same request without the condition would make a second order of the same study: 409
    with pytest.raises(HubError) as exc:
        fhir.create(service_request("FACC2"))
    assert exc.value.http_status == 409
    # the condition matches by value across systems when no system is given; another system does not match
    assert fhir.create(service_request("FACC2"), if_none_exist="identifier=FACC2")[1] is False
    other = copy.deepcopy(service_request("FACC3"))
    other["identifier"].append({"type": {"coding": [{"system": V2, "code": "PLAC"}]}, "value": "FACC2"})
    assert fhir.create(other)[1] is True
    with pytest.raises(HubError) as exc:  # FACC2 now names two orders (an accession and a placer number)
        fhir.create(service_request("FACC2"), if_none_exist="identifier=FACC2")
    assert (exc.value.code, exc.value.http_status) == ("precondition_failed", 412)
    assert fhir.create(service_request("FACC2"), if_none_exist=f"identifier={ACC_SYSTEM}|FACC2")[1] is False


def test_if_match_update_reschedule_and_412(hub: Hub, fhir: FhirOrderService):
    res, _ = fhir.create(service_request("FACC4"))
    moved = fhir.update(res["id"], service_request("FACC4", start="2031-02-04T14:00:00+01:00", station="CT_TWO"),
                        if_match=f'W/"{res["meta"]["versionId"]}"')
    assert moved["meta"]["versionId"] == "2" and moved["occurrenceDateTime"] == "2031-02-04T14:00:00+01:00"
    (item,) = worklist(hub, "FACC4")
    assert (item["station_aet"], item["start_date"], item["start_time"]) == ("CT_TWO", "20310204", "140000")
    with pytest.raises(HubError) as exc:
        fhir.update(res["id"], service_request("FACC4"), if_match='W/"1"')
    assert (exc.value.code, exc.value.http_status) == ("precondition_failed", 412)
    assert fhir.read(res["id"])["meta"]["versionId"] == "2"
    with pytest.raises(HubError) as exc:
        fhir.update("999999", service_request("FACC4"))
    assert exc.value.http_status == 404
    with pytest.raises(HubError) as exc:
        fhir.read("nope")
    assert exc.value.http_status == 404


def test_on_hold_hides_and_active_restores(hub: Hub, fhir: FhirOrderService):
    res, _ = fhir.create(service_request("FACC5"))
    held = fhir.update(res["id"], service_request("FACC5", status="on-hold"))
    assert held["status"] == "on-hold" and worklist(hub, "FACC5") == []
    back = fhir.update(res["id"], service_request("FACC5"))
    assert back["status"] == "active" and len(worklist(hub, "FACC5")) == 1


def test_revoking_a_completed_order_is_422(hub: Hub, fhir: FhirOrderService):
    res, _ = fhir.create(service_request("FACC6"))
    done = fhir.update(res["id"], service_request("FACC6", status="completed"))
    assert done["status"] == "completed" and worklist(hub, "FACC6") == []
    with pytest.raises(HubError) as exc:
        fhir.update(res["id"], service_request("FACC6", status="revoked"), if_match=f'"{done["meta"]["versionId"]}"')
    assert (exc.value.code, exc.value.http_status) == ("business_rule", 422)
    assert fhir.read(res["id"])["status"] == "completed"


def test_invalid_resource_is_400_with_expression(fhir: FhirOrderService):
    with pytest.raises(HubError) as exc:
        fhir.create({**service_request("FACC7"), "occurrenceDateTime": "2031-13-01"})
    assert exc.value.http_status == 400 and exc.value.attribute.startswith("ServiceRequest.occurrence")
    with pytest.raises(HubError) as exc:
        fhir.create(service_request("FACC7", status="completed"))
    assert exc.value.http_status == 422
    for kind in (None, 1, {}, "Nonsense"):  # the R4B models themselves fail on these (TypeError, KeyError)
        body = service_request("FACC7")
        body["contained"][0]["resourceType"] = kind
        with pytest.raises(HubError) as exc:
            fhir.create(body)
        assert (exc.value.http_status, exc.value.attribute) == (400, "ServiceRequest.contained")


def test_search(hub: Hub, fhir: FhirOrderService):
    a, _ = fhir.create(service_request("FS1", "PA"))
    b, _ = fhir.create(service_request("FS2", "PA"))
    c, _ = fhir.create(service_request("FS3", "PB"))
    fhir.update(b["id"], service_request("FS2", "PA", status="revoked"))
    ids = lambda found: [r["id"] for r in found[0]]  # noqa: E731
    assert ids(fhir.search(patient_id="PA")) == [a["id"], b["id"]]
    assert ids(fhir.search(patient_id="PA", status="active")) == [a["id"]]
    assert ids(fhir.search(status="revoked")) == [b["id"]]
    assert ids(fhir.search(status="active,revoked", count=1, offset=1)) == [b["id"]]
    assert fhir.search(status="active,revoked", count=1)[1] == 3
    assert ids(fhir.search(identifier=f"{ACC_SYSTEM}|FS3")) == [c["id"]]
    assert ids(fhir.search(identifier="urn:oid:9|FS3")) == []
    assert ids(fhir.search(authored=[("ge", "2000-01-01"), ("lt", "2999")], patient_id="PB")) == [c["id"]]
    assert ids(fhir.search(authored=[("lt", "2000-01-01")])) == []
    with pytest.raises(HubError):
        fhir.search(authored=[("xx", "2000")])


def test_authored_searches_authored_on(hub: Hub, fhir: FhirOrderService):
    """``authored`` is ServiceRequest.authoredOn (R4 SearchParameter ServiceRequest-authored), an instant:
    not the receipt time; HL7 orders take ORC-9."""
    res, _ = fhir.create({**service_request("FAU1"), "authoredOn": "2031-01-01T10:00:00-05:00"})
    assert res["authoredOn"] == "2031-01-01T15:00:00Z" and fhir.read(res["id"]) == res
    received, _ = fhir.create(service_request("FAU2"))  # no authoredOn: the receipt time
    ids = lambda *dates: [r["id"] for r in fhir.search(authored=list(dates))[0]]  # noqa: E731
    assert ids(("eq", "2031-01-01")) == [res["id"]]
    assert ids(("eq", "2031-01-01T10:00:00-05:00")) == [res["id"]]
    assert ids(("ge", "2031-01-01T15:00:00Z"), ("lt", "2031-01-01T15:00:01Z")) == [res["id"]]
    assert ids(("lt", "2031-01-01T14:59:59Z"), ("gt", "2030")) == []
    assert ids(("eq", received["authoredOn"][:10])) == [received["id"]]
    assert b"MSA|AA|" in hub.hl7.handle((samples_dir() / "04_omi_o23_nw_mr_two_sps_v251.hl7").read_bytes())
    (hl7,) = fhir.search(identifier="ACC-MR-000731")[0]  # ORC-9 20250315101500+0100
    assert hl7["authoredOn"] == "2025-03-15T09:15:00Z"
    assert ids(("eq", "2025-03-15T10:15:00+01:00")) == [hl7["id"]]


def test_an_hl7_order_is_updated_over_fhir_for_its_own_patient_only(hub: Hub):
    """The Patient the hub serves for an HL7 order's patient (system ``urn:oid:`` of PID-3.4.2, assigner = the
    namespace PID-3.4.1) names that patient in a PUT; so does the bare ``urn:oid:`` system (the same assigning
    authority, PS3.3 C.7.1.1.1); another Patient ID or authority is still 409."""
    assert b"MSA|AA|" in hub.hl7.handle((samples_dir() / "01_orm_o01_nw_ct_v231.hl7").read_bytes())
    svc = hub.fhir_orders
    (current,) = svc.search(identifier="ACC20250314001")[0]
    subject = {"identifier": {"system": "urn:oid:2.999.1.1", "value": "4711001"}}
    moved = svc.update(current["id"], {**current, "subject": subject, "occurrenceDateTime": "2031-03-01T08:00:00Z"},
                       if_match=f'W/"{current["meta"]["versionId"]}"')
    assert moved["occurrenceDateTime"] == "2031-03-01T08:00:00+00:00" and moved["subject"] == current["subject"]
    order = hub.orders.order(current["identifier"][-1]["value"].removeprefix("urn:oid:"))
    assert order is not None and (order["patient_id"], order["issuer_of_patient_id"]) == ("4711001", "HOSP_A")
    for other in ({"system": "urn:oid:2.999.1.1", "value": "4711002"},
                  {"system": "urn:oid:2.999.1.9", "value": "4711001"},
                  {"value": "4711001", "assigner": {"display": "HOSP_B"}}):
        with pytest.raises(HubError) as exc:
            svc.update(current["id"], {**moved, "subject": {"identifier": other}, "status": "revoked"})
        assert exc.value.http_status == 409, other
    revoked = svc.update(current["id"], {**moved, "status": "revoked"}, if_match=f'W/"{moved["meta"]["versionId"]}"')
    assert revoked["status"] == "revoked" and worklist(hub, "ACC20250314001") == []


def test_migration_0005_backfills_authored_at(db_url: str):
    """An order of a 0004 database reads back with authoredOn = its receipt time (what it showed before)."""
    from alembic import command
    from sqlalchemy import create_engine, insert, select, text

    from hub.store.db import alembic_config, upgrade
    from hub.store.order_models import ORDERS

    upgrade(db_url, "0004")
    command.downgrade(alembic_config(db_url), "0004")  # a PostgreSQL template copy is at head already
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    received = datetime(2024, 2, 3, 4, 5, 6)
    values = {c: "" for c in ("study_uid", "accession_number", "requested_procedure_id", "placer_order", "filler_order",
                              "patient_id", "issuer_of_patient_id", "patient_name_norm", "status", "control",
                              "specific_character_set", "sender", "reason")}
    try:
        with engine.begin() as conn:
            conn.execute(insert(ORDERS).values(**values, patient_attrs="{}", attrs="{}", created_at=received,
                                               updated_at=received))
        upgrade(db_url)
        with engine.connect() as conn:
            assert conn.execute(select(ORDERS.c.authored_at)).scalar_one() == received
            assert conn.execute(text("SELECT count(*) FROM orders WHERE authored_at IS NULL")).scalar_one() == 0
    finally:
        engine.dispose()


def test_imaging_study_registered_schedules(hub: Hub, fhir: FhirOrderService):
    study = {"resourceType": "ImagingStudy", "status": "registered",
             "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.826.0.1.3680043.10.543.777"},
                            {"type": {"coding": [{"system": V2, "code": "ACSN"}]}, "value": "FIS1"}],
             "subject": {"identifier": {"system": "urn:oid:1.2.3", "value": "FP9"}},
             "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR"}],
             "started": "2031-05-06T07:00:00Z"}
    res, created = fhir.schedule_imaging_study(study)
    assert created and res["status"] == "active"
    (item,) = worklist(hub, "FIS1")
    assert (item["study_uid"], item["modality"], item["start_date"]) == \
        ("1.2.826.0.1.3680043.10.543.777", "MR", "20310506")
    with pytest.raises(HubError) as exc:  # the same study again: a create conflicts, nothing is changed
        fhir.schedule_imaging_study({**study, "started": "2031-06-07T07:00:00Z"})
    assert (exc.value.http_status, exc.value.attribute) == (409, "ImagingStudy.identifier")
    assert worklist(hub, "FIS1")[0]["start_date"] == "20310506"
    cancelled = fhir.update_imaging_study(int(res["id"]), {**study, "status": "cancelled"})
    assert cancelled["status"] == "revoked" and worklist(hub, "FIS1") == []


def test_subject_resolved_by_the_patient_lookup(hub: Hub):
    patients = {"Patient/p-1": {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.3", "value": "LK1"}],
                                "name": [{"family": "Lookup", "given": ["Lee"]}]}}
    svc = FhirOrderService(hub.orders, hub.db, patient_lookup=patients.get)
    res = {k: val for k, val in service_request("FLK1").items() if k != "contained"}
    created, _ = svc.create({**res, "subject": {"reference": "Patient/p-1"}})
    (item,) = worklist(hub, "FLK1")
    assert item["patient_id"] == "LK1" and item["patient"]["00100010"]["Value"][0]["Alphabetic"] == "Lookup^Lee"
    with pytest.raises(HubError) as exc:
        svc.create({**res, "subject": {"reference": "Patient/unknown"}})
    assert (exc.value.http_status, exc.value.attribute) == (422, "ServiceRequest.subject")


def test_subject_is_the_read_sides_patient_and_the_answer_is_a_read(hub: Hub, tmp_path: Path):
    """The create's answer (built from the rows written, not read back) equals GET; its subject is the archive's
    Patient when the archive has that Patient ID, else the order-only Patient, as the Patient read side says."""
    for path in write_series(tmp_path / "s", 1, rows=8, cols=8, patient_id="FARCH1", patient_name="Arch^Ive"):
        hub.ingest.store(Origin("import"), path)
    svc = hub.fhir_orders
    stored, created = svc.create(service_request("FSUB1", "FARCH1"), if_none_exist=f"identifier={ACC_SYSTEM}|FSUB1")
    assert created and stored["subject"]["reference"] == f"Patient/{orthanc_id('FARCH1')}"
    assert stored["subject"]["reference"] == f"Patient/{hub.fhir.patient_id_for('FARCH1', '1.2.3')}"
    assert svc.read(stored["id"]) == stored
    only, _ = svc.create(service_request("FSUB2", "FONLY1"))
    assert only["subject"]["reference"] == f"Patient/{orthanc_id('FONLY1', '1.2.3')}" \
        == f"Patient/{hub.fhir.patient_id_for('FONLY1', '1.2.3')}"
    assert svc.read(only["id"]) == only and svc.search(identifier="FSUB2")[0] == [only]
    patient = hub.fhir.read_patient(only["subject"]["reference"].split("/")[1])
    assert patient is not None and patient["identifier"][0]["value"] == "FONLY1"


@pytest.fixture
def statements(hub: Hub) -> Iterator[list[str]]:
    """The SQL statements the index executes (BEGIN/COMMIT of the driver not included)."""
    from sqlalchemy import event

    seen: list[str] = []

    def record(conn: Any, cursor: Any, sql: str, *args: Any) -> None:  # noqa: ANN401
        if not sql.startswith(("BEGIN", "PRAGMA")):
            seen.append(sql.split()[0].upper())

    event.listen(hub.db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(hub.db.engine, "before_cursor_execute", record)


def test_a_create_is_one_or_two_statements(hub: Hub, statements: list[str]):
    """PostgreSQL: the order (returning its archive patient) and its step in one statement (a CTE); SQLite:
    two INSERTs. A conditional create adds the lookup, in the same transaction."""
    svc = hub.fhir_orders
    insert = ["WITH"] if hub.db.engine.dialect.name == "postgresql" else ["INSERT", "INSERT"]
    created, _ = svc.create(service_request("FST1"))
    assert statements == insert and created["meta"]["versionId"] == "1"
    assert len(worklist(hub, "FST1")) == 1 and svc.read(created["id"]) == created
    statements.clear()
    svc.create(service_request("FST2"), if_none_exist=f"identifier={ACC_SYSTEM}|FST2")
    assert statements == ["SELECT", *insert]
    statements.clear()
    _, created = svc.create(service_request("FST2"), if_none_exist=f"identifier={ACC_SYSTEM}|FST2")
    assert not created and statements == ["SELECT", "SELECT"]  # the match and its steps


def _mutations(value: Any) -> Iterator[Any]:  # noqa: ANN401 - parsed JSON
    """``value`` with one element changed, dropped, added or mistyped, everywhere in the tree."""
    bad = [None, "", " ", 1, True, [], {}, "a\nb", "x  y", "2031-02-30", "2031-01-01T10:00:00", "2031",
           "2031-01-01T10:00:00.1234567Z", "2031-01-01T24:00:00Z", "urn:oid:1 2", "#p", ["x"], {"bogus": 1}]
    if isinstance(value, dict):
        for key, inner in value.items():
            yield {k: v for k, v in value.items() if k != key}
            for changed in itertools.chain(_mutations(inner), bad, [[inner], {"value": inner}]):
                yield {**value, key: changed}
        for extra in ("bogus", "extension", "occurrencePeriod", "_status", "authorReference", "text"):
            yield {**value, extra: {"start": "2031-01-01"}}
    elif isinstance(value, list):
        for n, inner in enumerate(value):
            for changed in itertools.chain(_mutations(inner), bad):
                yield [*value[:n], changed, *value[n + 1:]]
        yield [*value, *value]


def test_the_plain_r4_check_accepts_only_what_the_r4b_models_accept():
    full = {**service_request("FPV1"), "authoredOn": "2031-01-01", "requester": {"display": "Dr A"},
            "reasonCode": [{"text": "pain", "coding": [{"system": "http://snomed.info/sct", "code": "22253000"}]}],
            "note": [{"text": "fasting", "authorString": "RIS", "time": "2031-01-01T08:00:00.5Z"}],
            "encounter": {"identifier": {"value": "E1"}}, "locationCode": [{"text": "Room 1"}],
            "orderDetail": [{"text": "protocol"}]}
    full["contained"][0] |= {"telecom": [{"system": "phone", "value": "123"}], "active": True,
                             "address": [{"line": ["Main St 1"], "city": "Town", "country": "CH"}]}
    assert plainly_valid(full, "ServiceRequest") and plainly_valid(service_request("FPV2"), "ServiceRequest")
    plain = left = 0
    for body in _mutations(full):
        if plainly_valid(body, "ServiceRequest"):
            plain += 1
            validate(body, "ServiceRequest")  # never raises for a body the plain check took
        else:
            left += 1  # the R4B models decide (and name the bad element)
    assert plain > 50 and left > 500
    for bad in ({"status": None}, {"occurrenceDateTime": "2031-02-30T08:00:00Z"}, {"priority": ""}, {"bogus": 1},
                {"subject": {}}, {"identifier": []}, {"occurrencePeriod": {"start": "2031-01-01"}}):
        assert not plainly_valid({**full, **bad}, "ServiceRequest")
