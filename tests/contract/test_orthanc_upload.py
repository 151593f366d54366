"""``POST /instances`` against a real Orthanc 1.10: one file, a duplicate, a ZIP of many, bad bodies."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import pydicom
import requests

from hub.app import Hub
from hub.store.models import I
from tests.conftest import TEST_FILES
from tests.contract.conftest import Http

CT = TEST_FILES / "CT_small.dcm"
MR = TEST_FILES / "MR_small.dcm"
RTPLAN = TEST_FILES / "rtplan.dcm"
TRUNCATED = TEST_FILES / "MR_truncated.dcm"


def post(server: Http, body: bytes, **headers: str) -> requests.Response:
    return server.post("/instances", data=body, headers={"Content-Type": "application/dicom", **headers})


def without(path: Path, keyword: str, tmp_path: Path) -> bytes:
    """``path`` with one element removed (an instance no archive can identify, e.g. a DICOMDIR)."""
    ds = pydicom.dcmread(path)
    delattr(ds, keyword)
    out = tmp_path / f"no-{keyword}.dcm"
    ds.save_as(out)
    return out.read_bytes()


def hub_instances(hub: Hub) -> list[str]:
    """Orthanc ids of the instances the hub holds (read from its index)."""
    from sqlalchemy import select

    with hub.db.read() as conn:
        return sorted(conn.execute(select(I.c.public_id)).scalars())


def make_zip(members: list[tuple[str, bytes | None]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A ZIP of (name, bytes) members; ``None`` makes a directory entry."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            if data is None:
                zf.writestr(zipfile.ZipInfo(name.rstrip("/") + "/"), b"")
            else:
                zf.writestr(name, data)
    return buf.getvalue()


def test_single_file_and_duplicate_answer_as_orthanc(hub: Hub, api: Http, orthanc: Http):
    for _ in range(2):  # Success, then AlreadyStored
        ours, theirs = post(api, CT.read_bytes()), post(orthanc, CT.read_bytes())
        assert ours.status_code == theirs.status_code == 200
        assert ours.json() == theirs.json()
        assert ours.headers["Content-Type"].startswith("application/json")
    assert ours.json()["Status"] == "AlreadyStored"
    assert list(ours.json()) == ["ID", "ParentPatient", "ParentSeries", "ParentStudy", "Path", "Status"]
    assert hub_instances(hub) == [ours.json()["ID"]] == orthanc.json("/instances")


def test_gzip_encoded_file_as_orthanc(api: Http, orthanc: Http):
    body = gzip.compress(MR.read_bytes())
    ours, theirs = post(api, body, **{"Content-Encoding": "gzip"}), post(orthanc, body, **{"Content-Encoding": "gzip"})
    assert ours.status_code == theirs.status_code == 200
    assert ours.json() == theirs.json()


def test_zip_of_many_skips_what_orthanc_skips(hub: Hub, api: Http, orthanc: Http, tmp_path: Path):
    api.upload(CT)  # so that the ZIP holds one duplicate
    orthanc.upload(CT)
    body = make_zip([
        ("readme.txt", b"not DICOM"),
        ("a/CT_small.dcm", CT.read_bytes()),
        ("a/", None),
        ("a/b/MR", MR.read_bytes()),
        ("truncated.dcm", TRUNCATED.read_bytes()),
        ("DICOMDIR", without(RTPLAN, "SOPInstanceUID", tmp_path)),
        ("empty.dcm", b""),
        ("rtplan.dcm", RTPLAN.read_bytes()),
    ])
    ours, theirs = post(api, body), post(orthanc, body)
    assert ours.status_code == theirs.status_code == 200
    assert ours.json() == theirs.json()
    assert [a["Status"] for a in ours.json()] == ["AlreadyStored", "Success", "Success"]
    assert hub_instances(hub) == sorted(orthanc.json("/instances"))


def test_stored_zip_members_too(api: Http, orthanc: Http):
    body = make_zip([("1.dcm", MR.read_bytes()), ("2.dcm", RTPLAN.read_bytes())], zipfile.ZIP_STORED)
    ours, theirs = post(api, body), post(orthanc, body)
    assert ours.status_code == theirs.status_code == 200
    assert ours.json() == theirs.json() and len(ours.json()) == 2


def test_bad_bodies_give_orthanc_errors_and_store_nothing(api: Http, orthanc: Http, tmp_path: Path):
    bodies = {
        "empty": b"",
        "text": b"hello world",
        "truncated DICOM": TRUNCATED.read_bytes(),
        "no SOPInstanceUID": without(CT, "SOPInstanceUID", tmp_path),
        "no StudyInstanceUID": without(CT, "StudyInstanceUID", tmp_path),
        "empty ZIP": make_zip([]),
        "truncated ZIP": make_zip([("a.dcm", CT.read_bytes()), ("b.dcm", MR.read_bytes())])[:30000],
    }
    for what, body in bodies.items():
        ours, theirs = post(api, body), post(orthanc, body)
        assert ours.status_code == theirs.status_code, what
        assert ours.json() == theirs.json(), what
        assert ours.status_code in (400, 404)
    assert api.json("/statistics")["CountInstances"] == 0
    assert orthanc.json("/statistics")["CountInstances"] == 0


def test_zip_with_a_damaged_member_keeps_what_came_before(hub: Hub, api: Http, orthanc: Http):
    body = bytearray(make_zip([("a.dcm", CT.read_bytes()), ("b.dcm", MR.read_bytes()),
                               ("c.dcm", RTPLAN.read_bytes())], zipfile.ZIP_STORED))
    body[body.find(b"b.dcm") + 5 + 5000] ^= 0xFF  # inside b.dcm's data: its CRC-32 no longer matches
    ours, theirs = post(api, bytes(body)), post(orthanc, bytes(body))
    assert ours.status_code == theirs.status_code == 400
    assert ours.json() == theirs.json()
    ct = "f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af"
    assert hub_instances(hub) == [ct] == orthanc.json("/instances")


def test_upload_needs_the_uploader_role(hub: Hub, api: Http):
    hub.auth.set_password("reader", "reader-pw-123", ("user",))
    hub.auth.set_password("modality", "upload-pw-123", ("uploader",))
    reader = Http(api.base, ("reader", "reader-pw-123"))
    uploader = Http(api.base, ("modality", "upload-pw-123"))
    refused = post(reader, CT.read_bytes())
    assert refused.status_code == 403 and refused.json()["HttpStatus"] == 403
    assert post(uploader, CT.read_bytes()).json()["Status"] == "Success"
    instance = hub.index.instance_by_sop_uid(str(pydicom.dcmread(CT).SOPInstanceUID))
    assert instance is not None
    assert instance["origin_protocol"] == "rest" and instance["origin_user"] == "modality"


def test_large_upload_is_spooled_not_kept(hub: Hub, api: Http, tmp_path: Path):
    """A 30 MB ZIP goes through a temporary file that is gone afterwards."""
    from tests.synthetic import write_series

    files = write_series(tmp_path / "ct", 60)
    body = make_zip([(p.name, p.read_bytes()) for p in files], zipfile.ZIP_STORED)
    answers = post(api, body).json()
    assert len(answers) == 60 and {a["Status"] for a in answers} == {"Success"}
    assert [p.name for p in hub.blobs.session_dir.iterdir() if p.name.startswith(".upload")] == []
