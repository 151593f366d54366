"""Golden tests of mappings.dicom_to_fhir (mapping-reference 3.1/3.2, 2.4, 1.5): archive rows and orders
-> R4 ImagingStudy / Patient / Endpoint, each emitted resource validated by the fhir.resources R4B models."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fhir.resources.R4B.endpoint import Endpoint
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.patient import Patient

from hub.domain.ids import orthanc_id
from mappings import dicom_to_fhir as m
from mappings.order_to_fhir import order_identifiers

CET = timezone(timedelta(hours=1))
T0 = datetime(2025, 3, 14, 8, 15, 2, 123000)
T1 = datetime(2025, 3, 14, 9, 40, 0)
STUDY_UID = "2.25.192717855085157701099642667497404171930"
VALIDATOR = {"ImagingStudy": ImagingStudy, "Patient": Patient, "Endpoint": Endpoint}


def valid(resource: dict[str, Any]) -> dict[str, Any]:
    """Parse with the R4B model (raises on any invalid element) and return the resource."""
    VALIDATOR[resource["resourceType"]].model_validate(resource)
    return resource


def stored_study() -> tuple[dict[str, Any], list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
    study = {"pk": 7, "public_id": orthanc_id("4711001", STUDY_UID), "study_uid": STUDY_UID, "study_date": "20250314",
             "study_time": "093412", "accession_number": "ACC20250314001", "study_description": "CT Thorax native",
             "referring_physician_name": "SCHMIDT^ANNA^^DR.", "updated_at": T1}
    series = [
        {"pk": 2, "series_uid": "2.25.2", "modality": "SR", "series_number": 99, "series_description": "Dose report",
         "body_part_examined": None, "series_date": "20250314", "series_time": "095000", "main_tags": "{}"},
        {"pk": 1, "series_uid": "2.25.1111", "modality": "CT", "series_number": 2, "series_description": "Thorax 1mm",
         "body_part_examined": "CHEST", "series_date": None, "series_time": None,
         "main_tags": json.dumps({"SeriesDate": "20250314"})},
    ]
    instances = {
        1: [{"sop_instance_uid": "2.25.2223", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "instance_number": 2},
            {"sop_instance_uid": "2.25.2222", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "instance_number": 1}],
        2: [{"sop_instance_uid": "2.25.3333", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.88.67",
             "instance_number": None}],
    }
    return study, series, instances


GOLDEN_STORED = {
    "resourceType": "ImagingStudy", "id": orthanc_id("4711001", STUDY_UID),
    "meta": {"versionId": m.version_of(T1), "lastUpdated": "2025-03-14T09:40:00.000Z"},
    "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{STUDY_UID}"},
                   {"type": {"coding": [{"system": m.V2_0203, "code": "ACSN"}]}, "value": "ACC20250314001"}],
    "status": "available",
    "modality": [{"system": m.DCM, "code": "CT"}, {"system": m.DCM, "code": "SR"}],
    "subject": {"reference": "Patient/p1"},
    "started": "2025-03-14T09:34:12+01:00",
    "basedOn": [{"type": "ServiceRequest", "identifier": {
        "type": {"coding": [{"system": m.V2_0203, "code": "ACSN"}]}, "value": "ACC20250314001"}}],
    "referrer": {"display": "DR. ANNA SCHMIDT"},
    "endpoint": [{"reference": "Endpoint/dicomweb-wado-rs"}],
    "numberOfSeries": 2, "numberOfInstances": 3,
    "description": "CT Thorax native",
    "series": [
        {"uid": "2.25.1111", "number": 2, "modality": {"system": m.DCM, "code": "CT"}, "description": "Thorax 1mm",
         "numberOfInstances": 2, "endpoint": [{"reference": "Endpoint/dicomweb-wado-rs"}],
         "bodySite": {"system": "http://snomed.info/sct", "code": "51185008", "display": "Thorax"},
         "started": "2025-03-14",
         "instance": [
             {"uid": "2.25.2222", "sopClass": {"system": "urn:ietf:rfc:3986",
                                               "code": "urn:oid:1.2.840.10008.5.1.4.1.1.2"}, "number": 1,
              "title": "CT Image Storage"},
             {"uid": "2.25.2223", "sopClass": {"system": "urn:ietf:rfc:3986",
                                               "code": "urn:oid:1.2.840.10008.5.1.4.1.1.2"}, "number": 2,
              "title": "CT Image Storage"}]},
        {"uid": "2.25.2", "number": 99, "modality": {"system": m.DCM, "code": "SR"}, "description": "Dose report",
         "numberOfInstances": 1, "endpoint": [{"reference": "Endpoint/dicomweb-wado-rs"}],
         "started": "2025-03-14T09:50:00+01:00",
         "instance": [{"uid": "2.25.3333", "sopClass": {"system": "urn:ietf:rfc:3986",
                                                        "code": "urn:oid:1.2.840.10008.5.1.4.1.1.88.67"},
                       "title": "X-Ray Radiation Dose SR Storage"}]},
    ],
}


def test_stored_study_golden() -> None:
    study, series, instances = stored_study()
    out = m.archive_study_to_imaging_study(study, "Patient/p1", series, instances, None, CET)
    assert valid(out) == GOLDEN_STORED


PRF = {"coding": [{"system": m.PARTICIPATION, "code": "PRF", "display": "performer"}]}


def dicom_json(**values: Any) -> str:  # noqa: ANN401
    """Stored DICOM JSON (PS3.18 F.2) of an instance: keyword=value (lists for several values)."""
    vr = {"Laterality": "CS", "ImageLaterality": "CS", "ContentLabel": "CS", "DocumentTitle": "ST",
          "ImageType": "CS", "OperatorsName": "PN", "PerformingPhysicianName": "PN"}
    out: dict[str, Any] = {}
    for keyword, value in values.items():
        if keyword == "ConceptName":
            out["0040A043"] = {"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": ["18748-4"]},
                                                     "00080102": {"vr": "SH", "Value": ["LN"]},
                                                     "00080104": {"vr": "LO", "Value": [value]}}]}
            continue
        items = value if isinstance(value, list) else [value]
        if vr[keyword] == "PN":
            items = [{"Alphabetic": v} for v in items]
        out[m._TAGS[keyword]] = {"vr": vr[keyword], "Value": items}
    return json.dumps(out)


def one_series(main_tags: dict[str, str], *instances: dict[str, Any]) -> dict[str, Any]:
    study, series, _ = stored_study()
    row = {**series[1], "main_tags": json.dumps(main_tags)}
    insts = [{"sop_instance_uid": f"2.25.9{n}", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.1.2", "instance_number": n,
              **i} for n, i in enumerate(instances, 1)]
    return valid(m.archive_study_to_imaging_study(study, "Patient/p1", [row], {1: insts}, None, CET))["series"][0]


def test_series_laterality_performer_and_instance_title_from_the_series_tags() -> None:
    """Laterality (0020,0060) R -> SNOMED 24028007; Operators' Name (0008,1070) (Orthanc main tag, several
    values joined by backslash) and Performing Physician's Name -> display-only Practitioners, function PRF."""
    series = one_series({"Laterality": "R", "OperatorsName": "KELLER^TOM\\WEBER^ANA",
                         "PerformingPhysicianName": "MEIER^EVA^^DR."}, {})
    assert series["laterality"] == {"system": "http://snomed.info/sct", "code": "24028007", "display": "Right"}
    assert series["performer"] == [{"function": PRF, "actor": {"type": "Practitioner", "display": "DR. EVA MEIER"}},
                                   {"function": PRF, "actor": {"type": "Practitioner", "display": "TOM KELLER"}},
                                   {"function": PRF, "actor": {"type": "Practitioner", "display": "ANA WEBER"}}]
    assert series["instance"][0]["title"] == "Digital Mammography X-Ray Image Storage - For Presentation"


