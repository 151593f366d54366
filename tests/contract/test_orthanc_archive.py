"""ZIP archives and DICOMDIR media against a real Orthanc 1.10: member names and bytes, DICOMDIR
records, errors; the hub's ZIP is streamed (and valid with ZIP64 records where needed)."""

from __future__ import annotations

import io
import random
import struct
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.fileset import FileSet

from hub.app import Hub
from hub.domain.origin import Origin
from hub.services.archive import BUFFER_MAX, ZipStream
from mappings.index_to_archive_names import to_ascii
from tests.conftest import TEST_FILES, dcmtk
from tests.contract.conftest import Http, OrthancRef
from tests.synthetic import ct_slice, uid, write_series

OFFSETS = {"OffsetOfTheNextDirectoryRecord", "OffsetOfReferencedLowerLevelDirectoryEntity"}


def members(resp: Any) -> list[tuple[str, bytes]]:
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        assert zf.testzip() is None
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


@pytest.fixture
def tree(tmp_path: Path) -> list[Path]:
    """Pydicom's CT, MR and RT plan, and 2 patients x 2 studies x 2 series x 3 small CT slices whose
    arrival order is not the order of their ids."""
    files = [TEST_FILES / n for n in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")]
    synthetic = []
    for p in range(2):
        for s in range(2):
            for se in range(2):
                for i in range(3):
                    ds = ct_slice(i, patient_id=f"P{p}", patient_name=f"DOE^{'ÄB'[p]}", rows=8, cols=8,
                                  study_uid=uid("st", p, s), series_uid=uid("se", p, s, se), seed=f"t{p}{s}{se}")
                    ds.SeriesDescription = f"AX {se}"
                    ds.SeriesNumber = str(se + 1)
                    ds.InstanceNumber = str(3 - i)
                    if s == 1:
                        ds.AccessionNumber = ""
                        ds.StudyDescription = "CT-CHEST^LOW DOSE"
                    path = tmp_path / f"t{p}{s}{se}{i}.dcm"
                    ds.save_as(path, enforce_file_format=True)
                    synthetic.append(path)
    random.Random(7).shuffle(synthetic)
    return files + synthetic


@pytest.fixture
def both(api: Http, orthanc: Http, tree: list[Path]) -> dict[str, list[str]]:
    """The tree uploaded to the hub and to Orthanc in the same order; Orthanc's ids per level."""
    for path in tree:
        assert api.upload(path) == orthanc.upload(path)
    return {level: orthanc.json(f"/{level}") for level in ("patients", "studies", "series", "instances")}


def test_archives_have_orthancs_names_and_bytes(api: Http, orthanc: Http, both: dict[str, list[str]]):
    for level in ("patients", "studies", "series"):
        for rid in both[level]:
            ours, theirs = api.get(f"/{level}/{rid}/archive"), orthanc.get(f"/{level}/{rid}/archive")
            assert members(ours) == members(theirs), f"/{level}/{rid}/archive"
            assert ours.headers["Content-Disposition"] == theirs.headers["Content-Disposition"] == \
                f'filename="{rid}.zip"'
    names = [n for n, _ in members(api.get(f"/patients/{both['patients'][0]}/archive"))]
    assert all(n.count("/") == 3 and n.endswith(".dcm") for n in names)


def test_create_archive_mixes_levels_as_orthanc(api: Http, orthanc: Http, both: dict[str, list[str]]):
    patient, study, series, instance = (both[k] for k in ("patients", "studies", "series", "instances"))
    bodies = [
        {"Resources": [patient[0], instance[5], instance[5], series[2], study[1], instance[0]]},
        [instance[7], instance[3], series[4], instance[7]],
        {"Resources": [series[1]], "Synchronous": True, "Priority": 3},
        {"Resources": [patient[2], patient[0], study[3]], "Asynchronous": False},
        [],
    ]
    for body in bodies:
        ours, theirs = api.post("/tools/create-archive", json=body), orthanc.post("/tools/create-archive", json=body)
        assert members(ours) == members(theirs), body
        assert ours.headers["Content-Disposition"] == theirs.headers["Content-Disposition"] == 'filename="Archive.zip"'
    # Orthanc looks the id up at any level, whatever the route says; POST takes the job options
    for path, body in ((f"/patients/{series[0]}/archive", None), (f"/series/{study[0]}/archive", {}),
                       (f"/studies/{series[3]}/archive", {"Synchronous": True}), (f"/series/{series[3]}/archive", [])):
        method = "get" if body is None else "post"
        ours = getattr(api, method)(path, json=body)
        theirs = getattr(orthanc, method)(path, json=body)
        assert members(ours) == members(theirs), path


def test_deflated_archive_holds_the_same_files(hub: Hub, api: Http, both: dict[str, list[str]]):
    url = f"/studies/{both['studies'][0]}/archive"
    stored = api.get(url)
    hub.archive.deflate = True
    deflated = api.get(url)
    assert members(stored) == members(deflated)
    with zipfile.ZipFile(io.BytesIO(deflated.content)) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
    with zipfile.ZipFile(io.BytesIO(stored.content)) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}


