"""``/{level}/{id}/modify`` and ``/anonymize`` against the real Orthanc 1.10: the same files uploaded
to both, the same bodies, then the answers, the new instances' tags (random UIDs and dummies compared
by shape and consistency), the instance counts and the refusals compared."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from hub.app import Hub
from hub.domain.origin import Origin
from hub.store.archive import ArchiveRepository
from tests.conftest import TEST_FILES
from tests.contract.conftest import Http, OrthancRef
from tests.synthetic import write_series

PLURAL = {"Patient": "patients", "Study": "studies", "Series": "series", "Instance": "instances"}
PARENT = {"Patient": "ParentPatient", "Study": "ParentStudy", "Series": "ParentSeries", "Instance": "ID"}
ORTHANC_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


# ---------------------------------------------------------------------- helpers


@pytest.fixture
def series_files(tmp_path: Path) -> list[Path]:
    """Three synthetic CT slices; the second references the first (ReferencedImageSequence, with a
    nested StudyInstanceUID, FrameOfReferenceUID, a private tag and tags the profile clears/removes)."""
    paths = write_series(tmp_path / "series", 3, rows=16, cols=16)
    first, second = pydicom.dcmread(paths[0]), pydicom.dcmread(paths[1])
    ref = Dataset()
    ref.ReferencedSOPClassUID = first.SOPClassUID
    ref.ReferencedSOPInstanceUID = first.SOPInstanceUID
    ref.StudyInstanceUID = first.StudyInstanceUID
    ref.FrameOfReferenceUID = first.FrameOfReferenceUID
    ref.StudyDate = "20200101"
    ref.InstitutionName = "NESTED INSTITUTION"
    ref.add_new(0x00291010, "LO", "nested private")
    second.ReferencedImageSequence = Sequence([ref])
    second.InstitutionName = "TOP INSTITUTION"
    second.add_new(0x00091001, "LO", "top private")
    second.save_as(paths[1], enforce_file_format=True)
    return paths


def upload(server: Http, hub: Hub | None, path: Path) -> dict[str, Any]:
    """``POST /instances``; on the hub, straight through the ingest path while that route is missing."""
    resp = server.post("/instances", data=path.read_bytes(), headers={"Content-Type": "application/dicom"})
    if hub is not None and resp.status_code in (404, 405):
        ref = hub.ingest.store(Origin("rest", user="admin"), path).instance
        return {"ID": ref.public_id, "ParentSeries": ref.series_id, "ParentStudy": ref.study_id,
                "ParentPatient": ref.patient_id}
    assert resp.ok, resp.text[:300]
    return resp.json()


def upload_both(api: Http, hub: Hub, orthanc: OrthancRef, paths: list[Path]) -> dict[str, Any]:
    ours = [upload(api, hub, p) for p in paths]
    theirs = [upload(orthanc, None, p) for p in paths]
    assert [a["ID"] for a in ours] == [b["ID"] for b in theirs]  # same files, same Orthanc ids
    return ours[0]


def hub_files(hub: Hub, level: str, public_id: str) -> list[Dataset]:
    repo = ArchiveRepository(hub.db)
    found = repo.levels([public_id]).get(public_id)
    assert found and found[0] == level, (level, public_id, found)
    return [pydicom.dcmread(hub.blobs.path(r.blob_key)) for r in repo.instances(level, [found[1]])]


def orthanc_files(orthanc: OrthancRef, level: str, public_id: str) -> list[Dataset]:
    children = orthanc.json(f"/{PLURAL[level]}/{public_id}/instances")
    ids = [public_id] if level == "Instance" else [i["ID"] for i in children]
    return [pydicom.dcmread(io.BytesIO(orthanc.get(f"/instances/{i}/file").content)) for i in ids]


def hub_count(hub: Hub) -> int:
    return hub.index.statistics()["instances"]


def orthanc_count(orthanc: OrthancRef) -> int:
    return len(orthanc.json("/instances"))


def flat(ds: Dataset, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for e in ds:
        key = prefix + str(e.tag)
        if e.VR == "SQ":
            out[key] = ("SQ", len(e.value))
            for i, item in enumerate(e.value):
                out.update(flat(item, f"{key}[{i}]."))
        else:
            value = e.value
            out[key] = (e.VR, len(value) if isinstance(value, bytes) else str(value))
    return out


def normalized(files: list[Dataset], originals: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat tags per instance (by InstanceNumber), new identifiers replaced by the order in which
    they first appear, so that two servers compare equal when they changed and shared the same ones."""
    seen: dict[str, str] = {}
    out = []
    for ds in sorted(files, key=lambda d: int(d.get("InstanceNumber") or 0)):
        orig = originals[str(ds.get("InstanceNumber"))]
        row = {}
        for key, (vr, value) in flat(ds).items():
            if (vr == "UI" or UUID.match(str(value))) and value and orig.get(key) != (vr, value):
                assert UID.match(value) or UUID.match(value), (key, value)
                value = seen.setdefault(value, f"new-{len(seen)}")
            elif key == "(0010,0010)" and re.fullmatch(r"Anonymized\d+", value):
                value = "Anonymized#"
            elif key == "(0012,0063)":
                value = value.split(" - ", 1)[-1]
            row[key] = (vr, value)
        out.append(row)
    return out