def test_laterality_and_title_from_the_stored_instance_metadata() -> None:
    """Image Laterality (0020,0062) the instances agree on; title: Content Label > Concept Name meaning >
    Document Title > Image Type > SOP Class name; performers from the instances when the series has none."""
    series = one_series({}, {"metadata_json": dicom_json(ImageLaterality="L", ContentLabel="LEFT CC",
                                                        DocumentTitle="ignored", OperatorsName="KELLER^TOM")},
                        {"metadata_json": dicom_json(ImageLaterality="L", ConceptName="Radiology Report")},
                        {"metadata_json": dicom_json(DocumentTitle="Referral letter")},
                        {"main_tags": json.dumps({"ImageType": "ORIGINAL\\PRIMARY"}),
                         "metadata_json": dicom_json(OperatorsName=["KELLER^TOM", "WEBER^ANA"])})
    assert series["laterality"] == {"system": "http://snomed.info/sct", "code": "7771000", "display": "Left"}
    assert [i["title"] for i in series["instance"]] == ["LEFT CC", "Radiology Report", "Referral letter",
                                                        "ORIGINAL\\PRIMARY"]
    assert [p["actor"]["display"] for p in series["performer"]] == ["TOM KELLER", "ANA WEBER"]


@pytest.mark.parametrize(("series_tags", "image", "expected"), [
    ({"Laterality": "B"}, ["L"], "51440002"), ({}, ["L", "R"], None), ({}, ["R", ""], "24028007"),
    ({"Laterality": "U"}, ["L"], None), ({}, [], None)])
