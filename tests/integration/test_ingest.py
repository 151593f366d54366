"""The single ingest path against a real index (SQLite, and PostgreSQL with RISHUB_TEST_PG)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import func, select

from hub.app import Hub
from hub.domain import Origin, StoreOutcome
from hub.errors import HubError
from hub.store.models import Instance, Patient, Series, Study
from tests.conftest import TEST_FILES, make_settings
from tests.synthetic import ct_slice, write_series

ORIGIN = Origin("import", user="tester")


def count(hub: Hub, model: type) -> int:
    with hub.db.read() as conn:
        return conn.execute(select(func.count()).select_from(model.__table__)).scalar_one()


def row(hub: Hub, model: type, **where: object) -> dict:
    t = model.__table__
    with hub.db.read() as conn:
        stmt = select(t)
        for k, v in where.items():
            stmt = stmt.where(t.c[k] == v)
        return dict(conn.execute(stmt).mappings().one())


def test_store_indexes_everything_and_keeps_bytes(hub: Hub):
    src = TEST_FILES / "CT_small.dcm"
    result = hub.ingest.store(ORIGIN, src)
    assert result.outcome is StoreOutcome.STORED
    assert result.instance.public_id == "f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af"
    inst = row(hub, Instance, public_id=result.instance.public_id)
    assert hub.blobs.path(inst["blob_key"]).read_bytes() == src.read_bytes()
    assert inst["origin_protocol"] == "import" and inst["origin_user"] == "tester"
    assert inst["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.2"
    meta = json.loads(inst["metadata_json"])
    assert meta["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "CompressedSamples^CT1"}]}
    assert meta["7FE00010"] == {"vr": "OW", "BulkDataURI": "bulk/7FE00010"}
    assert meta["0020000D"]["Value"] == ["1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"]
    data = src.read_bytes()
    assert data[inst["pixel_data_offset"] : inst["pixel_data_offset"] + 4] == b"\xe0\x7f\x10\x00"
    pat = row(hub, Patient, public_id=result.instance.patient_id)
    assert pat["patient_id"] == "1CT1"
    assert pat["patient_name_norm"] == "COMPRESSEDSAMPLES^CT1"
    assert json.loads(pat["main_tags"])["PatientName"] == "CompressedSamples^CT1"
    study = row(hub, Study, public_id=result.instance.study_id)
    assert study["study_date"] == "20040119" and study["modalities_in_study"] == "CT"
    assert json.loads(study["main_tags"])["StudyInstanceUID"] == "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"


def test_counters_and_changes_for_a_series(hub: Hub, tmp_path: Path):
    for p in write_series(tmp_path / "s", 5, rows=16, cols=16):
        hub.ingest.store(ORIGIN, p)
    pat = row(hub, Patient, patient_id="SYN001")
    assert (pat["num_studies"], pat["num_series"], pat["num_instances"]) == (1, 1, 5)
    study = row(hub, Study, patient_pk=pat["pk"])
    assert (study["num_series"], study["num_instances"]) == (1, 5)
    assert row(hub, Series, study_pk=study["pk"])["num_instances"] == 5
    changes, done, last = hub.index.changes(0, 100)
    assert done and last == len(changes) == 8
    assert [c["change_type"] for c in changes[:4]] == ["NewInstance", "NewSeries", "NewStudy", "NewPatient"]
    stats = hub.index.statistics()
    assert stats["instances"] == 5 and stats["disk_size"] == sum(p.stat().st_size for p in (tmp_path / "s").iterdir())


@pytest.mark.parametrize("policy", ["keep", "overwrite", "reject"])
def test_duplicate_policy(tmp_path: Path, db_url: str, policy: str):
    settings = make_settings(tmp_path / "data", db_url, RISHUB_STORAGE_DUPLICATE_POLICY=policy)
    hub = Hub.open(settings, upgrade_schema=True)
    try:
        first = hub.ingest.store(ORIGIN, TEST_FILES / "CT_small.dcm")
        if policy == "reject":
            with pytest.raises(HubError) as exc:
                hub.ingest.store(ORIGIN, TEST_FILES / "CT_small.dcm")
            assert exc.value.dimse_status == 0x0111 and exc.value.http_status == 409
        else:
            second = hub.ingest.store(ORIGIN, TEST_FILES / "CT_small.dcm")
            expected = StoreOutcome.DUPLICATE if policy == "keep" else StoreOutcome.OVERWRITTEN
            assert second.outcome is expected
        assert count(hub, Instance) == 1
        inst = row(hub, Instance, public_id=first.instance.public_id)
        assert list(hub.blobs.iter_keys()) == [inst["blob_key"]]
        assert row(hub, Patient, patient_id="1CT1")["num_instances"] == 1
    finally:
        hub.close()


def test_overwrite_moving_an_instance_to_another_patient_cleans_parents(tmp_path: Path, db_url: str):
    hub = Hub.open(make_settings(tmp_path / "d", db_url, RISHUB_STORAGE_DUPLICATE_POLICY="overwrite"),
                   upgrade_schema=True)
    try:
        a = tmp_path / "a.dcm"
        ct_slice(0, rows=8, cols=8, patient_id="OLD").save_as(a, enforce_file_format=True)
        b = tmp_path / "b.dcm"
        ct_slice(0, rows=8, cols=8, patient_id="NEW").save_as(b, enforce_file_format=True)
        hub.ingest.store(ORIGIN, a)
        moved = hub.ingest.store(ORIGIN, b)
        assert moved.outcome is StoreOutcome.OVERWRITTEN
        assert count(hub, Patient) == 1 and count(hub, Study) == 1 and count(hub, Instance) == 1
        assert row(hub, Patient, public_id=moved.instance.patient_id)["patient_id"] == "NEW"
        assert len(list(hub.blobs.iter_keys())) == 1
    finally:
        hub.close()


def test_same_study_uid_under_two_patient_ids_is_kept_apart(hub: Hub, tmp_path: Path):
    a, b = tmp_path / "a.dcm", tmp_path / "b.dcm"
    ds = ct_slice(0, rows=8, cols=8, patient_id="P1")
    ds.save_as(a, enforce_file_format=True)
    ds2 = ct_slice(1, rows=8, cols=8, patient_id="P2")
    ds2.save_as(b, enforce_file_format=True)
    ra, rb = hub.ingest.store(ORIGIN, a), hub.ingest.store(ORIGIN, b)
    assert ra.instance.study_id != rb.instance.study_id  # as Orthanc: the id includes the PatientID
    assert count(hub, Study) == 2 and count(hub, Patient) == 2


@pytest.mark.parametrize("drop", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID"])
def test_missing_uid_is_rejected_and_leaves_nothing(hub: Hub, tmp_path: Path, drop: str):
    ds = ct_slice(0, rows=8, cols=8)
    delattr(ds, drop)
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(HubError) as exc:
        hub.ingest.store(ORIGIN, path)
    assert exc.value.code == "missing_attribute" and exc.value.dimse_status == 0xA900
    assert drop in exc.value.message
    assert count(hub, Instance) == 0 and count(hub, Patient) == 0
    assert list(hub.blobs.iter_keys()) == []
    assert [p.name for p in hub.blobs.session_dir.iterdir()] == [".lock"]


def test_garbage_and_truncation_leave_stored_data_intact(hub: Hub, tmp_path: Path):
    good = hub.ingest.store(ORIGIN, TEST_FILES / "CT_small.dcm")
    for payload in (b"not dicom at all", (TEST_FILES / "CT_small.dcm").read_bytes()[:20000]):
        with pytest.raises(HubError) as exc:
            hub.ingest.store(ORIGIN, payload)
        assert exc.value.code == "bad_file_format"
    assert count(hub, Instance) == 1
    inst = row(hub, Instance, public_id=good.instance.public_id)
    assert hub.blobs.path(inst["blob_key"]).read_bytes() == (TEST_FILES / "CT_small.dcm").read_bytes()


def test_concurrent_stores_into_one_series(hub: Hub, tmp_path: Path):
    paths = write_series(tmp_path / "c", 24, rows=16, cols=16)
    errors: list[BaseException] = []

    def worker(chunk: list[Path]) -> None:
        try:
            for p in chunk:
                hub.ingest.store(ORIGIN, p)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    # Every thread stores all files: same parents and same SOP Instance UIDs race each other.
    threads = [threading.Thread(target=worker, args=(paths[i:] + paths[:i],)) for i in (0, 6, 12, 18)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count(hub, Instance) == 24 and count(hub, Series) == 1 and count(hub, Patient) == 1
    pat = row(hub, Patient, patient_id="SYN001")
    assert (pat["num_studies"], pat["num_series"], pat["num_instances"]) == (1, 1, 24)
    assert len(list(hub.blobs.iter_keys())) == 24


def test_dimse_style_expected_uids_are_checked(hub: Hub):
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm", stop_before_pixels=True)
    with pytest.raises(HubError) as exc:
        hub.ingest.store(ORIGIN, TEST_FILES / "CT_small.dcm", expected_sop_instance_uid="1.2.3")
    assert exc.value.dimse_status == 0xA900
    ok = hub.ingest.store(ORIGIN, TEST_FILES / "CT_small.dcm", expected_sop_instance_uid=ds.SOPInstanceUID,
                          expected_sop_class_uid=ds.SOPClassUID)
    assert ok.outcome is StoreOutcome.STORED


def test_logs_carry_no_patient_data(hub: Hub, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    caplog.set_level("DEBUG")
    good = tmp_path / "good.dcm"
    ct_slice(0, rows=8, cols=8, patient_id="PHI-ID-777", patient_name="SECRET^PATIENT").save_as(
        good, enforce_file_format=True
    )
    bad_ds = ct_slice(1, rows=8, cols=8, patient_id="PHI-ID-777", patient_name="SECRET^PATIENT")
    del bad_ds.SeriesInstanceUID
    bad = tmp_path / "bad.dcm"
    bad_ds.save_as(bad, enforce_file_format=True)
    hub.ingest.store(ORIGIN, good)
    with pytest.raises(HubError):
        hub.ingest.store(ORIGIN, bad)
    assert caplog.records, "the store path logs"
    assert "SECRET" not in caplog.text and "PHI-ID-777" not in caplog.text


def test_long_values_fit_the_index_and_long_uids_are_refused(hub: Hub, tmp_path: Path) -> None:
    """Values longer than their index column are cut in the index (both databases), kept whole in the
    main tags; a UID over 64 characters is refused with a clear error."""
    from hub.domain.query import Condition, Match, Query, QueryLevel

    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    ds.StudyDescription = "D" * 300
    ds.InstitutionName = "I" * 200
    ds.save_as(tmp_path / "long.dcm")
    result = hub.ingest.store(Origin("import"), tmp_path / "long.dcm")
    [record] = hub.query.find(Query(QueryLevel.STUDY, [Condition("StudyInstanceUID", Match.SINGLE,
                                                                   str(ds.StudyInstanceUID))]), ["StudyDescription"])
    assert record["tags"]["StudyDescription"] == "D" * 300 and result.study_uid == ds.StudyInstanceUID
    ds.SOPInstanceUID = "1." + "2" * 70
    ds.save_as(tmp_path / "uid.dcm")
    with pytest.raises(HubError) as err:
        hub.ingest.store(Origin("import"), tmp_path / "uid.dcm")
    assert err.value.code == "invalid_attribute" and err.value.attribute == "SOPInstanceUID"


def test_concurrent_ingest_leaves_pydicom_validation_alone(hub: Hub, tmp_path: Path) -> None:
    """Many threads storing at once (STOW parts, DIMSE associations, import workers) must not change
    pydicom's process-wide validation settings: a thread that sees RAISE mode refuses valid work."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from pydicom import config

    before = (config.settings.reading_validation_mode, config.settings.writing_validation_mode)
    files = write_series(tmp_path / "many", 40, rows=8, cols=8, seed="threads")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads very often: overlaps that are rare in production become certain
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda f: hub.ingest.store(ORIGIN, f), files))
    finally:
        sys.setswitchinterval(interval)
    assert (config.settings.reading_validation_mode, config.settings.writing_validation_mode) == before