def originals_of(paths: list[Path]) -> dict[str, dict[str, Any]]:
    return {str(d.get("InstanceNumber")): flat(d) for d in (pydicom.dcmread(p, force=True) for p in paths)}


def answer_shape(answer: dict[str, Any]) -> dict[str, Any]:
    assert ORTHANC_ID.match(answer["ID"]) and ORTHANC_ID.match(answer["PatientID"])
    assert answer["Path"] == f"/{PLURAL[answer['Type']]}/{answer['ID']}"
    return {k: v for k, v in answer.items() if k not in ("ID", "Path", "PatientID")}


def run_both(api: Http, hub: Hub, orthanc: OrthancRef, paths: list[Path], level: str, op: str,
             body: dict[str, Any]) -> None:
    """Upload, change on both servers, compare answers, counts and the new instances' tags."""
    first = upload_both(api, hub, orthanc, paths)
    target = first[PARENT[level]]
    before = hub_count(hub), orthanc_count(orthanc)
    ours = api.post(f"/{PLURAL[level]}/{target}/{op}", json=body)
    theirs = orthanc.post(f"/{PLURAL[level]}/{target}/{op}", json=body)
    assert ours.status_code == theirs.status_code == 200, (ours.text[:300], theirs.text[:300])
    if level == "Instance":
        assert ours.headers["Content-Type"] == theirs.headers["Content-Type"] == "application/dicom"
        assert hub_count(hub) - before[0] == orthanc_count(orthanc) - before[1] == 0
        mine, ref = [pydicom.dcmread(io.BytesIO(ours.content))], [pydicom.dcmread(io.BytesIO(theirs.content))]
        assert mine[0].file_meta.MediaStorageSOPInstanceUID == mine[0].SOPInstanceUID
    else:
        a, b = ours.json(), theirs.json()
        assert answer_shape(a) == answer_shape(b)
        if level == "Patient" and op == "modify":
            assert a["ID"] == b["ID"]  # the new PatientID is given: same Orthanc id
        assert hub_count(hub) - before[0] == orthanc_count(orthanc) - before[1] == len(paths)
        assert hub.modify.resources.levels([target]).get(target)  # the source stays
        mine, ref = hub_files(hub, level, a["ID"]), orthanc_files(orthanc, level, b["ID"])
    originals = originals_of(paths)
    assert normalized(mine, originals) == normalized(ref, originals)


# ---------------------------------------------------------------------- modify / anonymize compared

