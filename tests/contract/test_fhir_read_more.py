"""FHIR R4 read side at ``/fhir`` (issue 7), continued: ``started`` as an instant (Timezone Offset From UTC),
token systems on ImagingStudy and Patient identifiers, and Patient ids across an ADT^A40 merge - on a live
hub with the shared HL7 samples and pydicom test files (SQLite and, with RISHUB_TEST_PG, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.app import Hub
from hub.domain.ids import orthanc_id
from tests.contract.conftest import Http
from tests.contract.test_fhir_read import A40, build_world, get, ids, r4_checks, store  # noqa: F401 - r4_checks: autouse

A40_STORED = (b"MSH|^~\\&|ADT|HOSP_A|HUB|PACS|20250316120001||ADT^A40^ADT_A39|ADT-A40-2|P|2.5.1\r"
              b"EVN|A40|20250316120000\rPID|1||NEWCT^^^HOSP_A&2.999.1.1&ISO^MR||MUELLER^JOERG||19670523|M\r"
              b"MRG|1CT1^^^HOSP_A&2.999.1.1&ISO^MR\r")
A40_INTO_STORED = (b"MSH|^~\\&|ADT|HOSP_A|HUB|PACS|20250316120001||ADT^A40^ADT_A39|ADT-A40-3|P|2.5.1\r"
                   b"EVN|A40|20250316120000\rPID|1||4MR1^^^HOSP_A&2.999.1.1&ISO^MR||MR^PATIENT||19700101|F\r"
                   b"MRG|1CT1^^^HOSP_A&2.999.1.1&ISO^MR\r")


@pytest.fixture
def world(hub: Hub, api: Http, tmp_path: Path) -> dict[str, Any]:
    return build_world(hub, tmp_path)


def test_started_is_the_instant_of_the_timezone_offset(hub: Hub, api: Http, world: dict[str, Any],
                                                       tmp_path: Path) -> None:
    """PS3.3 C.12.1.1.8: an order's (0008,0201) (HL7 TQ1-7 with +0100, sample 04) and a stored study's place
    the DICOM date/time; ``started`` searches compare instants (R4 search.html#date)."""
    mr_order = get(api, "/fhir/ImagingStudy/o-2")
    assert mr_order["started"] == "2025-03-15T13:30:00+01:00"  # as the ServiceRequest's occurrenceDateTime
    assert ids(get(api, "/fhir/ImagingStudy?started=2025-03-15T12:30:00Z")) == ["o-2"]
    assert get(api, "/fhir/ImagingStudy?started=2025-03-15T13:30:00Z")["total"] == 0
    assert ids(get(api, "/fhir/ImagingStudy?started=ge2025-03-15T12:30:00Z&started=lt2025-03-15T12:30:01Z")) == [
        "o-2"]
    assert get(api, "/fhir/ImagingStudy?started=gt2025-03-15T12:30:00Z&started=lt2025-03-16")["total"] == 0

    ds = store(hub, tmp_path, "CT_small.dcm", StudyInstanceUID="2.25.55501", TimezoneOffsetFromUTC="+0500",
               StudyDate="20200101", StudyTime="120000", SeriesDate="20200101", SeriesTime="120500")
    study = get(api, f"/fhir/ImagingStudy?identifier=urn:oid:{ds.StudyInstanceUID}")["entry"][0]["resource"]
    assert study["started"] == "2020-01-01T12:00:00+05:00"
    assert study["series"][0]["started"] == "2020-01-01T12:05:00+05:00"
    assert ids(get(api, "/fhir/ImagingStudy?started=2020-01-01T07:00:00Z")) == [study["id"]]
    assert ids(get(api, "/fhir/ImagingStudy?started=2020-01-01T10:00:00%2B03:00")) == [study["id"]]
    assert get(api, "/fhir/ImagingStudy?started=2020-01-01T12:00:00Z")["total"] == 0
    assert ids(get(api, "/fhir/ImagingStudy?started=lt2020-01-01T07:00:01Z&started=gt2019")) == [study["id"]]
    assert study["id"] not in ids(get(api, "/fhir/ImagingStudy?started=lt2020-01-01T07:00:00Z&_count=100"))
    assert study["id"] in ids(get(api, "/fhir/ImagingStudy?started=ne2020-01-01T12:00:00Z&_count=100"))


def test_sort_by_started_orders_instants_not_local_clock_times(hub: Hub, api: Http, tmp_path: Path) -> None:
    """``_sort=started`` sorts by the instant (R4 search.html#_sort on a dateTime): 12:00+05:00 (07:00Z) comes
    before 09:00+00:00 although its local clock time is later; a study without a date sorts first."""
    east = store(hub, tmp_path, "CT_small.dcm", StudyInstanceUID="2.25.70701", TimezoneOffsetFromUTC="+0500",
                 StudyDate="20200201", StudyTime="120000")
    utc = store(hub, tmp_path, "MR_small.dcm", StudyInstanceUID="2.25.70702", TimezoneOffsetFromUTC="+0000",
                StudyDate="20200201", StudyTime="090000")
    east_id, utc_id = (orthanc_id(d.PatientID, d.StudyInstanceUID) for d in (east, utc))
    day = "started=ge2020-02-01T00:00:00Z&started=lt2020-02-02T00:00:00Z"
    assert ids(get(api, f"/fhir/ImagingStudy?{day}&_sort=started")) == [east_id, utc_id]
    assert ids(get(api, f"/fhir/ImagingStudy?{day}&_sort=-started")) == [utc_id, east_id]
    undated = store(hub, tmp_path, "CT_small.dcm", StudyInstanceUID="2.25.70703", StudyDate="", StudyTime="")
    everything = ids(get(api, "/fhir/ImagingStudy?_sort=started&_count=100"))
    assert everything[0] == orthanc_id(undated.PatientID, undated.StudyInstanceUID)
    assert everything.index(east_id) + 1 == everything.index(utc_id)
    assert ids(get(api, "/fhir/ImagingStudy?_sort=-started&_count=100"))[-1] == everything[0]


def test_comma_lists_of_dates_are_or(hub: Hub, api: Http, world: dict[str, Any], tmp_path: Path) -> None:
    """R4 search.html#combining: ``started=a,b`` and ``birthdate=a,b`` are OR, repeats AND - in SQL for the
    archive, and for Patients made from orders (sample 01: MUELLER^JOERG, born 1967-05-23)."""
    june = store(hub, tmp_path, "CT_small.dcm", StudyInstanceUID="2.25.80801", TimezoneOffsetFromUTC="+0000",
                 StudyDate="20190601", StudyTime="100000", PatientID="BD-1", PatientBirthDate="19500101")
    august = store(hub, tmp_path, "MR_small.dcm", StudyInstanceUID="2.25.80802", TimezoneOffsetFromUTC="+0000",
                   StudyDate="20190801", StudyTime="100000", PatientID="BD-2", PatientBirthDate="19600101")
    june_id, august_id = (orthanc_id(d.PatientID, d.StudyInstanceUID) for d in (june, august))
    assert sorted(ids(get(api, "/fhir/ImagingStudy?started=2019-06,2019-08"))) == sorted([june_id, august_id])
    assert ids(get(api, "/fhir/ImagingStudy?started=2019-06,2019-07")) == [june_id]
    assert ids(get(api, "/fhir/ImagingStudy?started=2019-06,2019-08&started=lt2019-07")) == [june_id]
    assert ids(get(api, "/fhir/ImagingStudy?started=2025-03-15T12:30:00Z,2019-08-01T10:00:00Z")) == [
        "o-2", august_id]  # an order's scheduled step and a stored study in one OR list (sorted -started)
    assert get(api, "/fhir/ImagingStudy?started=2019-06,2019-13", 400)["issue"][0]["code"] == "invalid"

    born = lambda query: set(ids(get(api, f"/fhir/Patient?{query}&_count=100")))  # noqa: E731
    bd1, bd2 = orthanc_id("BD-1"), orthanc_id("BD-2")
    assert born("birthdate=1950-01-01,1960-01-01") == {bd1, bd2}
    assert born("birthdate=1950-01-01,1960-01-01&birthdate=lt1955") == {bd1}
    assert world["order_patient"] in born("birthdate=1950-01-01,1967-05-23")
    assert bd1 in born("birthdate=1950-01-01,1967-05-23")
    assert born("birthdate=1950-01-01,1967-05-23&birthdate=gt1960") == {world["order_patient"]}


def test_imaging_study_identifier_tokens_honour_the_system(api: Http, world: dict[str, Any]) -> None:
    """R4 search.html#token: ``system|code`` both, ``|code`` no system, ``code`` any system."""
    mr = "ACC-MR-000731"  # sample 04: Issuer of Accession Number urn:oid:2.999.2.2
    assert ids(get(api, f"/fhir/ImagingStudy?identifier=urn:oid:2.999.2.2|{mr}")) == ["o-2"]
    assert get(api, f"/fhir/ImagingStudy?identifier=urn:oid:9.9|{mr}")["total"] == 0
    assert get(api, f"/fhir/ImagingStudy?identifier=|{mr}")["total"] == 0
    assert ids(get(api, f"/fhir/ImagingStudy?identifier={mr}")) == ["o-2"]
    assert ids(get(api, "/fhir/ImagingStudy?identifier=|ACC-CT-1")) == [world["ct_study"]]  # no issuer
    assert get(api, "/fhir/ImagingStudy?identifier=urn:oid:2.999.2.2|ACC-CT-1")["total"] == 0
    uid = world["ct"].StudyInstanceUID
    assert get(api, f"/fhir/ImagingStudy?identifier=urn:oid:9.9|urn:oid:{uid}")["total"] == 0
    assert ids(get(api, f"/fhir/ImagingStudy?identifier=urn:dicom:uid|urn:oid:{uid}")) == [world["ct_study"]]

    assert ids(get(api, f"/fhir/ImagingStudy?basedon:identifier=urn:oid:2.999.2.2|{mr}")) == ["o-2"]
    assert get(api, f"/fhir/ImagingStudy?basedon:identifier=urn:oid:9.9|{mr}")["total"] == 0
    assert get(api, "/fhir/ImagingStudy?basedon:identifier=|PLC-556677")["total"] == 1  # placer: no system
    assert get(api, "/fhir/ImagingStudy?basedon:identifier=urn:oid:9.9|PLC-556677")["total"] == 0

    assert get(api, "/fhir/ImagingStudy?patient:identifier=urn:oid:9.9|4711001")["total"] == 0
    assert get(api, "/fhir/ImagingStudy?patient:identifier=urn:oid:2.999.1.1|4711001")["total"] == 1


def test_patient_identifier_search_matches_every_identifier_shown(api: Http, world: dict[str, Any]) -> None:
    """Sample 01 PID-3 repeats K123456789 (NATID, 2.999.9.1): an Other Patient ID the Patient lists."""
    patient = get(api, f"/fhir/Patient/{world['order_patient']}")
    assert {"system": "urn:oid:2.999.9.1", "value": "K123456789"}.items() <= next(
        i for i in patient["identifier"] if i["value"] == "K123456789").items()
    assert ids(get(api, "/fhir/Patient?identifier=K123456789")) == [world["order_patient"]]
    assert ids(get(api, "/fhir/Patient?identifier=urn:oid:2.999.9.1|K123456789")) == [world["order_patient"]]
    assert get(api, "/fhir/Patient?identifier=urn:oid:2.999.1.1|K123456789")["total"] == 0
    assert get(api, "/fhir/Patient?identifier=|K123456789")["total"] == 0
    assert get(api, "/fhir/ImagingStudy?patient:identifier=K123456789")["total"] == 1
    assert ids(get(api, f"/fhir/Patient?identifier=|{world['ct'].PatientID}")) == [world["ct_patient"]]


def test_merge_keeps_the_order_only_patient_id(hub: Hub, api: Http, world: dict[str, Any]) -> None:
    """R4 Patient.link: the retired identity keeps its id, inactive, replaced-by the survivor; the survivor
    links replaces back."""
    assert b"MSA|AA|" in hub.hl7.handle(A40)
    retired, survivor = world["order_patient"], orthanc_id("4711999", "HOSP_A")
    for bundle in (get(api, "/fhir/Patient?identifier=4711001"), get(api, f"/fhir/Patient?_id={retired}"),
                   get(api, "/fhir/Patient?identifier=urn:oid:2.999.1.1|4711001")):
        assert ids(bundle) == [retired]
        old = bundle["entry"][0]["resource"]
        assert old["active"] is False and old["identifier"][0]["system"] == "urn:oid:2.999.1.1"
        assert old["link"] == [{"other": {"reference": f"Patient/{survivor}"}, "type": "replaced-by"}]
    assert get(api, f"/fhir/Patient/{retired}")["active"] is False
    new = get(api, f"/fhir/Patient/{survivor}")
    assert new["active"] is True
    assert new["link"] == [{"other": {"reference": f"Patient/{retired}"}, "type": "replaces"}]


def test_merge_of_a_stored_patient_renamed_by_the_archive(hub: Hub, api: Http, world: dict[str, Any]) -> None:
    """MRG 1CT1 -> NEWCT, which the archive does not have: the archive renames its record (the id that the
    studies' subject uses stays with it, the survivor's); the retired 1CT1 gets an id of its own."""
    assert b"MSA|AA|" in hub.hl7.handle(A40_STORED)
    kept = world["ct_patient"]
    retired = get(api, "/fhir/Patient?identifier=1CT1")["entry"][0]["resource"]
    assert retired["id"] == orthanc_id("1CT1", "HOSP_A") != kept
    assert retired["active"] is False
    assert retired["link"] == [{"other": {"reference": f"Patient/{kept}"}, "type": "replaced-by"}]
    assert get(api, f"/fhir/Patient/{retired['id']}") == retired
    survivor = get(api, f"/fhir/Patient/{kept}")
    assert survivor["active"] is True and survivor["identifier"][0]["value"] == "NEWCT"
    assert survivor["link"] == [{"other": {"reference": f"Patient/{retired['id']}"}, "type": "replaces"}]
    assert get(api, f"/fhir/ImagingStudy/{world['ct_study']}")["subject"] == {"reference": f"Patient/{kept}"}


def test_merge_of_a_stored_patient_into_a_stored_one(hub: Hub, api: Http, world: dict[str, Any]) -> None:
    """MRG 1CT1 -> 4MR1 (both stored): the studies move, the retired patient keeps its archive id."""
    assert b"MSA|AA|" in hub.hl7.handle(A40_INTO_STORED)
    retired, survivor = world["ct_patient"], orthanc_id(world["mr"].PatientID)
    old = get(api, f"/fhir/Patient/{retired}")
    assert old["active"] is False
    assert old["link"] == [{"other": {"reference": f"Patient/{survivor}"}, "type": "replaced-by"}]
    assert ids(get(api, "/fhir/Patient?identifier=1CT1")) == [retired]
    assert get(api, f"/fhir/Patient/{survivor}")["link"] == [{"other": {"reference": f"Patient/{retired}"},
                                                              "type": "replaces"}]
    assert get(api, f"/fhir/ImagingStudy/{world['ct_study']}")["subject"] == {"reference": f"Patient/{survivor}"}