def _snapshot(h: Hub) -> tuple[object, ...]:
    """Counters of every level and the change log (types and ids), independent of timing."""
    with h.db.read() as conn:
        counts = [tuple(conn.execute(select(*cols).order_by(cols[0])).all()) for cols in (
            (Patient.public_id, Patient.num_studies, Patient.num_series, Patient.num_instances),
            (Study.public_id, Study.num_series, Study.num_instances, Study.modalities_in_study),
            (Series.public_id, Series.num_instances),
        )]
    changes, _, _ = h.index.changes(0, 1000)
    return (*counts, [(c["change_type"], c["resource_type"], c["public_id"]) for c in changes])


def test_batch_commit_matches_one_by_one(tmp_path: Path, db_url: str):
    """The group commit of a batch (bulk path: new patient, studies and series; then a batch joining
    them) leaves the same counters and change log as storing the same files one at a time."""
    files = write_series(tmp_path / "a", 4, seed="batch-a") + write_series(tmp_path / "b", 3, seed="batch-b")
    more = [files[3]]  # stored again below through the per-instance path: a duplicate
    origin = Origin("import")
    one = Hub.open(make_settings(tmp_path / "one", db_url + "_one" if db_url.startswith("sqlite") else db_url),
                   upgrade_schema=True)
    try:
        for f in files:
            one.ingest.store(origin, f)
        one.ingest.store(origin, more[0])
        expected = _snapshot(one)
    finally:
        one.close()
    if not db_url.startswith("sqlite"):
        return  # one throw-away PostgreSQL database per test: the comparison runs on SQLite
    batch = Hub.open(make_settings(tmp_path / "batch", db_url), upgrade_schema=True)
    try:
        results = batch.ingest.commit([batch.ingest.prepare(origin, f) for f in files])
        assert all(not isinstance(r, HubError) and r.outcome is StoreOutcome.STORED for r in results)
        again = batch.ingest.commit([batch.ingest.prepare(origin, f) for f in files[:2]])  # per-instance path
        assert [r.outcome for r in again] == [StoreOutcome.DUPLICATE] * 2  # type: ignore[union-attr]
        assert _snapshot(batch) == expected
    finally:
        batch.close()