def dicomdir_records(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    ds = pydicom.dcmread(io.BytesIO(data))
    out = []
    for record in ds.DirectoryRecordSequence:
        values = {e.keyword: (list(e.value) if e.VM > 1 else str(e.value if e.value is not None else ""))
                  for e in record if e.keyword not in OFFSETS}
        out.append((record.DirectoryRecordType, values))
    return out


def as_orthanc_ascii(records: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(t, {k: to_ascii(v) if isinstance(v, str) else v for k, v in values.items()}) for t, values in records]


def check_media(content: list[tuple[str, bytes]], tmp_path: Path) -> FileSet:
    """The media opens with DCMTK and pydicom, and its DICOMDIR references its files."""
    names = [n for n, _ in content]
    assert names[-1] == "DICOMDIR" and all(n.startswith("IMAGES/IM") for n in names[:-1])
    root = tmp_path / "media"
    for name, data in content:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    dump = subprocess.run([dcmtk("dcmdump"), str(root / "DICOMDIR")], capture_output=True, check=False,
                          text=True, encoding="latin-1")
    assert dump.returncode == 0, dump.stderr
    assert "MediaStorageDirectoryStorage" in dump.stdout
    fs = FileSet(root / "DICOMDIR")
    referenced = {"/".join(Path(i.path).relative_to(root).parts) for i in fs}
    files = dict(content)
    assert referenced <= set(names)
    for name in set(names[:-1]) - referenced:  # an instance asked for twice: listed once, as in Orthanc
        assert any(files[name] == files[r] for r in referenced)
    for instance in fs:
        assert instance.load().SOPInstanceUID == instance.SOPInstanceUID
    return fs


def test_media_dicomdir_as_orthanc(api: Http, orthanc: Http, both: dict[str, list[str]], tmp_path: Path):
    patient, study, series, instance = (both[k] for k in ("patients", "studies", "series", "instances"))
    requests_ = [
        ("get", f"/studies/{study[0]}/media", None),
        ("get", f"/patients/{patient[1]}/media?extended", None),
        ("post", f"/series/{series[2]}/media", {"Extended": True}),
        ("post", "/tools/create-media", {"Resources": [patient[0], instance[4], series[5], instance[4]]}),
        ("post", "/tools/create-media-extended", patient + [instance[1]]),
        ("post", "/tools/create-media-extended", {"Resources": [study[2]], "Extended": False}),
    ]
    for n, (method, path, body) in enumerate(requests_):
        ours = members(getattr(api, method)(path, json=body))
        theirs = members(getattr(orthanc, method)(path, json=body))
        assert [n for n, _ in ours] == [n for n, _ in theirs], path
        assert ours[:-1] == theirs[:-1], path  # the files, as stored
        # same records; Orthanc drops the non-ASCII characters of the values, the hub keeps them
        assert as_orthanc_ascii(dicomdir_records(ours[-1][1])) == dicomdir_records(theirs[-1][1]), path
        check_media(ours, tmp_path / str(n))
    records = dicomdir_records(members(api.post("/tools/create-media-extended", json=patient))[-1][1])
    assert [v.get("SeriesDescription") for t, v in records if t == "SERIES"].count("AX 0") == 4
    assert {v["PatientName"] for t, v in records if t == "PATIENT" and v["PatientID"] == "P0"} == {"DOE^Ä"}


def test_unknown_ids_and_bad_bodies_as_orthanc(api: Http, orthanc: Http, both: dict[str, list[str]]):
    series = both["series"][0]
    for path in ("/series/nope/archive", "/patients/nope/media", "/studies/nope/archive", "/instances/x/archive"):
        assert api.get(path).status_code == orthanc.get(path).status_code == 404, path
    same_body = [
        ("/tools/create-archive", b""),
        ("/tools/create-archive", b"xx"),
        ("/tools/create-archive", b"{}"),
        ("/tools/create-archive", b'"x"'),
        ("/tools/create-archive", b'{"Resources": "abc"}'),
        ("/tools/create-archive", b'{"Resources": [1]}'),
        ("/tools/create-media", b'{"Resources": ["nope"]}'),
        ("/tools/create-archive", b'{"Resources": ["%s", "nope"]}' % series.encode()),
        ("/tools/create-archive", b'{"Resources": ["%s"], "Synchronous": "yes"}' % series.encode()),
        ("/tools/create-media", b'{"Resources": [], "Priority": "x"}'),
        ("/tools/create-media", b'{"Resources": [], "Extended": 1}'),
        (f"/series/{series}/archive", b""),
        (f"/series/{series}/media", b'{"Asynchronous": 0}'),
        ("/series/nope/archive", b"{}"),
    ]
    for path, body in same_body:
        ours, theirs = api.post(path, data=body), orthanc.post(path, data=body)
        assert ours.status_code == theirs.status_code, (path, body)
        assert ours.json() == theirs.json(), (path, body)
    # Not served here (Orthanc: a transcoded archive): a 400 that says so
    resp = api.post("/tools/create-archive", json={"Resources": [series], "Transcode": "1.2.840.10008.1.2"})
    assert resp.status_code == 400 and resp.json()["HttpStatus"] == 400


def test_asynchronous_archive_is_a_job_with_the_zip_as_output(api: Http, orthanc: OrthancRef,
                                                              both: dict[str, list[str]]) -> None:
    import time

    series = both["series"][0]
    members = {}
    for server in (api, orthanc):
        job = server.post("/tools/create-archive", json={"Resources": [series], "Asynchronous": True}).json()
        assert set(job) == {"ID", "Path"} and job["Path"] == f"/jobs/{job['ID']}"
        deadline = time.monotonic() + 30
        while (info := server.json(job["Path"]))["State"] not in ("Success", "Failure"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert info["State"] == "Success" and info["Type"] == "Archive" and info["Progress"] == 100
        out = server.get(f"{job['Path']}/archive")
        assert out.status_code == 200 and out.headers["Content-Type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(out.content)) as z:
            names = sorted(z.namelist())
        assert info["Content"]["InstancesCount"] == len([n for n in names if n.endswith(".dcm")])
        members["hub" if server is api else "orthanc"] = names
    assert members["hub"] == members["orthanc"]


def test_archive_and_media_need_the_user_role(hub: Hub, api: Http, both: dict[str, list[str]]):
    hub.auth.set_password("reader", "reader-pw-123", ("user",))
    hub.auth.set_password("modality", "upload-pw-123", ("uploader",))
    reader, uploader = Http(api.base, ("reader", "reader-pw-123")), Http(api.base, ("modality", "upload-pw-123"))
    series = both["series"][0]
    assert reader.get(f"/series/{series}/archive").status_code == 200
    assert reader.post("/tools/create-media", json=[series]).status_code == 200
    assert uploader.get(f"/series/{series}/archive").status_code == 403
    assert uploader.post("/tools/create-archive", json=[series]).status_code == 403


def test_archive_is_streamed(hub: Hub, api: Http, tmp_path: Path):
    """The first bytes arrive before the last file is even opened: that file, removed from the blob
    store after the first chunk was read, is missing from the ZIP (as in Orthanc, an instance gone
    while its archive is written is left out). The server can be ahead of the client by the HTTP
    server's output buffer (16 MB) and the socket buffers: the series is 150 x 0.5 MB."""
    series = {hub.ingest.store(Origin("import"), p).instance.series_id for p in write_series(tmp_path / "ct", 150)}
    plan = hub.archive.plan(list(series))
    assert len(plan.entries) == 150
    last = plan.entries[-1]
    blob = hub.blobs.path(last.row.blob_key)
    with api.get(f"/series/{series.pop()}/archive", stream=True) as resp:
        assert resp.status_code == 200
        assert "Content-Length" not in resp.headers and resp.headers.get("Transfer-Encoding") == "chunked"
        chunks = resp.iter_content(1 << 16)
        first = next(chunks)
        assert first[:4] == b"PK\x03\x04"
        blob.rename(blob.with_name("moved-away"))
        try:
            body = first + b"".join(chunks)
        finally:
            blob.with_name("moved-away").rename(blob)
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        names = zf.namelist()
        assert zf.testzip() is None
    assert len(names) == 149 and last.name not in names
    assert names == [e.name for e in plan.entries[:-1]]


# --------------------------------------------------------------------------- the ZIP writer itself


def zip_bytes(zs: ZipStream, files: list[tuple[str, bytes]], streamed: bool = False) -> bytes:
    out = []
    for name, data in files:
        if streamed:
            out += zs._add_streamed(name, io.BytesIO(data), len(data))  # noqa: SLF001
        else:
            out += zs.add(name, io.BytesIO(data), len(data))
    out += zs.close()
    return b"".join(out)


@pytest.mark.parametrize("deflate", [False, True])
def test_large_files_are_streamed_with_a_data_descriptor(deflate: bool):
    big = bytes(range(256)) * ((BUFFER_MAX + 1000) // 256)
    data = zip_bytes(ZipStream(deflate=deflate), [("small.dcm", b"x" * 10), ("big.dcm", big), ("empty", b"")])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        assert [i.flag_bits & 0x08 for i in infos] == [0, 0x08, 0]
        assert zf.read("big.dcm") == big and zf.read("small.dcm") == b"x" * 10 and zf.read("empty") == b""
        assert zf.comment == b"Created by rishub"


def test_zip64_end_records_for_many_files():
    files = [(f"f{i}", b"") for i in range(70000)]
    data = zip_bytes(ZipStream(), files)
    assert struct.pack("<I", 0x06064B50) in data[-200:]  # ZIP64 end of central directory record
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert len(zf.infolist()) == 70000 and zf.namelist()[-1] == "f69999"


def test_zip64_fields_for_offsets_past_4_gib():
    """An archive whose files start past 4 GiB: the central directory carries ZIP64 offsets."""
    zs = ZipStream()
    list(zs.add("a", io.BytesIO(b"abc"), 3))
    zs.offset = 5 << 30  # as if 5 GiB had been written
    list(zs.add("b", io.BytesIO(b"def"), 3))
    tail = b"".join(zs.close())
    second = tail[tail.index(b"PK\x01\x02", 4):]
    offset_field = struct.unpack_from("<I", second, 42)[0]
    assert offset_field == 0xFFFFFFFF
    assert struct.unpack_from("<HHQ", second, 46 + 1) == (1, 8, 5 << 30)  # extra after the 1-byte name
    assert tail.count(struct.pack("<I", 0x06064B50)) == 1 and tail.count(struct.pack("<I", 0x07064B50)) == 1