def test_laterality_rules(series_tags: dict[str, str], image: list[str], expected: str | None) -> None:
    series = one_series(series_tags, *({"metadata_json": dicom_json(ImageLaterality=v)} if v else {} for v in image))
    assert series.get("laterality", {}).get("code") == expected
    assert "performer" not in series and all("title" in i for i in series["instance"])


def order_row(status: str = "SC") -> dict[str, Any]:
    attrs = {"00080050": {"vr": "SH", "Value": ["ACC20250314001"]},
             "00080051": {"vr": "SQ", "Value": [{"00400032": {"vr": "UT", "Value": ["2.999.1.3"]},
                                                 "00400033": {"vr": "CS", "Value": ["ISO"]}}]},
             "00321060": {"vr": "LO", "Value": ["CT Thorax native"]},
             "00321064": {"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": ["CT-THX-N"]},
                                                 "00080102": {"vr": "SH", "Value": ["99RIS"]},
                                                 "00080104": {"vr": "LO", "Value": ["CT Thorax native"]}}]},
             "00401002": {"vr": "LO", "Value": ["Cough"]},
             "00080090": {"vr": "PN", "Value": [{"Alphabetic": "SCHMIDT^ANNA"}]}}
    return {"pk": 5, "study_uid": STUDY_UID, "accession_number": "ACC20250314001", "placer_order": "PLC-1",
            "filler_order": "", "status": status, "attrs": json.dumps(attrs), "updated_at": T0}


def steps(*statuses: str) -> list[dict[str, Any]]:
    return [{"status": s, "modality": mod, "start_date": "20250314", "start_time": t, "updated_at": T1 if i else T0}
            for i, (s, mod, t) in enumerate(zip(statuses, ("CT", "MR"), ("093000", "083000"), strict=False))]


def test_order_without_images_is_registered() -> None:
    out = valid(m.order_to_imaging_study(order_row(), steps("SCHEDULED", "STARTED"), "Patient/p1", CET))
    assert out["id"] == "o-5" and out["status"] == "registered"
    assert out["identifier"][0] == {"system": "urn:dicom:uid", "value": f"urn:oid:{STUDY_UID}"}
    assert out["identifier"][1]["system"] == "urn:oid:2.999.1.3"  # Issuer of Accession Number, ISO
    assert out["modality"] == [{"system": m.DCM, "code": "CT"}, {"system": m.DCM, "code": "MR"}]
    assert out["started"] == "2025-03-14T08:30:00+01:00"  # the earliest scheduled step
    assert out["numberOfSeries"] == 0 and out["numberOfInstances"] == 0 and "series" not in out
    assert [b["identifier"]["type"]["coding"][0]["code"] for b in out["basedOn"]] == ["ACSN", "PLAC"]
    assert out["procedureCode"] == [{"coding": [{"system": "urn:dicom:coding-scheme:99RIS", "code": "CT-THX-N",
                                                 "display": "CT Thorax native"}], "text": "CT Thorax native"}]
    assert out["reasonCode"] == [{"text": "Cough"}] and out["description"] == "CT Thorax native"
    assert out["meta"]["versionId"] == m.version_of(T1)  # the latest change of the order or its steps


