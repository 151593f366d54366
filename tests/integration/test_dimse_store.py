"""DIMSE end to end over real sockets: C-ECHO and C-STORE from DCMTK (echoscu, storescu) and from a
second stack (pynetdicom as SCU), checked against the index and the blob bytes on disk.

The hub promises to store what it receives unchanged (it writes its own File Meta group, but the
data set bytes are the received ones). Two oracles are used for "what it received":

* pynetdicom with ``STORE_SEND_CHUNKED_DATASET`` sends a file's data set bytes exactly as they are
  in the file, so the blob's data set must equal the source file's data set byte for byte;
* DCMTK's storescu re-encodes every data set through dcmdata before sending it (explicit lengths
  for sequences and items, group lengths recalculated, the data set trailing padding dropped, the
  deflate stream re-compressed), so its blobs are compared with ``dcmconv -F`` of the source (the
  same encoder) and, where that equals the source, with the source itself.
"""

from __future__ import annotations

import json
import struct
import subprocess
import warnings
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.errors import InvalidDicomError
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification
from sqlalchemy import select

from hub.app import Hub
from hub.store.index import SE, ST, P
from interfaces.dimse.server import DimseServer
from interfaces.serve import Listeners
from tests.conftest import TEST_FILES, dcmtk, dcmtk_env, make_settings
from tests.synthetic import ct_slice, uid, write_series

HOST = "127.0.0.1"
AET = "RISHUB"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"

# storescu flag that proposes each transfer syntax (plus the uncompressed ones) so that a file in
# that syntax is sent without conversion.
STORESCU_FLAG = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.2": "-xb",
    DEFLATED: "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}
REQUIRED_SYNTAXES = set(STORESCU_FLAG)

# pydicom's test files that pydicom reads without complaint but that are cut short: the hub must
# refuse them (0xC000, see test_raw_store_every_test_file_byte_exact).
TRUNCATED = {"MR_truncated.dcm", "rtplan_truncated.dcm", "SC_rgb_jpeg.dcm"}
# Files DCMTK's dcmdata cannot take the SOP UIDs from (odd-length OW pixel data): storescu refuses
# to send them. pynetdicom sends them raw.
DCMTK_UNREADABLE = {"rtdose_rle.dcm", "rtdose_rle_1frame.dcm"}

LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}


# --------------------------------------------------------------------------- helpers


