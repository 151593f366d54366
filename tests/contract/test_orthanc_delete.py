"""``DELETE /{level}/{id}`` against the real Orthanc 1.10, and the unit of work behind it: rows,
counters, ModalitiesInStudy, change log, blob files and the crash-safe blob trash."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.app import Hub
from hub.domain.archive import Level
from hub.domain.origin import Origin
from hub.domain.query import Query, QueryLevel
from hub.store.models import CH, SE, ST, TRASH, I, P
from tests.conftest import make_settings
from tests.contract.conftest import Http, stable_view
from tests.contract.test_orthanc_resources import LEVELS, upload_all, write_dataset
from tests.synthetic import ct_slice


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_dataset(tmp_path_factory.mktemp("delete"))


@pytest.fixture
def loaded(api: Http, orthanc: Http, dataset: list[Path]) -> tuple[Http, Http]:
    upload_all((api, orthanc), dataset)
    return api, orthanc


def consistent(hub: Hub) -> None:
    """Counters and ModalitiesInStudy equal what the rows say; no empty parent; no blob left behind."""
    with hub.db.read() as conn:
        parents = ((P, ST, ST.c.patient_pk, "num_studies"), (ST, SE, SE.c.study_pk, "num_series"),
                   (SE, I, I.c.series_pk, "num_instances"))
        for table, child, fk, counter in parents:
            rows = conn.execute(select(table.c.pk, table.c[counter])).all()
            for pk, count in rows:
                actual = conn.execute(select(func.count()).select_from(child).where(fk == pk)).scalar_one()
                assert actual == count > 0, (table.name, pk)
        for pk, mods in conn.execute(select(ST.c.pk, ST.c.modalities_in_study)).all():
            actual = conn.execute(select(SE.c.modality).where(SE.c.study_pk == pk).distinct()).scalars()
            assert mods == "\\".join(sorted(m for m in actual if m)), pk
        instances = conn.execute(select(func.count()).select_from(I)).scalar_one()
        for table in (P, ST):
            total = conn.execute(select(func.coalesce(func.sum(table.c.num_instances), 0))).scalar_one()
            assert total == instances
        keys = set(conn.execute(select(I.c.blob_key)).scalars())
        assert conn.execute(select(func.count()).select_from(TRASH)).scalar_one() == 0
    assert set(hub.blobs.iter_keys()) == keys


def changes(server: Http) -> list[tuple[str, str]]:
    body = server.json("/changes?since=0&limit=1000")
    return [(c["ChangeType"], c["ID"]) for c in body["Changes"] if not c["ChangeType"].startswith("Stable")]


def ids_of(server: Http, body: dict[str, str]) -> list[str]:
    resp = server.post("/tools/find", json=body)
    assert resp.ok
    return resp.json()


def test_deletions_answer_and_leave_what_orthanc_leaves(loaded: tuple[Http, Http], hub: Hub):
    api, ref = loaded
    study_a = ids_of(api, {"Level": "Study", "Query": {"PatientID": "RS001", "StudyDescription": "CT CHEST"}})[0]
    mr_series = ids_of(api, {"Level": "Series", "Query": {"PatientID": "RS001", "Modality": "MR"}})[0]
    ct_series = ids_of(api, {"Level": "Series", "Query": {"Modality": "CT", "PatientID": "RS001",
                                                          "StudyDescription": "CT CHEST"}})
    (study_b,) = ids_of(api, {"Level": "Study", "Query": {"StudyDescription": "CT head"}})
    b_instance = api.json(f"/studies/{study_b}/instances")[0]["ID"]
    first_ct = api.json(f"/series/{ct_series[0]}")["Instances"][0]
    patient_ct = ids_of(api, {"Level": "Patient", "Query": {"PatientID": "1CT1"}})[0]
    steps = [
        (f"/instances/{first_ct}", "Series"),  # the series keeps two instances
        (f"/series/{mr_series}", "Study"),  # study A keeps its CT series
        (f"/instances/{b_instance}", "Patient"),  # series and study B go, the patient keeps study A
        (f"/studies/{study_a}", None),  # the patient's last study: the patient goes too
        (f"/patients/{patient_ct}", None),
    ]
    for path, remaining in steps:
        ours, theirs = api.delete(path), ref.delete(path)
        assert ours.status_code == theirs.status_code == 200, path
        assert ours.json() == theirs.json(), path
        assert (ours.json()["RemainingAncestor"] or {}).get("Type") == remaining
        assert api.delete(path).status_code == ref.delete(path).status_code == 404
        for level in LEVELS:
            assert api.json(f"/{level}") == ref.json(f"/{level}"), (path, level)
            assert stable_view(api.json(f"/{level}?expand")) == stable_view(ref.json(f"/{level}?expand"))
        assert api.json("/statistics") == ref.json("/statistics")
        assert changes(api) == changes(ref)
        for level in LEVELS[:3]:
            for rid in api.json(f"/{level}"):
                assert api.json(f"/{level}/{rid}/statistics") == ref.json(f"/{level}/{rid}/statistics")
        consistent(hub)


def test_modalities_in_study_follow_the_series_left(api: Http, hub: Hub, dataset: list[Path]):
    upload_all((api,), dataset)
    (study,) = ids_of(api, {"Level": "Study", "Query": {"PatientID": "RS001", "StudyDescription": "CT CHEST"}})
    query = Query(QueryLevel.STUDY)
    counts = {r["study_id"]: r["computed"] for r in hub.query.find(query, ["ModalitiesInStudy",
                                                                          "NumberOfStudyRelatedSeries",
                                                                          "NumberOfStudyRelatedInstances"])}
    assert counts[study] == {"ModalitiesInStudy": "CT\\MR", "NumberOfStudyRelatedSeries": 2,
                             "NumberOfStudyRelatedInstances": 5}
    (ct,) = ids_of(api, {"Level": "Series", "Query": {"StudyInstanceUID": api.json(f"/studies/{study}")[
        "MainDicomTags"]["StudyInstanceUID"], "Modality": "CT"}})
    assert api.delete(f"/series/{ct}").json()["RemainingAncestor"]["ID"] == study
    counts = {r["study_id"]: r["computed"] for r in hub.query.find(query, ["ModalitiesInStudy",
                                                                          "NumberOfStudyRelatedSeries",
                                                                          "NumberOfStudyRelatedInstances"])}
    assert counts[study] == {"ModalitiesInStudy": "MR", "NumberOfStudyRelatedSeries": 1,
                             "NumberOfStudyRelatedInstances": 2}
    assert ids_of(api, {"Level": "Study", "Query": {"ModalitiesInStudy": "CT", "PatientID": "RS001"}}) != [study]
    consistent(hub)


def test_blob_files_go_with_the_rows(api: Http, hub: Hub, dataset: list[Path]):
    upload_all((api,), dataset)
    keys = [i["FileUuid"] for i in api.json("/instances?expand")]
    assert all(hub.blobs.path(k).exists() for k in keys)
    for pid in api.json("/patients"):
        assert api.delete(f"/patients/{pid}").json() == {"RemainingAncestor": None}
    assert not any(hub.blobs.path(k).exists() for k in keys)
    assert hub.index.pending_trash() == []
    assert api.json("/statistics")["CountInstances"] == 0
    assert api.json("/changes")["Changes"] == []
    consistent(hub)


def test_unknown_ids_are_404(loaded: tuple[Http, Http]):
    api, ref = loaded
    for level in LEVELS:
        ours = api.delete(f"/{level}/0000")
        assert ours.status_code == ref.delete(f"/{level}/0000").status_code == 404
        assert ours.json()["HttpStatus"] == 404 and ours.json()["Method"] == "DELETE"


def test_a_crash_after_the_commit_is_finished_at_the_next_start(tmp_path: Path, db_url: str, dataset: list[Path]):
    settings = make_settings(tmp_path / "data", db_url)
    hub = Hub.open(settings, upgrade_schema=True)
    try:
        for path in dataset:
            hub.ingest.store(Origin("import"), path)
        pid = hub.resources.list(Level.PATIENT)[0]
        keys = [r["FileUuid"] for r in hub.resources.children(Level.PATIENT, pid, Level.INSTANCE)]
        deletion = hub.resources.deleter.delete(Level.PATIENT, pid)  # committed; the process "dies" here
        assert deletion is not None and sorted(deletion.blob_keys) == sorted(keys)
        assert sorted(hub.index.pending_trash()) == sorted(keys)
        assert all(hub.blobs.path(k).exists() for k in keys)
    finally:
        hub.close()
    hub = Hub.open(settings, upgrade_schema=True)
    try:
        assert hub.index.pending_trash() == []
        assert not any(hub.blobs.path(k).exists() for k in keys)
        assert pid not in hub.resources.list(Level.PATIENT)
        consistent(hub)
    finally:
        hub.close()


def test_deleting_while_storing_keeps_the_index_consistent(hub: Hub, tmp_path: Path):
    """Stores into one series while its study is deleted over and over: whatever interleaving,
    counters match the rows and every blob file belongs to a row."""
    study_uid = "1.2.826.0.1.3680043.10.1419.99.1"
    paths = []
    for i in range(40):
        ds = ct_slice(i, rows=8, cols=8, seed="race", study_uid=study_uid, patient_id="RACE")
        paths.append(tmp_path / f"{i}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    stop = threading.Event()
    errors: list[BaseException] = []

    def store() -> None:
        try:
            for path in paths:
                hub.ingest.store(Origin("import"), path)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            stop.set()

    def delete() -> None:
        try:
            while not stop.is_set():
                for sid in hub.resources.list(Level.STUDY):
                    try:
                        hub.resources.delete(Level.STUDY, sid)
                    except Exception as exc:  # noqa: BLE001 - only "already gone" is expected
                        if getattr(exc, "code", None) != "unknown_resource":
                            raise
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=store), threading.Thread(target=delete)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    consistent(hub)
    with hub.db.read() as conn:
        left = conn.execute(select(func.count()).select_from(I)).scalar_one()
        new = select(func.count()).select_from(CH).where(CH.c.change_type == "NewInstance")
        logged = conn.execute(new).scalar_one()
    assert logged == left  # the change log only keeps what still exists


def _count(hub: Hub, table: Any) -> int:
    with hub.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_large_series_goes_in_one_unit_of_work(hub: Hub, tmp_path: Path):
    for i in range(120):
        ds = ct_slice(i, rows=8, cols=8, seed="large")
        path = tmp_path / f"{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        hub.ingest.store(Origin("import"), path)
    (series,) = hub.resources.list(Level.SERIES)
    assert hub.resources.delete(Level.SERIES, series) == {"RemainingAncestor": None}
    assert _count(hub, I) == _count(hub, P) == _count(hub, CH) == 0
    consistent(hub)
