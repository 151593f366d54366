"""Orthanc resource routes against the real Orthanc 1.10: the same files uploaded to both, then ids,
lists, paging, resource JSON, children and parents, statistics, shared tags and metadata compared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_FILES
from tests.contract.conftest import Http, stable_view
from tests.synthetic import ct_slice, uid

LEVELS = ("patients", "studies", "series", "instances")
CHILDREN = {"patients": ("studies", "series", "instances"), "studies": ("series", "instances"),
            "series": ("instances",), "instances": ()}
PARENTS = {"patients": (), "studies": ("patient",), "series": ("study", "patient"),
           "instances": ("series", "study", "patient")}


def write_dataset(out: Path) -> list[Path]:
    """Three pydicom files and a synthetic patient with two studies, one of them with two series
    (CT and MR) whose slices arrive interleaved, and a series that announces 3 instances (Orthanc's
    ExpectedNumberOfInstances) but holds 2. Returned in upload order."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def save(ds: Any, name: str) -> None:
        files[name] = out / f"{name}.dcm"
        ds.save_as(files[name], enforce_file_format=True)

    common = {"rows": 8, "cols": 8, "patient_id": "RS001", "patient_name": "Resource^Test"}
    study_a = uid("rs", "study-a")
    for i in range(3):
        save(ct_slice(i, seed="rs-a1", study_uid=study_a, **common), f"a1_{i}")  # type: ignore[arg-type]
    for i in range(2):
        ds = ct_slice(i, seed="rs-a2", study_uid=study_a, **common)  # type: ignore[arg-type]
        ds.Modality, ds.SeriesNumber, ds.SeriesDescription = "MR", "3", "Second series"
        save(ds, f"a2_{i}")
    ds = ct_slice(0, seed="rs-b1", **common)  # type: ignore[arg-type]
    ds.StudyDescription, ds.StudyDate = "CT head", "20250101"
    save(ds, "b1_0")
    for i in range(2):
        ds = ct_slice(i, seed="rs-c1", patient_id="RS002", patient_name="Other^Patient", rows=8, cols=8)
        ds.ImagesInAcquisition, ds.NumberOfTemporalPositions = "3", "1"
        save(ds, f"c1_{i}")
    order = ["a1_0", "a2_0", "a1_1", "b1_0", "a2_1", "a1_2", "c1_0", "c1_1"]
    return [TEST_FILES / "CT_small.dcm", TEST_FILES / "MR_small.dcm", TEST_FILES / "rtplan.dcm"] + [
        files[n] for n in order
    ]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_dataset(tmp_path_factory.mktemp("resources"))


def upload_all(servers: tuple[Http, ...], paths: list[Path]) -> None:
    for path in paths:
        answers = [server.upload(path) for server in servers]
        assert all(stable_view(a) == stable_view(answers[0]) for a in answers), path.name


@pytest.fixture
def loaded(api: Http, orthanc: Http, dataset: list[Path]) -> tuple[Http, Http]:
    upload_all((api, orthanc), dataset)
    return api, orthanc


def both(servers: tuple[Http, Http], path: str) -> tuple[Any, Any]:
    hub, ref = servers
    return hub.json(path), ref.json(path)


def test_lists_are_orthancs(loaded: tuple[Http, Http]):
    for level in LEVELS:
        ours, theirs = both(loaded, f"/{level}")
        assert ours == theirs, level
        assert len(ours) == {"patients": 5, "studies": 6, "series": 7, "instances": 11}[level]
        ours, theirs = both(loaded, f"/{level}?expand")
        assert stable_view(ours) == stable_view(theirs), level


@pytest.mark.parametrize("since,limit", [(0, 2), (1, 2), (3, 100), (10, 2), (2, 0), (1, 2**63)])
def test_paging_is_orthancs(loaded: tuple[Http, Http], since: int, limit: int):
    for level in LEVELS:
        ours, theirs = both(loaded, f"/{level}?since={since}&limit={limit}")
        assert ours == theirs, level
        ours, theirs = both(loaded, f"/{level}?expand&since={since}&limit={limit}")
        assert stable_view(ours) == stable_view(theirs), level