SINGLE = ["CT_small.dcm", "MR_small.dcm"]
MODIFY_CASES = [
    ("Instance", {"Replace": {"StudyDescription": "X", "InstitutionName": "Y"}, "Remove": ["SeriesDescription"]}),
    ("Instance", {"Replace": {"PatientID": "NEW", "ImageType": "DERIVED\\SECONDARY"}, "Force": True}),
    ("Series", {"Replace": {"SeriesDescription": "S"}, "RemovePrivateTags": True, "Keep": ["0009,1001"]}),
    ("Series", {"Replace": {"SeriesInstanceUID": "1.2.3.4.5"}, "Force": True}),
    ("Study", {"Replace": {"StudyDescription": "D", "PatientComments": None, "Rows": "12"},
               "Remove": ["ImageComments", "OtherPatientIDsSequence[0].PatientID"]}),
    ("Study", {"Replace": {"ReferencedStudySequence": [{"ReferencedSOPClassUID": "1.2",
                                                        "ReferencedSOPInstanceUID": "1.3"}],
                           "OtherPatientIDsSequence[*].PatientID": "Z"}}),
    ("Patient", {"Replace": {"PatientID": "NEWPATIENT", "PatientName": "NEW^NAME"}, "Force": True}),
]
ANONYMIZE_CASES = [
    ("Instance", {}),
    ("Series", {}),
    ("Study", {"Keep": ["StudyDescription", "InstitutionName"], "KeepPrivateTags": True}),
    ("Patient", {"Replace": {"PatientName": "P"}, "Remove": ["Modality"]}),
    ("Study", {"DicomVersion": "2017c"}),
    ("Study", {"DicomVersion": "2008", "Keep": ["OtherPatientIDsSequence"]}),
]


@pytest.mark.parametrize("name", SINGLE)
@pytest.mark.parametrize("case", range(len(MODIFY_CASES)))
def test_modify_single_files_as_orthanc(hub: Hub, api: Http, orthanc: OrthancRef, name: str, case: int) -> None:
    level, body = MODIFY_CASES[case]
    run_both(api, hub, orthanc, [TEST_FILES / name], level, "modify", body)


@pytest.mark.parametrize("name", SINGLE)
@pytest.mark.parametrize("case", range(len(ANONYMIZE_CASES)))
def test_anonymize_single_files_as_orthanc(hub: Hub, api: Http, orthanc: OrthancRef, name: str, case: int) -> None:
    level, body = ANONYMIZE_CASES[case]
    run_both(api, hub, orthanc, [TEST_FILES / name], level, "anonymize", body)


@pytest.mark.parametrize("level", ["Series", "Study", "Patient"])
def test_anonymize_series_maps_uids_and_references_consistently(
    hub: Hub, api: Http, orthanc: OrthancRef, series_files: list[Path], level: str
) -> None:
    run_both(api, hub, orthanc, series_files, level, "anonymize", {})


@pytest.mark.parametrize("level", ["Series", "Study"])
def test_modify_series_keeps_one_new_study(
    hub: Hub, api: Http, orthanc: OrthancRef, series_files: list[Path], level: str
) -> None:
    run_both(api, hub, orthanc, series_files, level, "modify", {"Replace": {"StudyDescription": "NEW"}})


def test_anonymized_series_is_consistent(hub: Hub, api: Http, orthanc: OrthancRef, series_files: list[Path]) -> None:
    first = upload_both(api, hub, orthanc, series_files)
    answer = api.post(f"/studies/{first['ParentStudy']}/anonymize", json={}).json()
    files = hub_files(hub, "Study", answer["ID"])
    assert len(files) == 3
    assert len({d.StudyInstanceUID for d in files}) == len({d.SeriesInstanceUID for d in files}) == 1
    assert len({d.FrameOfReferenceUID for d in files}) == len({d.PatientID for d in files}) == 1
    assert UUID.match(files[0].PatientID) and re.fullmatch(r"Anonymized\d+", str(files[0].PatientName))
    by_number = {int(d.InstanceNumber): d for d in files}
    ref = by_number[2].ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == by_number[1].SOPInstanceUID
    assert ref.StudyInstanceUID == by_number[1].StudyInstanceUID
    assert ref.FrameOfReferenceUID == by_number[1].FrameOfReferenceUID
    assert ref.StudyDate == "" and "InstitutionName" not in ref and 0x00291010 not in ref
    assert all(d.PatientIdentityRemoved == "YES" for d in files)
    assert all(d.DeidentificationMethod.endswith("PS 3.15-2021b Table E.1-1 Basic Profile") for d in files)
    assert all(d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID for d in files)


# ---------------------------------------------------------------------- refusals compared