def dataset_bytes(path: Path) -> bytes:
    """The bytes of a Part 10 file after its File Meta group (explicit VR little endian, PS3.10 7.1)."""
    data = Path(path).read_bytes()
    assert data[128:132] == b"DICM", path
    pos = 132
    while pos + 8 <= len(data):
        group = struct.unpack_from("<H", data, pos)[0]
        if group != 0x0002:
            break
        if data[pos + 4 : pos + 6] in LONG_VRS:
            pos += 12 + struct.unpack_from("<I", data, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", data, pos + 6)[0]
    return data[pos:]


def inflate(data: bytes) -> bytes:
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    out = d.decompress(data) + d.flush()
    assert d.eof, "not a complete deflate stream"
    return out


def strip_trailing_padding(data: bytes) -> bytes:
    """Drop a Data Set Trailing Padding element (FFFC,FFFC) that ends the data set."""
    for tag, order in ((b"\xfc\xff\xfc\xff", "<"), (b"\xff\xfc\xff\xfc", ">")):
        pos = data.rfind(tag)
        if pos < 0 or pos + 12 > len(data):
            continue
        explicit_end = pos + 12 + struct.unpack_from(order + "I", data, pos + 8)[0]
        implicit_end = pos + 8 + struct.unpack_from(order + "I", data, pos + 4)[0]
        if (data[pos + 4 : pos + 6] == b"OB" and explicit_end == len(data)) or implicit_end == len(data):
            return data[:pos]
    return data


def dcmtk_encoding(path: Path, work: Path) -> bytes:
    """The data set of ``path`` as DCMTK's storescu puts it on the wire (see the module docstring)."""
    out = work / "dcmconv.out"
    r = subprocess.run([dcmtk("dcmconv"), "-F", str(path), str(out)], env=dcmtk_env(), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return strip_trailing_padding(out.read_bytes())


def save_meta_as_set(ds: pydicom.Dataset, path: Path) -> None:
    """Write a Part 10 file keeping the File Meta UIDs as set (``enforce_file_format=True`` would
    overwrite the Media Storage SOP UIDs with the data set's)."""
    ds.preamble = b"\0" * 128
    ds.file_meta.FileMetaInformationVersion = b"\0\1"
    ds.file_meta.FileMetaInformationGroupLength = 0  # pydicom writes the right value
    ds.save_as(path, enforce_file_format=False)


def blob_files(hub: Hub) -> list[Path]:
    return sorted(p for p in hub.blobs.blob_dir.rglob("*") if p.is_file())


def staged_leftovers(hub: Hub) -> list[Path]:
    """Files left under data/tmp session directories (only the session locks may be there)."""
    return sorted(p for p in hub.blobs.tmp_root.rglob("*") if p.is_file() and p.name != ".lock")


def stored_bytes(hub: Hub, sop_uid: str) -> bytes:
    row = hub.index.instance_by_sop_uid(sop_uid)
    assert row is not None, f"{sop_uid} not indexed"
    return dataset_bytes(hub.blobs.path(row["blob_key"]))


@contextmanager
def running_hub(data_dir: Path, db_url: str, **env: str) -> Iterator[tuple[Hub, Listeners]]:
    """A hub with its own settings and listeners on free ports (as the ``listeners`` fixture)."""
    hub = Hub.open(make_settings(data_dir, db_url, **env), upgrade_schema=True)
    try:
        ls = Listeners(hub)
        ls.start()
        try:
            yield hub, ls
        finally:
            ls.stop()
    finally:
        hub.close()


@contextmanager
def association(port: int, contexts: Iterable[tuple[str, str]], *, ae_title: str = "PYSCU") -> Iterator[Association]:
    """A pynetdicom SCU association to the hub proposing one context per (SOP class, syntax)."""
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    unique = list(dict.fromkeys(contexts))
    assert len(unique) <= 128, "at most 128 presentation contexts per association"
    for sop_class, syntax in unique:
        ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate(HOST, port, ae_title=AET)
    assert assoc.is_established, "association not accepted"
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def store_status(assoc: Association, source: Path | pydicom.Dataset) -> tuple[int, str]:
    status = assoc.send_c_store(source)
    assert "Status" in status, "no C-STORE response (association lost?)"
    return int(status.Status), str(status.get("ErrorComment", ""))


def echoscu(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dcmtk("echoscu"), "-v", *args, HOST, str(port)],
        env=dcmtk_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def storescu_cmd(port: int, files: Iterable[Path], *args: str) -> list[str]:
    # -R: propose only the SOP classes of the files (else storescu's long default list exceeds
    # 128 presentation contexts and drops classes such as Segmentation Storage).
    return [dcmtk("storescu"), "-R", "-aec", AET, *args, HOST, str(port), *map(str, files)]


def storescu(port: int, files: Iterable[Path], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        storescu_cmd(port, files, *args), env=dcmtk_env(), capture_output=True, text=True, timeout=120
    )


@dataclass(frozen=True)
class Sample:
    path: Path
    name: str
    syntax: str
    sop_class: str
    sop_uid: str
    meta_matches: bool  # File Meta SOP class/instance UIDs equal the data set's


def sendable_test_files(work: Path) -> tuple[list[Sample], dict[str, str]]:
    """pydicom's bundled files the hub must accept, and the skipped ones with the reason.

    Files lacking only Study/Series Instance UIDs (pydicom's JPEG-LS near-lossless samples) are
    copied with UIDs added, the rest of the data set (encapsulated pixel data included) unchanged.
    """
    samples: list[Sample] = []
    skipped: dict[str, str] = {}
    work.mkdir(parents=True, exist_ok=True)
    for path in sorted(TEST_FILES.glob("*.dcm")):
        name = path.name
        if name in TRUNCATED:
            skipped[name] = "truncated"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            skipped[name] = "no DICM prefix"
            continue
        syntax = str(ds.file_meta.get("TransferSyntaxUID", "") or "")
        if not syntax:
            skipped[name] = "no TransferSyntaxUID in the File Meta"
            continue
        if not ds.get("SOPClassUID") or not ds.get("SOPInstanceUID"):
            skipped[name] = "no SOP Class/Instance UID"
            continue
        if not ds.get("StudyInstanceUID") or not ds.get("SeriesInstanceUID"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                full = pydicom.dcmread(path)
            full.StudyInstanceUID = full.get("StudyInstanceUID") or uid(name, "study")
            full.SeriesInstanceUID = full.get("SeriesInstanceUID") or uid(name, "series")
            path = work / name
            full.save_as(path, enforce_file_format=False)
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            assert str(ds.file_meta.TransferSyntaxUID) == syntax
        meta = ds.file_meta
        samples.append(
            Sample(
                path,
                name,
                syntax,
                str(ds.SOPClassUID),
                str(ds.SOPInstanceUID),
                str(meta.get("MediaStorageSOPClassUID", "")) == str(ds.SOPClassUID)
                and str(meta.get("MediaStorageSOPInstanceUID", "")) == str(ds.SOPInstanceUID),
            )
        )
    return samples, skipped


def unique_uid_batches(samples: list[Sample]) -> list[list[Sample]]:
    """Split ``samples`` so that no batch holds the same SOP Instance UID twice."""
    batches: list[list[Sample]] = []
    for s in samples:
        for batch in batches:
            if all(o.sop_uid != s.sop_uid for o in batch):
                batch.append(s)
                break
        else:
            batches.append([s])
    return batches


# --------------------------------------------------------------------------- 1. C-ECHO


@pytest.mark.dcmtk
def test_echo_and_called_aet_check(listeners: Listeners) -> None:
    port = listeners.dimse.port
    ok = echoscu(port, "-aec", AET)
    assert ok.returncode == 0, ok.stderr
    assert "Received Echo Response (Success)" in ok.stdout + ok.stderr

    wrong = echoscu(port, "-aec", "WRONG")
    assert wrong.returncode != 0
    assert "Association Rejected" in wrong.stdout + wrong.stderr

    again = echoscu(port, "-aec", AET)
    assert again.returncode == 0, again.stderr
    assert "Received Echo Response (Success)" in again.stdout + again.stderr


def test_pynetdicom_echo(listeners: Listeners) -> None:
    with association(listeners.dimse.port, [(Verification, EXPLICIT_LE)]) as assoc:
        status = assoc.send_c_echo()
        assert int(status.Status) == 0x0000


def test_dimse_server_stops_and_frees_its_port(hub: Hub) -> None:
    """stop() must not raise, must close the listening socket, and a new server must start."""
    server = DimseServer(hub, host=HOST, port=0)
    port = server.start()
    with association(port, [(Verification, EXPLICIT_LE)]) as assoc:
        assert int(assoc.send_c_echo().Status) == 0x0000
    server.stop()
    ae = AE(ae_title="PYSCU")
    ae.acse_timeout = ae.network_timeout = 5
    ae.add_requested_context(Verification)
    assoc = ae.associate(HOST, port, ae_title=AET)
    assert not assoc.is_established, "the stopped server still accepts associations"
    ae.shutdown()
    again = DimseServer(hub, host=HOST, port=0)
    again.start()
    try:
        with association(again.port, [(Verification, EXPLICIT_LE)]) as assoc:
            assert int(assoc.send_c_echo().Status) == 0x0000
    finally:
        again.stop()


# --------------------------------------------------------------------------- 2. every transfer syntax


@pytest.mark.dcmtk
def test_storescu_every_transfer_syntax(tmp_path: Path, db_url: str) -> None:
    """Every acceptable bundled file, sent by storescu in its own transfer syntax, is indexed in
    that syntax and its blob holds the data set storescu sent."""
    samples, skipped = sendable_test_files(tmp_path / "derived")
    samples = [s for s in samples if s.name not in DCMTK_UNREADABLE]
    assert len(samples) >= 40, (len(samples), skipped)
    by_syntax: dict[str, list[Sample]] = {}
    for s in samples:
        by_syntax.setdefault(s.syntax, []).append(s)
    assert REQUIRED_SYNTAXES <= set(by_syntax), REQUIRED_SYNTAXES - set(by_syntax)
    assert set(by_syntax) <= set(STORESCU_FLAG), set(by_syntax) - set(STORESCU_FLAG)

    failures: list[str] = []
    identical: dict[str, int] = dict.fromkeys(by_syntax, 0)
    # Several files share a SOP Instance UID (MR_small in six syntaxes...): overwrite, and check
    # each batch right after it is stored.
    with running_hub(tmp_path / "data", db_url, RISHUB_STORAGE_DUPLICATE_POLICY="overwrite") as (hub, ls):
        for syntax, group in sorted(by_syntax.items()):
            for batch in unique_uid_batches(group):
                r = storescu(ls.dimse.port, [s.path for s in batch], STORESCU_FLAG[syntax])
                assert r.returncode == 0, f"{syntax} {[s.name for s in batch]}: {r.stderr}"
                for s in batch:
                    row = hub.index.instance_by_sop_uid(s.sop_uid)
                    if row is None:
                        failures.append(f"{s.name}: not indexed")
                        continue
                    if row["transfer_syntax_uid"] != syntax:
                        failures.append(f"{s.name}: indexed as {row['transfer_syntax_uid']}, sent as {syntax}")
                    if row["sop_class_uid"] != s.sop_class:
                        failures.append(f"{s.name}: SOP class {row['sop_class_uid']}")
                    got = dataset_bytes(hub.blobs.path(row["blob_key"]))
                    source = dataset_bytes(s.path)
                    sent = dcmtk_encoding(s.path, tmp_path)
                    if syntax == DEFLATED:
                        # storescu re-deflates (and pads the stream to an even length); the blob
                        # must still be deflated and inflate to what storescu encoded.
                        if inflate(got) != inflate(sent):
                            failures.append(f"{s.name}: inflated data set differs from what storescu sent")
                        if inflate(got) == inflate(source):
                            identical[syntax] += 1
                        continue
                    if got == source:
                        identical[syntax] += 1
                    elif got != sent:
                        failures.append(
                            f"{s.name}: blob data set ({len(got)} bytes) is neither the source's "
                            f"({len(source)}) nor what storescu sent ({len(sent)})"
                        )
        assert not failures, "\n".join(failures)
        stats = hub.index.statistics()
        assert stats["instances"] == len({s.sop_uid for s in samples})
        # overwrite released every replaced blob: one blob file per instance, nothing staged
        assert len(blob_files(hub)) == stats["instances"]
        assert staged_leftovers(hub) == []
    # storescu sends most files unchanged (the others hold undefined-length sequences or trailing
    # padding), and those blobs are byte-identical to the source.
    assert sum(identical.values()) >= len(samples) // 2, identical


def test_raw_store_every_test_file_byte_exact(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """pynetdicom sends each file's data set bytes as they are in the file: the blob must hold
    exactly those bytes, for every transfer syntax; a file whose File Meta names another SOP
    Instance than its data set is refused with 0xA900, a truncated one with 0xC000, and neither
    changes anything."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    samples, _ = sendable_test_files(tmp_path / "derived")
    truncated = [TEST_FILES / name for name in sorted(TRUNCATED)]
    contexts = []
    for path in [s.path for s in samples] + truncated:
        meta = pydicom.filereader.read_file_meta_info(path)
        contexts.append((str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)))
    assert REQUIRED_SYNTAXES <= {s.syntax for s in samples}
    failures: list[str] = []
    with running_hub(tmp_path / "data", db_url, RISHUB_STORAGE_DUPLICATE_POLICY="overwrite") as (hub, ls):
        with association(ls.dimse.port, contexts) as assoc:
            for s in samples:
                before = (hub.index.statistics(), blob_files(hub))
                status, comment = store_status(assoc, s.path)
                if not s.meta_matches:
                    if status != 0xA900:
                        failures.append(f"{s.name}: File Meta/data set UID mismatch got 0x{status:04X}")
                    if (hub.index.statistics(), blob_files(hub)) != before:
                        failures.append(f"{s.name}: a refused store changed the archive")
                    continue
                if status != 0x0000:
                    failures.append(f"{s.name}: status 0x{status:04X} {comment}")
                    continue
                row = hub.index.instance_by_sop_uid(s.sop_uid)
                if row is None or row["transfer_syntax_uid"] != s.syntax:
                    failures.append(f"{s.name}: index row {row and row['transfer_syntax_uid']}")
                    continue
                if dataset_bytes(hub.blobs.path(row["blob_key"])) != dataset_bytes(s.path):
                    failures.append(f"{s.name}: blob data set differs from the file's")
            for path in truncated:
                before = (hub.index.statistics(), blob_files(hub))
                status, comment = store_status(assoc, path)
                if status != 0xC000:
                    failures.append(f"{path.name}: truncated file got 0x{status:04X} {comment}")
                if (hub.index.statistics(), blob_files(hub)) != before:
                    failures.append(f"{path.name}: a refused store changed the archive")
        assert not failures, "\n".join(failures)
        assert any(not s.meta_matches for s in samples)
        assert staged_leftovers(hub) == []
        assert len(blob_files(hub)) == hub.index.statistics()["instances"]


# --------------------------------------------------------------------------- 3. concurrent associations


@pytest.mark.dcmtk
def test_four_concurrent_storescu_associations(tmp_path: Path, hub: Hub, listeners: Listeners) -> None:
    series = [write_series(tmp_path / f"s{i}", 10, rows=64, cols=64, seed=f"s{i}") for i in range(4)]
    procs = [
        subprocess.Popen(
            storescu_cmd(listeners.dimse.port, files, "-xe"),
            env=dcmtk_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for files in series
    ]
    outputs = []
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=120))
        except subprocess.TimeoutExpired:
            p.kill()
            outputs.append(p.communicate())
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err for _, err in outputs]

    stats = hub.index.statistics()
    assert {k: stats[k] for k in ("patients", "studies", "series", "instances")} == {
        "patients": 1,
        "studies": 4,
        "series": 4,
        "instances": 40,
    }
    for files in series:
        for f in files:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            row = hub.index.instance_by_sop_uid(str(ds.SOPInstanceUID))
            assert row is not None, f
            assert row["transfer_syntax_uid"] == EXPLICIT_LE
            assert dataset_bytes(hub.blobs.path(row["blob_key"])) == dataset_bytes(f), f
    # the counters written by concurrent transactions add up
    with hub.db.read() as conn:
        assert conn.execute(select(P.c.num_studies, P.c.num_series, P.c.num_instances)).one() == (4, 4, 40)
        assert sorted(conn.execute(select(ST.c.num_series, ST.c.num_instances)).all()) == [(1, 10)] * 4
        assert sorted(conn.execute(select(SE.c.num_instances)).scalars()) == [10] * 4
    assert len(blob_files(hub)) == 40
    assert staged_leftovers(hub) == []


@pytest.mark.dcmtk
@pytest.mark.parametrize("policy", ["keep", "overwrite"])
def test_concurrent_duplicates_of_the_same_series(tmp_path: Path, db_url: str, policy: str) -> None:
    """Six associations store the same ten instances at the same time: ten instances, counters
    right, and exactly one blob file per instance (a replaced or discarded copy leaves nothing)."""
    files = write_series(tmp_path / "same", 10, rows=64, cols=64, seed="same")
    with running_hub(tmp_path / "data", db_url, RISHUB_STORAGE_DUPLICATE_POLICY=policy) as (hub, ls):
        procs = [
            subprocess.Popen(
                storescu_cmd(ls.dimse.port, files, "-xe"),
                env=dcmtk_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 6, errors

        stats = hub.index.statistics()
        assert {k: stats[k] for k in ("patients", "studies", "series", "instances")} == {
            "patients": 1,
            "studies": 1,
            "series": 1,
            "instances": 10,
        }
        with hub.db.read() as conn:
            assert conn.execute(select(P.c.num_studies, P.c.num_series, P.c.num_instances)).one() == (1, 1, 10)
            assert conn.execute(select(SE.c.num_instances)).scalars().all() == [10]
        for f in files:
            assert stored_bytes(hub, str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)) == (
                dataset_bytes(f)
            )
        indexed = hub.index.all_blob_keys()
        on_disk = {p.name for p in blob_files(hub)}
        assert on_disk - indexed == set(), f"{len(on_disk - indexed)} blob files no index row refers to"
        assert indexed <= on_disk
        assert staged_leftovers(hub) == []
        assert hub.index.pending_trash() == []


# --------------------------------------------------------------------------- 4. bad input


def test_bad_stores_fail_and_the_association_survives(
    tmp_path: Path, hub: Hub, listeners: Listeners, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    good = write_series(tmp_path / "good", 1, rows=64, cols=64, seed="good")[0]

    # (a) a file cut inside its pixel data, sent raw
    whole = write_series(tmp_path / "cut", 1, rows=64, cols=64, seed="cut")[0]
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(whole.read_bytes()[:-1001])
    cut_uid = str(pydicom.dcmread(whole, stop_before_pixels=True).SOPInstanceUID)

    # (b) a data set without SeriesInstanceUID
    no_series = ct_slice(0, rows=64, cols=64, seed="noseries")
    del no_series.SeriesInstanceUID

    # (c) a file whose File Meta (hence the request's Affected SOP Instance UID) names another instance
    other_instance = ct_slice(0, rows=64, cols=64, seed="mismatch")
    other_instance.file_meta.MediaStorageSOPInstanceUID = uid("mismatch", "another instance")
    mismatch = tmp_path / "mismatch.dcm"
    save_meta_as_set(other_instance, mismatch)

    # (d) the same with the SOP Class (Affected SOP Class UID MR, data set CT)
    other_class = ct_slice(0, rows=64, cols=64, seed="classmismatch")
    other_class.file_meta.MediaStorageSOPClassUID = MRImageStorage
    class_mismatch = tmp_path / "class_mismatch.dcm"
    save_meta_as_set(other_class, class_mismatch)
    assert pydicom.filereader.read_file_meta_info(mismatch).MediaStorageSOPInstanceUID != other_instance.SOPInstanceUID
    assert pydicom.filereader.read_file_meta_info(class_mismatch).MediaStorageSOPClassUID == MRImageStorage

    contexts = [(CTImageStorage, EXPLICIT_LE), (MRImageStorage, EXPLICIT_LE)]
    with association(listeners.dimse.port, contexts) as assoc:
        status, comment = store_status(assoc, truncated)
        assert status == 0xC000, (hex(status), comment)
        assert "truncated" in comment

        status, comment = store_status(assoc, no_series)
        assert status == 0xA900, (hex(status), comment)
        assert "SeriesInstanceUID" in comment

        status, comment = store_status(assoc, mismatch)
        assert status == 0xA900, (hex(status), comment)
        assert "SOPInstanceUID" in comment

        status, comment = store_status(assoc, class_mismatch)
        assert status == 0xA900, (hex(status), comment)
        assert "SOPClassUID" in comment

        assert hub.index.statistics()["instances"] == 0
        for sop_uid in (
            cut_uid,
            str(no_series.SOPInstanceUID),
            str(other_instance.SOPInstanceUID),
            str(other_instance.file_meta.MediaStorageSOPInstanceUID),
            str(other_class.SOPInstanceUID),
        ):
            assert hub.index.instance_by_sop_uid(sop_uid) is None
        assert blob_files(hub) == []
        assert staged_leftovers(hub) == []

        # the association is still usable
        status, comment = store_status(assoc, good)
        assert status == 0x0000, (hex(status), comment)
        assert assoc.is_established
    good_uid = str(pydicom.dcmread(good, stop_before_pixels=True).SOPInstanceUID)
    assert stored_bytes(hub, good_uid) == dataset_bytes(good)
    assert hub.index.statistics()["instances"] == 1
    assert len(blob_files(hub)) == 1
    assert staged_leftovers(hub) == []


# --------------------------------------------------------------------------- 5. duplicate policy


@pytest.mark.parametrize(
    ("policy", "statuses", "kept"),
    [
        ("reject", [0x0000, 0x0111, 0x0111], "first"),
        ("keep", [0x0000, 0x0000, 0x0000], "first"),
        ("overwrite", [0x0000, 0x0000, 0x0000], "second"),
    ],
)
def test_duplicate_policy(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, policy: str, statuses: list[int], kept: str
) -> None:
    """The same file twice, then another version of the same SOP Instance."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    first = write_series(tmp_path / "v1", 1, rows=64, cols=64, seed="dup")[0]
    v2 = ct_slice(0, rows=64, cols=64, seed="dup")
    v2.SeriesDescription = "AXIAL 1.25 RESENT"
    v2.ImageComments = "second version"
    second = tmp_path / "v2.dcm"
    v2.save_as(second, enforce_file_format=True)
    sop_uid = str(v2.SOPInstanceUID)
    assert dataset_bytes(first) != dataset_bytes(second)

    with running_hub(tmp_path / "data", db_url, RISHUB_STORAGE_DUPLICATE_POLICY=policy) as (hub, ls):
        got = []
        with association(ls.dimse.port, [(CTImageStorage, EXPLICIT_LE)]) as assoc:
            for path in (first, first, second):
                got.append(store_status(assoc, path)[0])
            assert assoc.is_established
        assert got == statuses, [hex(s) for s in got]
        stats = hub.index.statistics()
        assert (stats["patients"], stats["studies"], stats["series"], stats["instances"]) == (1, 1, 1, 1)
        expected = first if kept == "first" else second
        assert stored_bytes(hub, sop_uid) == dataset_bytes(expected)
        row = hub.index.instance_by_sop_uid(sop_uid)
        assert blob_files(hub) == [hub.blobs.path(row["blob_key"])]
        assert staged_leftovers(hub) == []
        assert hub.index.pending_trash() == []
        with hub.db.read() as conn:
            assert conn.execute(select(P.c.num_studies, P.c.num_series, P.c.num_instances)).one() == (1, 1, 1)


# --------------------------------------------------------------------------- 6. calling AE allow-list


def _modalities(**mod1: object) -> str:
    return json.dumps({"MOD1": {"aet": "MOD1", "host": HOST, "port": 104, **mod1}})


@pytest.mark.dcmtk
def test_calling_aet_allow_list(tmp_path: Path, db_url: str) -> None:
    env = {"RISHUB_DICOM_CHECK_CALLING": "1", "RISHUB_MODALITIES": _modalities()}
    slice_path = write_series(tmp_path / "in", 1, rows=64, cols=64, seed="allowed")[0]
    with running_hub(tmp_path / "data", db_url, **env) as (hub, ls):
        port = ls.dimse.port
        ok = echoscu(port, "-aet", "MOD1", "-aec", AET)
        assert ok.returncode == 0, ok.stderr
        assert "Received Echo Response (Success)" in ok.stdout + ok.stderr

        other = echoscu(port, "-aet", "OTHER", "-aec", AET)
        assert other.returncode != 0
        assert "Association Rejected" in other.stdout + other.stderr

        # the declared AE title from a host that is not MOD1's: the connection is dropped
        ae = AE(ae_title="MOD1")
        ae.acse_timeout = ae.network_timeout = 5
        ae.add_requested_context(Verification)
        assoc = ae.associate(HOST, port, ae_title=AET, bind_address=("127.0.0.2", 0))
        assert not assoc.is_established, "MOD1 accepted from a host other than its declared one"
        ae.shutdown()

        r = storescu(port, [slice_path], "-aet", "OTHER")
        assert r.returncode != 0
        assert hub.index.statistics()["instances"] == 0

        r = storescu(port, [slice_path], "-aet", "MOD1")
        assert r.returncode == 0, r.stderr
        row = hub.index.instance_by_sop_uid(str(pydicom.dcmread(slice_path, stop_before_pixels=True).SOPInstanceUID))
        assert row is not None
        assert row["origin_remote_aet"] == "MOD1"
        assert row["origin_called_aet"] == AET
        assert row["origin_protocol"] == "dimse"


def test_store_refused_without_allow_store(tmp_path: Path, db_url: str) -> None:
    env = {"RISHUB_DICOM_CHECK_CALLING": "1", "RISHUB_MODALITIES": _modalities(allow_store=False)}
    ds = ct_slice(0, rows=64, cols=64, seed="refused")
    with running_hub(tmp_path / "data", db_url, **env) as (hub, ls):
        contexts = [(CTImageStorage, EXPLICIT_LE), (Verification, EXPLICIT_LE)]
        with association(ls.dimse.port, contexts, ae_title="MOD1") as assoc:
            assert int(assoc.send_c_echo().Status) == 0x0000
            status, comment = store_status(assoc, ds)
            assert status == 0x0124, (hex(status), comment)
            assert assoc.is_established
        assert hub.index.instance_by_sop_uid(str(ds.SOPInstanceUID)) is None
        assert hub.index.statistics()["instances"] == 0
        assert blob_files(hub) == []
        assert staged_leftovers(hub) == []


def test_helpers_meta_walker_and_padding_stripper() -> None:
    """Guards the test helpers themselves: the meta walker and the padding stripper."""
    path = TEST_FILES / "MR_small_padded.dcm"
    data = path.read_bytes()
    ds_part = dataset_bytes(path)
    assert data.endswith(ds_part) and ds_part[:2] == b"\x08\x00"
    stripped = strip_trailing_padding(ds_part)
    assert len(stripped) < len(ds_part) and not stripped.endswith(b"\xfc\xff\xfc\xff")
    assert strip_trailing_padding(stripped) == stripped