def test_every_resource_and_its_children_and_parents(loaded: tuple[Http, Http]):
    hub, _ = loaded
    for level in LEVELS:
        for rid in hub.json(f"/{level}"):
            ours, theirs = both(loaded, f"/{level}/{rid}")
            assert stable_view(ours) == stable_view(theirs), (level, rid)
            for child in CHILDREN[level]:
                ours, theirs = both(loaded, f"/{level}/{rid}/{child}")
                assert stable_view(ours) == stable_view(theirs), (level, rid, child)
                assert [c["ID"] for c in ours] == [c["ID"] for c in theirs]
            for parent in PARENTS[level]:
                ours, theirs = both(loaded, f"/{level}/{rid}/{parent}")
                assert stable_view(ours) == stable_view(theirs), (level, rid, parent)


def test_series_status_and_expected_instances(loaded: tuple[Http, Http]):
    hub, _ = loaded
    statuses = {s["Status"]: s for s in hub.json("/series?expand")}
    assert statuses["Missing"]["ExpectedNumberOfInstances"] == 3
    assert set(statuses) == {"Missing", "Unknown"}


def test_resource_json_shapes(loaded: tuple[Http, Http]):
    hub, _ = loaded
    study = hub.json("/studies?expand")[3]
    assert list(study) == ["ID", "IsStable", "LastUpdate", "MainDicomTags", "ParentPatient",
                           "PatientMainDicomTags", "Series", "Type"]
    assert isinstance(study["IsStable"], bool) and len(study["LastUpdate"]) == 15
    instance = hub.json("/instances?expand")[0]
    assert list(instance) == ["FileSize", "FileUuid", "ID", "IndexInSeries", "MainDicomTags", "ParentSeries", "Type"]
    assert instance["FileSize"] == (TEST_FILES / "CT_small.dcm").stat().st_size


def test_statistics_are_orthancs(loaded: tuple[Http, Http]):
    hub, _ = loaded
    for level in LEVELS:
        for rid in hub.json(f"/{level}"):
            ours, theirs = both(loaded, f"/{level}/{rid}/statistics")
            assert ours == theirs, (level, rid)


def _numeric_equal(a: str, b: str) -> bool:
    try:
        return [float(x) for x in a.split("\\")] == [float(x) for x in b.split("\\")]
    except ValueError:
        return False


def test_shared_tags_are_orthancs(loaded: tuple[Http, Http]):
    """Same tags and values; decimal strings (DS) only equal as numbers where the file wrote them
    with trailing zeros (the index keeps DICOM JSON numbers), and private tags' names differ."""
    hub, _ = loaded
    for level in ("patients", "studies", "series"):
        for rid in hub.json(f"/{level}"):
            ours, theirs = both(loaded, f"/{level}/{rid}/shared-tags")
            assert list(ours) == list(theirs), (level, rid)
            for key, want in theirs.items():
                got = ours[key]
                assert got["Type"] == want["Type"] == "String"
                if "PrivateCreator" not in want:
                    assert got["Name"] == want["Name"], key
                assert got["Value"] == want["Value"] or _numeric_equal(got["Value"], want["Value"]), (key, got, want)
            short, theirs_short = both(loaded, f"/{level}/{rid}/shared-tags?short")
            assert list(short) == list(theirs_short)
            simple, theirs_simple = both(loaded, f"/{level}/{rid}/shared-tags?simplify")
            public = {want["Name"] for want in theirs.values() if "PrivateCreator" not in want}
            assert public <= set(simple)
            for name in public:
                assert simple[name] == theirs_simple[name] or _numeric_equal(simple[name], theirs_simple[name])


def test_shared_tags_of_a_synthetic_study_equal_exactly(loaded: tuple[Http, Http]):
    hub, ref = loaded
    (study,) = [s for s in hub.json("/studies?expand") if s["PatientMainDicomTags"]["PatientID"] == "RS001"
                and s["MainDicomTags"]["StudyDescription"] == "CT CHEST"]
    ours, theirs = both(loaded, f"/studies/{study['ID']}/shared-tags")
    assert ours == theirs
    assert "0020,000e" not in ours  # two series: SeriesInstanceUID is not shared
    ours, theirs = both(loaded, f"/studies/{study['ID']}/shared-tags?simplify")
    assert ours == theirs and ours["PatientID"] == "RS001"