ERRORS = [
    ("Study", "modify", {"Replace": {"PatientID": "X"}}),
    ("Study", "modify", {"Replace": {"PatientID": "X"}, "Force": True}),
    ("Series", "modify", {"Replace": {"StudyInstanceUID": "1.2"}, "Force": True}),
    ("Patient", "modify", {"Replace": {"StudyDescription": "X"}}),
    ("Patient", "modify", {"Replace": {"PatientID": "X"}}),
    ("Study", "modify", {"Keep": ["StudyInstanceUID"]}),
    ("Study", "modify", {"Remove": ["SOPInstanceUID"]}),
    ("Study", "modify", {"Remove": ["PatientID"], "Force": True}),
    ("Study", "modify", {"Replace": "x"}),
    ("Study", "modify", {"Remove": "StudyDescription"}),
    ("Study", "modify", {"Remove": [1]}),
    ("Study", "modify", {"Replace": {"StudyDescription": 1}}),
    ("Study", "modify", {"Replace": {"Rows": "abc"}}),
    ("Study", "modify", {"Force": "yes"}),
    ("Study", "modify", {"KeepSource": "no"}),
    ("Study", "modify", {"Transcode": "1.2.3"}),
    ("Instance", "modify", {"Transcode": "1.2.3"}),
    ("Study", "modify", {"PrivateCreator": 1}),
    ("Study", "modify", {"Transcode": 1}),
    ("Series", "modify", {"Replace": {"StudyDescription": {"a": 1}}}),
    ("Series", "anonymize", {"Keep": "StudyDescription"}),
    ("Patient", "anonymize", {"Replace": {"PatientAge": ["1"]}}),
    ("Study", "modify", {"Replace": {"OtherPatientIDsSequence.PatientID": "x"}}),
    ("Study", "anonymize", {"DicomVersion": "2023b"}),
    ("Study", "anonymize", {"DicomVersion": 1}),
    ("Study", "anonymize", {"Keep": ["PatientID"], "Force": True}),
    ("Study", "anonymize", {"KeepPrivateTags": "x"}),
    ("Instance", "anonymize", {"Replace": {"PatientID": "X"}}),
    ("Study", "modify", "not json"),
    ("Study", "anonymize", "[1, 2]"),
    ("Instance", "modify", ""),
]


@pytest.mark.parametrize("case", range(len(ERRORS)))
def test_refusals_as_orthanc(hub: Hub, api: Http, orthanc: OrthancRef, case: int) -> None:
    level, op, body = ERRORS[case]
    first = upload_both(api, hub, orthanc, [TEST_FILES / "CT_small.dcm"])
    before = hub_count(hub), orthanc_count(orthanc)
    path = f"/{PLURAL[level]}/{first[PARENT[level]]}/{op}"
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, str) else {"json": body}
    ours, theirs = api.post(path, **kwargs), orthanc.post(path, **kwargs)
    assert ours.status_code == theirs.status_code == 400, (ours.text, theirs.text)
    a, b = ours.json(), theirs.json()
    if "Details" not in b:  # ours may say why where Orthanc does not
        a.pop("Details", None)
    assert a == b
    assert (hub_count(hub), orthanc_count(orthanc)) == before


@pytest.mark.parametrize("body", [{"Replace": {"NoSuchTag": "x"}}, {"Remove": ["NoSuchTag"]}])
def test_unknown_tag_is_400_where_orthanc_says_500(hub: Hub, api: Http, orthanc: OrthancRef, body: dict) -> None:
    first = upload_both(api, hub, orthanc, [TEST_FILES / "CT_small.dcm"])
    ours = api.post(f"/studies/{first['ParentStudy']}/modify", json=body)
    theirs = orthanc.post(f"/studies/{first['ParentStudy']}/modify", json=body)
    assert (ours.status_code, theirs.status_code) == (400, 500)
    assert ours.json()["OrthancStatus"] == theirs.json()["OrthancStatus"] == 27
    assert ours.json()["Message"] == theirs.json()["Message"] == "Unknown DICOM tag"