@pytest.mark.parametrize(("issuer", "system"), [
    ({"00400031": {"vr": "UT", "Value": ["http://ris.example/accession"]}}, "http://ris.example/accession"),
    ({"00400031": {"vr": "UT", "Value": ["RIS"]}}, None),  # a bare local namespace is no URI
    ({"00400032": {"vr": "UT", "Value": ["https://ris.example/acc"]}, "00400033": {"vr": "CS", "Value": ["URI"]}},
     "https://ris.example/acc"),
    ({"00400032": {"vr": "UT", "Value": ["2.999.1.3"]}, "00400033": {"vr": "CS", "Value": ["ISO"]}},
     "urn:oid:2.999.1.3"),
])
def test_accession_system_from_its_issuer(issuer: dict[str, Any], system: str | None) -> None:
    """Issuer of Accession Number Sequence (0008,0051) -> Identifier.system the way the order's ServiceRequest
    shows it (mappings/order_to_fhir.py): a FHIR order keeps its system as the local namespace."""
    row = order_row()
    attrs = {**json.loads(row["attrs"]), "00080051": {"vr": "SQ", "Value": [issuer]}}
    out = valid(m.order_to_imaging_study({**row, "attrs": json.dumps(attrs)}, steps("SCHEDULED"), "Patient/p1", CET))
    assert out["identifier"][1].get("system") == system and out["identifier"][1]["value"] == "ACC20250314001"
    assert out["basedOn"][0]["identifier"].get("system") == system
    idents = order_identifiers({**row, "requested_procedure_id": ""}, attrs)
    acsn = next(i for i in idents if i["type"]["coding"][0]["code"] == "ACSN")
    assert acsn.get("system") == system


@pytest.mark.parametrize(("order_status", "step_states", "expected"), [
    ("SC", ["SCHEDULED"], "registered"), ("IP", ["STARTED"], "registered"), ("CA", ["CANCELED"], "cancelled"),
    ("DC", ["SCHEDULED"], "cancelled"), ("SC", ["CANCELED", "DISCONTINUED"], "cancelled"),
    ("SC", ["CANCELED", "SCHEDULED"], "registered"), ("SC", [], "registered"),
])
def test_order_status_mapping(order_status: str, step_states: list[str], expected: str) -> None:
    assert m.order_status_to_imaging_status(order_status, step_states) == expected


def test_stored_study_with_order_takes_based_on_and_newest_version() -> None:
    study, series, instances = stored_study()
    order = order_row()
    order["updated_at"] = T1 + timedelta(seconds=5)
    out = valid(m.archive_study_to_imaging_study(study, "Patient/p1", series, instances, order, None))
    assert out["status"] == "available"
    assert out["meta"]["versionId"] == m.version_of(order["updated_at"])
    assert out["basedOn"][0]["identifier"]["system"] == "urn:oid:2.999.1.3"
    assert out["basedOn"][1]["identifier"]["value"] == "PLC-1"
    assert out["started"].startswith("2025-03-14T09:34:12")  # the system zone when none is configured
    assert out["started"][19] in "+-Z"


def test_patient_from_order_attributes() -> None:
    attrs = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "MÜLLER^JÖRG^PETER^DR.^PHD"}]},
             "00100030": {"vr": "DA", "Value": ["19670523"]}, "00100040": {"vr": "CS", "Value": ["M"]},
             "00100024": {"vr": "SQ", "Value": [{"00400032": {"vr": "UT", "Value": ["2.999.1.1"]},
                                                 "00400033": {"vr": "CS", "Value": ["ISO"]}}]},
             "00101002": {"vr": "SQ", "Value": [
                 {"00100020": {"vr": "LO", "Value": ["4711001"]}, "00100021": {"vr": "LO", "Value": ["HOSP_A"]}},
                 {"00100020": {"vr": "LO", "Value": ["K123"]}, "00100021": {"vr": "LO", "Value": ["NATID"]}}]}}
    rid = m.patient_resource_id("4711001", "HOSP_A", archived=False)
    assert rid == orthanc_id("4711001", "HOSP_A")
    out = valid(m.patient_from_attrs(rid, "4711001", "HOSP_A", attrs, T0))
    assert out["identifier"] == [
        {"use": "usual", "type": {"coding": [{"system": m.V2_0203, "code": "MR"}]}, "system": "urn:oid:2.999.1.1",
         "value": "4711001", "assigner": {"display": "HOSP_A"}},
        {"use": "secondary", "value": "K123", "assigner": {"display": "NATID"}}]
    assert out["name"] == [{"use": "official", "text": "DR. JÖRG PETER MÜLLER PHD", "family": "MÜLLER",
                            "given": ["JÖRG", "PETER"], "prefix": ["DR."], "suffix": ["PHD"]}]
    assert out["gender"] == "male" and out["birthDate"] == "1967-05-23" and out["active"] is True