def test_metadata_is_orthancs(loaded: tuple[Http, Http]):
    hub, _ = loaded
    for level in LEVELS:
        for rid in hub.json(f"/{level}"):
            ours, theirs = both(loaded, f"/{level}/{rid}/metadata")
            assert ours == theirs, (level, rid)
            ours, theirs = both(loaded, f"/{level}/{rid}/metadata?expand")
            volatile = {"LastUpdate", "ReceptionDate", "HttpUsername"}  # times; Orthanc runs without auth
            assert {k: v for k, v in ours.items() if k not in volatile} == {
                k: v for k, v in theirs.items() if k not in volatile
            }, (level, rid)
            assert list(ours) == sorted(ours)
            for name, value in ours.items():
                resp = hub.get(f"/{level}/{rid}/metadata/{name}")
                assert resp.status_code == 200 and resp.text == value
                assert resp.headers["Content-Type"].startswith("text/plain")
    instance = hub.json("/instances")[0]
    assert hub.json(f"/instances/{instance}/metadata?expand")["HttpUsername"] == "admin"


def test_unknown_ids_and_bad_parameters(loaded: tuple[Http, Http]):
    hub, ref = loaded
    paths = [f"/{level}/0000" for level in LEVELS]
    paths += [f"/{level}/0000/{sub}" for level in LEVELS for sub in CHILDREN[level] + PARENTS[level]]
    paths += [f"/{level}/0000/{sub}" for level in LEVELS for sub in ("statistics", "metadata")]
    paths += [f"/{level}/0000/shared-tags" for level in LEVELS[:3]]
    paths += ["/instances/0000/metadata/IndexInSeries", f"/instances/{hub.json('/instances')[0]}/metadata/Nope",
              f"/instances/{hub.json('/instances')[0]}/metadata/CalledAET"]
    for path in [*paths, "/patients/0000/protected"]:  # Orthanc: 400 for the latter
        ours = hub.get(path)
        assert ours.status_code == 404, path
        assert ours.json()["HttpStatus"] == 404
        assert path.endswith("protected") or ref.get(path).status_code == 404
    for query in ("since=1", "limit=2", "since=x&limit=2", "since=1&limit=-2", f"since=1&limit={10**20}"):
        for level in LEVELS:
            ours = hub.get(f"/{level}?{query}")
            assert ours.status_code == 400, (level, query)
            assert ours.json()["HttpStatus"] == 400
            if "-" not in query:  # Orthanc reads a negative limit as "no limit"
                assert ref.get(f"/{level}?{query}").status_code == 400


def test_patient_protection_is_off(loaded: tuple[Http, Http]):
    hub, ref = loaded
    pid = hub.json("/patients")[0]
    assert hub.get(f"/patients/{pid}/protected").text == ref.get(f"/patients/{pid}/protected").text == "0"


def _c_store(port: int, called: str, path: Path) -> None:
    from pydicom import dcmread
    from pynetdicom import AE

    ds = dcmread(path)
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    try:
        assert assoc.send_c_store(ds).Status == 0
    finally:
        assoc.release()
        ae.shutdown()


def test_metadata_of_an_instance_received_over_dimse(api: Http, orthanc: Any, listeners: Any, hub: Any,
                                                     dataset: list[Path]):
    """C-STORE to both: Origin, RemoteAET, RemoteIP and CalledAET (each server's own AE title). Each
    server writes its own Part 10 meta header around the received data set, so PixelDataOffset differs."""
    _c_store(listeners.dimse.port, hub.settings.ae_title, dataset[3])
    _c_store(orthanc.dicom_port, "ORTHANC", dataset[3])
    (rid,) = api.json("/instances")
    assert orthanc.json("/instances") == [rid]
    ours, theirs = both((api, orthanc), f"/instances/{rid}/metadata?expand")
    assert list(ours) == list(theirs) == ["CalledAET", "IndexInSeries", "Origin", "PixelDataOffset",
                                          "ReceptionDate", "RemoteAET", "RemoteIP", "SopClassUid", "TransferSyntax"]
    assert ours["CalledAET"] == hub.settings.ae_title and theirs["CalledAET"] == "ORTHANC"
    for key in ("IndexInSeries", "Origin", "RemoteAET", "RemoteIP", "SopClassUid", "TransferSyntax"):
        assert ours[key] == theirs[key], key
    (sid,) = api.json("/series")
    assert api.get(f"/series/{sid}/metadata/RemoteAET").text == orthanc.get(f"/series/{sid}/metadata/RemoteAET").text
    assert ours["Origin"] == "DicomProtocol" and ours["RemoteAET"] == "PYSCU"