@pytest.mark.parametrize("level", ["Instance", "Series", "Study", "Patient"])
def test_unknown_id_is_404(hub: Hub, api: Http, orthanc: OrthancRef, level: str) -> None:
    upload_both(api, hub, orthanc, [TEST_FILES / "CT_small.dcm"])
    for op in ("modify", "anonymize"):
        body = {"Replace": {"PatientID": "N"}, "Force": True} if level == "Patient" else {}
        ours = api.post(f"/{PLURAL[level]}/0000/{op}", json=body)
        theirs = orthanc.post(f"/{PLURAL[level]}/0000/{op}", json=body)
        assert ours.status_code == theirs.status_code == 404
        assert ours.json()["OrthancStatus"] == theirs.json()["OrthancStatus"] == 17


def test_id_of_another_level(hub: Hub, api: Http, orthanc: OrthancRef) -> None:
    """Orthanc 1.10 changes the instances under any id at the patient/study/series routes (the answer
    has the route's Type); at the instance route it fails with a 500, the hub answers 404."""
    first = upload_both(api, hub, orthanc, [TEST_FILES / "CT_small.dcm"])
    ours = api.post(f"/studies/{first['ParentSeries']}/modify", json={})
    theirs = orthanc.post(f"/studies/{first['ParentSeries']}/modify", json={})
    assert ours.status_code == theirs.status_code == 200
    assert answer_shape(ours.json()) == answer_shape(theirs.json())
    ours = api.post(f"/instances/{first['ParentSeries']}/anonymize", json={})
    theirs = orthanc.post(f"/instances/{first['ParentSeries']}/anonymize", json={})
    assert (ours.status_code, theirs.status_code) == (404, 500)


def test_asynchronous_answers_a_job(hub: Hub, api: Http, orthanc: OrthancRef) -> None:
    first = upload_both(api, hub, orthanc, [TEST_FILES / "CT_small.dcm"])
    path = f"/studies/{first['ParentStudy']}/modify"
    ours = api.post(path, json={"Asynchronous": True}).json()
    theirs = orthanc.post(path, json={"Asynchronous": True}).json()
    assert set(ours) == set(theirs) == {"ID", "Path"}
    assert ours["Path"] == f"/jobs/{ours['ID']}"
    info = hub.jobs.wait(ours["ID"], 30)
    assert info.state == "Success" and info.content["Type"] == "Study" and info.content["InstancesCount"] == 1


def test_keep_source_false(hub: Hub, api: Http, orthanc: OrthancRef, series_files: list[Path]) -> None:
    first = upload_both(api, hub, orthanc, series_files)
    path = f"/studies/{first['ParentStudy']}/anonymize"
    ours, theirs = api.post(path, json={"KeepSource": False}), orthanc.post(path, json={"KeepSource": False})
    assert ours.status_code == theirs.status_code == 200
    assert answer_shape(ours.json()) == answer_shape(theirs.json())
    assert orthanc.get(f"/studies/{first['ParentStudy']}").status_code == 404
    assert orthanc.json("/patients") == [theirs.json()["PatientID"]]
    assert not hub.modify.resources.levels([first["ParentStudy"], first["ParentPatient"]])
    assert hub_count(hub) == orthanc_count(orthanc) == 3
    assert len(hub_files(hub, "Study", ours.json()["ID"])) == 3


def test_transcode_to_explicit_little_endian(hub: Hub, api: Http, orthanc: OrthancRef) -> None:
    first = upload_both(api, hub, orthanc, [TEST_FILES / "MR_small_implicit.dcm"])
    body = {"Transcode": "1.2.840.10008.1.2.1"}
    for level in ("Instance", "Series"):
        path = f"/{PLURAL[level]}/{first[PARENT[level]]}/modify"
        ours, theirs = api.post(path, json=body), orthanc.post(path, json=body)
        assert ours.status_code == theirs.status_code == 200
        if level == "Instance":
            mine, ref = pydicom.dcmread(io.BytesIO(ours.content)), pydicom.dcmread(io.BytesIO(theirs.content))
        else:
            mine = hub_files(hub, level, ours.json()["ID"])[0]
            ref = orthanc_files(orthanc, level, theirs.json()["ID"])[0]
        assert mine.file_meta.TransferSyntaxUID == ref.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert mine.PixelData == ref.PixelData