def test_archive_patient_and_unknown_sex() -> None:
    row = {"public_id": orthanc_id("X1"), "patient_id": "X1", "patient_name": "DOE^JANE", "birth_date": None,
           "sex": "", "updated_at": T0}
    out = valid(m.archive_patient_to_patient(row))
    assert out["id"] == orthanc_id("X1") and out["gender"] == "unknown" and "birthDate" not in out
    assert out["identifier"][0]["value"] == "X1" and "system" not in out["identifier"][0]


def test_merged_patient_points_to_survivor() -> None:
    out = valid(m.merged_patient("old-id", "4711001", "HOSP_A", "new-id", T0))
    assert out["active"] is False
    assert out["link"] == [{"other": {"reference": "Patient/new-id"}, "type": "replaced-by"}]
    assert out["identifier"][0]["use"] == "old" and out["identifier"][0]["value"] == "4711001"


def test_endpoint_is_the_dicomweb_base() -> None:
    out = valid(m.dicomweb_endpoint("http://127.0.0.1:8042/dicom-web/", T0))
    assert out["connectionType"] == {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                                     "code": "dicom-wado-rs"}
    assert out["address"] == "http://127.0.0.1:8042/dicom-web" and out["status"] == "active"
    assert out["payloadType"]


@pytest.mark.parametrize(("da", "tm", "expected"), [
    ("20250314", "093412", "2025-03-14T09:34:12+01:00"), ("20250314", "0934", "2025-03-14T09:34:00+01:00"),
    ("20250314", "093412.5", "2025-03-14T09:34:12.500+01:00"), ("20250314", "", "2025-03-14"),
    ("20250314", None, "2025-03-14"), ("2025031", "1200", None), ("20251340", "", None), ("", "1200", None),
])
def test_dicom_datetime(da: str, tm: str | None, expected: str | None) -> None:
    assert m.dicom_datetime(da, tm, CET) == expected


@pytest.mark.parametrize(("tm", "offset", "expected"), [
    ("093412", "+0500", "2025-03-14T09:34:12+05:00"),  # (0008,0201) places the local time
    ("093412", "-0330", "2025-03-14T09:34:12-03:30"),
    ("093412-0800", "+0500", "2025-03-14T09:34:12-08:00"),  # an offset in the value itself wins
    ("093412", "", "2025-03-14T09:34:12+01:00"),  # none: the hub's zone
    ("093412", "+9999", "2025-03-14T09:34:12+01:00"),  # not a valid offset: the hub's zone
    ("", "+0500", "2025-03-14"),  # a date has no zone
])
def test_dicom_datetime_timezone_offset(tm: str, offset: str, expected: str) -> None:
    """PS3.3 C.12.1.1.8: an offset in a DT value, else Timezone Offset From UTC, else the hub's zone."""
    assert m.dicom_datetime("20250314", tm, CET, offset) == expected


def test_started_follows_timezone_offset_of_order_and_stored_study() -> None:
    attrs = {"00080201": {"vr": "SH", "Value": ["+0500"]}}
    order = {**order_row(), "attrs": json.dumps({**json.loads(order_row()["attrs"]), **attrs})}
    out = valid(m.order_to_imaging_study(order, steps("SCHEDULED"), "Patient/p1", CET))
    assert out["started"] == "2025-03-14T09:30:00+05:00"
    study, series, instances = stored_study()
    out = valid(m.archive_study_to_imaging_study({**study, "tz_offset": "-0500"}, "Patient/p1", series, instances,
                                                 None, CET))
    assert out["started"] == "2025-03-14T09:34:12-05:00"
    assert out["series"][1]["started"] == "2025-03-14T09:50:00-05:00"


def test_merge_links_and_retired_identifier_system() -> None:
    qualifiers = [{"00400032": {"vr": "UT", "Value": ["2.999.1.1"]}, "00400033": {"vr": "CS", "Value": ["ISO"]}}]
    old = valid(m.merged_patient("old-id", "4711001", "HOSP_A", "new-id", T0, qualifiers))
    assert old["identifier"][0]["system"] == "urn:oid:2.999.1.1"
    row = {"public_id": "new-id", "patient_id": "4711999", "patient_name": "DOE^JANE", "birth_date": None,
           "sex": "F", "updated_at": T0}
    survivor = valid(m.archive_patient_to_patient(row, replaces=["old-id"]))
    assert survivor["link"] == [{"other": {"reference": "Patient/old-id"}, "type": "replaces"}]
    assert "link" not in m.archive_patient_to_patient(row)
