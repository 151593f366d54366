"""C-MOVE and C-GET SCP (PS3.4 C.4.2, C.4.3) over real sockets: DCMTK movescu to a storescp declared
in ``[modalities]``, getscu, and pynetdicom as a second SCU for exact statuses and counts. Files go
as stored: storescp ``+B`` and pynetdicom receive the source data sets byte for byte, unless the peer
accepted no context in the stored syntax (then uncompressed data is re-encoded, elements equal).
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import (
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from hub.app import Hub
from hub.domain.origin import Origin
from interfaces.serve import Listeners
from tests.conftest import TEST_FILES, dcmtk, dcmtk_env, free_port, make_settings
from tests.synthetic import uid, write_series

HOST = "127.0.0.1"
TIMEOUTS = {"RISHUB_DICOM_ACSE_TIMEOUT": "10", "RISHUB_DICOM_DIMSE_TIMEOUT": "30", "RISHUB_DICOM_NETWORK_TIMEOUT": "30"}
STUDY_MOVE, PATIENT_MOVE = StudyRootQueryRetrieveInformationModelMove, PatientRootQueryRetrieveInformationModelMove
STUDY_GET, PATIENT_GET = StudyRootQueryRetrieveInformationModelGet, PatientRootQueryRetrieveInformationModelGet
SAMPLES = ["JPEG2000.dcm", "MR_small_RLE.dcm", "CT_small.dcm", "image_dfl.dcm"]  # J2K, RLE, explicit LE, deflated


# --------------------------------------------------------------------------- helpers


def dataset_bytes(path: Path) -> bytes:
    return Path(path).read_bytes()[split_dataset(path)[1]:]


def sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def uids(value: Any) -> list[str]:
    """A UI value as a list (pydicom gives a str for one value)."""
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


def received(out: Path) -> dict[str, Path]:
    """SOP Instance UID -> file written by storescp/getscu."""
    return {sop_uid(p): p for p in out.iterdir() if p.is_file()}


@contextmanager
def storescp(out: Path, *args: str, aet: str = "DEST") -> Iterator[int]:
    """DCMTK storescp on a free port writing the data sets it receives unchanged (``+B``) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with (out.parent / f"{out.name}.log").open("wb") as log:
        proc = subprocess.Popen([dcmtk("storescp"), "-aet", aet, "+B", *args, "-od", str(out), str(port)],
                                env=dcmtk_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(400):  # until it listens
                assert proc.poll() is None, "storescp exited"
                with socket.socket() as sock:
                    if sock.connect_ex((HOST, port)) == 0:
                        break
                time.sleep(0.05)
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@contextmanager
def running_hub(tmp_path: Path, db_url: str, nodes: dict[str, dict[str, Any]], **env: str) -> Iterator[Hub]:
    """A hub with ``nodes`` as ``[modalities]`` and its DIMSE listener (``hub.dimse_port``)."""
    modalities = {name: {"host": HOST, **node} for name, node in nodes.items()}
    settings = make_settings(tmp_path / "data", db_url, RISHUB_MODALITIES=json.dumps(modalities), **TIMEOUTS, **env)
    hub = Hub.open(settings, upgrade_schema=True)
    listeners = Listeners(hub)
    listeners.start()
    hub.dimse_port = listeners.dimse.port  # type: ignore[attr-defined]
    try:
        yield hub
    finally:
        listeners.stop()
        hub.close()


def store_all(hub: Hub, paths: list[Path]) -> None:
    for p in paths:
        hub.ingest.store(Origin("import"), p)


def archive(hub: Hub, tmp_path: Path) -> dict[str, list[Path]]:
    """Study A (patient SYN001): series A1 (3 slices) and A2 (2 slices); study B (SYN002): 2 slices."""
    a1 = write_series(tmp_path / "a1", 3, rows=64, cols=64, seed="a")
    a2 = write_series(tmp_path / "a2", 2, rows=64, cols=64, seed="a2", study_uid=uid("a", "study"))
    b = write_series(tmp_path / "b", 2, rows=64, cols=64, seed="b", patient_id="SYN002")
    store_all(hub, a1 + a2 + b)
    return {"a1": a1, "a2": a2, "b": b}


def movescu(port: int, dest: str, root: str, *keys: str) -> subprocess.CompletedProcess[str]:
    args = [dcmtk("movescu"), "-v", "-aet", "MOVER", "-aec", "RISHUB", "-aem", dest, root]
    for key in keys:
        args += ["-k", key]
    return subprocess.run([*args, HOST, str(port)], env=dcmtk_env(), capture_output=True, text=True, timeout=120)


def assert_same_bytes(out: Path, sources: list[Path]) -> None:
    got = received(out)
    assert sorted(got) == sorted(sop_uid(p) for p in sources)
    for src in sources:
        assert dataset_bytes(got[sop_uid(src)]) == even(dataset_bytes(src)), src.name


def even(data: bytes) -> bytes:
    """PS3.5 A.5: a deflated data set is NUL-padded to even length on the wire (the stored sample is not)."""
    return data + b"\x00" if len(data) % 2 else data


def identifier(level: str | None, **keys: Any) -> Dataset:
    ds = Dataset()
    ds.update({"QueryRetrieveLevel": level, **keys} if level is not None else keys)
    return ds


@contextmanager
def scu(port: int, *contexts: Any, aet: str = "SCU", **kwargs: Any) -> Iterator[Any]:
    ae = AE(ae_title=aet)
    ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = 10, 30, 30
    for cx in contexts:
        ae.add_requested_context(*cx) if isinstance(cx, tuple) else ae.add_requested_context(cx)
    assoc = ae.associate(HOST, port, ae_title="RISHUB", **kwargs)
    assert assoc.is_established
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def collect(assoc: Any, responses: Iterator[Any], model: str, cancel: bool) -> tuple[Dataset, Any, int]:
    """Final status data set, its identifier, and the number of pending responses; with ``cancel``
    a C-CANCEL goes out after the first pending response (message id 7)."""
    seen = []
    for status, ident in responses:
        seen.append((status, ident))
        if cancel and len(seen) == 1:
            assoc.send_c_cancel(7, next(cx.context_id for cx in assoc.accepted_contexts if cx.abstract_syntax == model))
    assert seen, "no response"
    return seen[-1][0], seen[-1][1], sum(1 for status, _ in seen[:-1] if status.Status == 0xFF00)


def c_move(  # noqa: ANN201
    port: int, ds: Dataset, dest: str, model: str = STUDY_MOVE, aet: str = "SCU", cancel: bool = False
):
    with scu(port, model, aet=aet) as assoc:
        return collect(assoc, assoc.send_c_move(ds, dest, model, msg_id=7), model, cancel)


def c_get(  # noqa: ANN201
    port: int, ds: Dataset, storage: list[Any], model: str = STUDY_GET, aet: str = "SCU",
    syntaxes: tuple[str, ...] = (ExplicitVRLittleEndian,), cancel: bool = False, delay: float = 0.0,
):
    """Final status, its identifier, and ``{SOP Instance UID: received data set bytes}``."""
    got: dict[str, bytes] = {}

    def on_store(event: Any) -> int:  # pynetdicom receives to a file: server.py turns that on
        got[str(event.request.AffectedSOPInstanceUID)] = dataset_bytes(event.dataset_path)
        time.sleep(delay)
        return 0x0000

    roles = [build_role(sop_class, scp_role=True) for sop_class in storage]
    contexts = [model, *[(sop_class, list(syntaxes)) for sop_class in storage]]
    with scu(port, *contexts, aet=aet, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)]) as assoc:
        final, ident, _ = collect(assoc, assoc.send_c_get(ds, model, msg_id=7), model, cancel)
    return final, ident, got


# --------------------------------------------------------------------------- C-MOVE with DCMTK


def test_movescu_levels_and_roots(tmp_path: Path, db_url: str) -> None:
    out = tmp_path / "out"
    with storescp(out) as dest_port, running_hub(tmp_path, db_url, {"DEST": {"aet": "DEST", "port": dest_port}}) as hub:
        series = archive(hub, tmp_path)
        a1, a2, b = series["a1"], series["a2"], series["b"]
        study_a, study_b, a2_uid = uid("a", "study"), uid("b", "study"), uid("a2", "series")
        cases = [
            ("-S", a1 + a2, ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study_a}"]),
            ("-S", a1 + a2 + b, ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study_a}\\{study_b}"]),
            ("-S", a2, ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={study_a}", f"SeriesInstanceUID={a2_uid}"]),
            ("-S", [a1[0], a1[2]], ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={study_a}",
                                    f"SeriesInstanceUID={uid('a', 'series')}",
                                    f"SOPInstanceUID={sop_uid(a1[0])}\\{sop_uid(a1[2])}"]),
            ("-P", b, ["QueryRetrieveLevel=PATIENT", "PatientID=SYN002"]),
            ("-P", a1 + a2, ["QueryRetrieveLevel=STUDY", "PatientID=SYN001", f"StudyInstanceUID={study_a}"]),
            ("-P", a1, ["QueryRetrieveLevel=SERIES", "PatientID=SYN001", f"StudyInstanceUID={study_a}",
                        f"SeriesInstanceUID={uid('a', 'series')}"]),
            ("-P", [b[1]], ["QueryRetrieveLevel=IMAGE", "PatientID=SYN002", f"SOPInstanceUID={sop_uid(b[1])}"]),
            ("-P", [], ["QueryRetrieveLevel=STUDY", "PatientID=SYN002", f"StudyInstanceUID={study_a}"]),  # no match
        ]
        for root, expected, keys in cases:
            result = movescu(hub.dimse_port, "DEST", root, *keys)  # type: ignore[attr-defined]
            assert result.returncode == 0, (keys, result.stdout + result.stderr)
            assert "Final Move Response (Success)" in result.stdout + result.stderr
            assert_same_bytes(out, expected)
            for p in out.iterdir():
                p.unlink()


def test_move_transfer_syntaxes_as_stored_or_reencoded(tmp_path: Path, db_url: str) -> None:
    """Each SOP class is proposed in its stored syntax (J2K, RLE, deflated go unchanged to a peer that
    accepts them); a peer taking Implicit VR only gets the uncompressed data re-encoded and the
    compressed instances fail: Warning 0xB000."""
    samples = [TEST_FILES / n for n in SAMPLES]
    wide, narrow = tmp_path / "wide", tmp_path / "narrow"
    with storescp(wide, "+xa", aet="WIDE") as wide_port, storescp(narrow, "+xi", aet="NARROW") as narrow_port:
        nodes = {"WIDE": {"aet": "WIDE", "port": wide_port}, "NARROW": {"aet": "NARROW", "port": narrow_port}}
        with running_hub(tmp_path, db_url, nodes) as hub:
            store_all(hub, samples)
            ds = identifier("IMAGE", SOPInstanceUID=[sop_uid(p) for p in samples])
            final, _, pending = c_move(hub.dimse_port, ds, "WIDE")  # type: ignore[attr-defined]
            # Pending responses carry the counts, at most every 0.25 s (they are optional, PS3.4 C.4.2.1.5)
            assert final.Status == 0x0000 and final.NumberOfCompletedSuboperations == 4 and 1 <= pending <= 4
            assert_same_bytes(wide, samples)

            final, ident, _ = c_move(hub.dimse_port, ds, "NARROW")  # type: ignore[attr-defined]
            uncompressed = [p for p in samples if p.name in ("CT_small.dcm", "image_dfl.dcm")]
            assert final.Status == 0xB000
            assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (2, 2)
            failed = sorted(sop_uid(p) for p in samples if p not in uncompressed)
            assert sorted(uids(ident.FailedSOPInstanceUIDList)) == failed
            got = received(narrow)
            assert sorted(got) == sorted(sop_uid(p) for p in uncompressed)
            for src in uncompressed:
                ours = pydicom.dcmread(got[sop_uid(src)])
                assert ours.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
                assert ours.PixelData == pydicom.dcmread(src).PixelData


def test_move_refusals_and_failures(tmp_path: Path, db_url: str) -> None:
    """Unknown destination 0xA801; unreachable destination 0xA702 with every sub-operation failed;
    bad identifiers 0xA900 without contacting the destination; no match: Success, no sub-operation."""
    down = free_port()  # nothing listens there
    with running_hub(tmp_path, db_url, {"DOWN": {"aet": "DOWN", "port": down}}) as hub:
        series = archive(hub, tmp_path)
        port = hub.dimse_port  # type: ignore[attr-defined]
        study = identifier("STUDY", StudyInstanceUID=uid("a", "study"))

        final, _, _ = c_move(port, study, "NOWHERE")
        assert final.Status == 0xA801
        result = movescu(port, "NOWHERE", "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={uid('a', 'study')}")
        assert result.returncode != 0 and "Final Move Response (Success)" not in result.stdout + result.stderr

        final, ident, pending = c_move(port, study, "DOWN")
        assert final.Status == 0xA702 and pending == 0
        assert final.NumberOfFailedSuboperations == 5 and final.NumberOfCompletedSuboperations == 0
        assert sorted(uids(ident.FailedSOPInstanceUIDList)) == sorted(sop_uid(p) for p in series["a1"] + series["a2"])

        # No QueryRetrieveLevel; no unique key; Study Root has no PATIENT level (more in tests/mappings).
        for ds in (identifier(None, StudyInstanceUID=uid("a", "study")), identifier("STUDY"), identifier("PATIENT")):
            final, _, _ = c_move(port, ds, "DOWN")
            assert final.Status == 0xA900, ds
            final, _, _ = c_get(port, ds, [CTImageStorage])
            assert final.Status == 0xA900, ds

        for model in (STUDY_MOVE, PATIENT_MOVE):
            final, _, pending = c_move(port, identifier("STUDY", StudyInstanceUID="1.2.3.4"), "DOWN", model)
            assert final.Status == 0x0000 and final.NumberOfCompletedSuboperations == 0 and pending == 0


def test_cancel_move_and_get(tmp_path: Path, db_url: str) -> None:
    """C-CANCEL after the first pending response: no further sub-operations, 0xFE00 with the counts
    (PS3.4 C.4.2.1.4.3, C.4.3.1.3.3)."""
    stored: list[str] = []

    def slow_store(event: Any) -> int:
        time.sleep(0.1)
        stored.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def assert_cancelled(final: Dataset, done: int) -> None:
        assert final.Status == 0xFE00 and final.NumberOfFailedSuboperations == 0
        assert 1 <= final.NumberOfCompletedSuboperations == done < 12
        assert final.NumberOfRemainingSuboperations == 12 - done

    dest = AE(ae_title="SLOW")
    dest.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    dest_port = free_port()
    server = dest.start_server((HOST, dest_port), block=False, evt_handlers=[(evt.EVT_C_STORE, slow_store)])
    try:
        with running_hub(tmp_path, db_url, {"SLOW": {"aet": "SLOW", "port": dest_port}}) as hub:
            store_all(hub, write_series(tmp_path / "s", 12, rows=32, cols=32, seed="slow"))
            ds = identifier("SERIES", SeriesInstanceUID=uid("slow", "series"))
            final, _, _ = c_move(hub.dimse_port, ds, "SLOW", cancel=True)  # type: ignore[attr-defined]
            assert_cancelled(final, len(stored))
            final, _, got = c_get(hub.dimse_port, ds, [CTImageStorage], cancel=True, delay=0.1)  # type: ignore[attr-defined]
            assert_cancelled(final, len(got))
    finally:
        server.shutdown()
        dest.shutdown()


def test_move_and_get_not_authorized(tmp_path: Path, db_url: str) -> None:
    """With ``check_calling`` a declared modality without ``allow_move``/``allow_get`` is refused
    with 0x0124 (Refused: not authorized); one that may goes through."""
    out = tmp_path / "out"
    with storescp(out) as dest_port:
        nodes = {"MOVER": {"aet": "MOVER", "port": 104, "allow_move": False, "allow_get": False},
                 "DEST": {"aet": "DEST", "port": dest_port}}
        with running_hub(tmp_path, db_url, nodes, RISHUB_DICOM_CHECK_CALLING="1") as hub:
            paths = archive(hub, tmp_path)["b"]
            port = hub.dimse_port  # type: ignore[attr-defined]
            ds = identifier("STUDY", StudyInstanceUID=uid("b", "study"))
            final, _, _ = c_move(port, ds, "DEST", aet="MOVER")
            assert final.Status == 0x0124
            final, _, got = c_get(port, ds, [CTImageStorage], aet="MOVER")
            assert final.Status == 0x0124 and got == {}
            assert received(out) == {}

            final, _, _ = c_move(port, ds, "DEST", aet="DEST")
            assert final.Status == 0x0000 and final.NumberOfCompletedSuboperations == 2
            assert_same_bytes(out, paths)


# --------------------------------------------------------------------------- C-GET


def test_get_with_pynetdicom_unsupported_class_fails_that_instance(tmp_path: Path, db_url: str) -> None:
    """Sub-operations go back on the requester's association as stored (byte-identical data sets);
    an instance whose SOP class the requester did not propose fails: 0xB000 with its UID listed."""
    with running_hub(tmp_path, db_url, {}) as hub:
        ct = write_series(tmp_path / "ct", 3, rows=64, cols=64, seed="get")
        mr = TEST_FILES / "MR_small.dcm"
        store_all(hub, [*ct, mr])
        wanted = [sop_uid(p) for p in [*ct, mr]]
        for model in (STUDY_GET, PATIENT_GET):
            ds = identifier("IMAGE", SOPInstanceUID=wanted)
            final, ident, got = c_get(hub.dimse_port, ds, [CTImageStorage], model)  # type: ignore[attr-defined]
            assert final.Status == 0xB000
            assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (3, 1)
            assert uids(ident.FailedSOPInstanceUIDList) == [sop_uid(mr)]
            assert sorted(got) == sorted(sop_uid(p) for p in ct)
            for src in ct:
                assert got[sop_uid(src)] == dataset_bytes(src)

        # Implicit VR only: the explicit-VR files are re-encoded, element values unchanged.
        final, _, got = c_get(hub.dimse_port, ds, [CTImageStorage], syntaxes=(ImplicitVRLittleEndian,))  # type: ignore[attr-defined]
        assert final.Status == 0xB000 and final.NumberOfCompletedSuboperations == 3
        for src in ct:
            original = pydicom.dcmread(src)
            ours = read_dataset(io.BytesIO(got[sop_uid(src)]), is_implicit_VR=True, is_little_endian=True)
            assert ours.PixelData == original.PixelData and ours.SOPInstanceUID == original.SOPInstanceUID


def test_getscu_series(tmp_path: Path, db_url: str) -> None:
    """DCMTK getscu receives every instance of the series, data sets as stored."""
    with running_hub(tmp_path, db_url, {}) as hub:
        paths = write_series(tmp_path / "s", 4, rows=64, cols=64, seed="g")
        store_all(hub, paths)
        out = tmp_path / "out"
        out.mkdir()
        args = [dcmtk("getscu"), "-v", "-aet", "GETTER", "-aec", "RISHUB", "-S", "+B", "-od", str(out),
                "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={uid('g', 'study')}",
                "-k", f"SeriesInstanceUID={uid('g', 'series')}", HOST, str(hub.dimse_port)]  # type: ignore[attr-defined]
        result = subprocess.run(args, env=dcmtk_env(), capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        got = received(out)
        assert sorted(got) == sorted(sop_uid(p) for p in paths)
        for src in paths:
            assert pydicom.dcmread(got[sop_uid(src)]) == pydicom.dcmread(src)
        syntax = pydicom.dcmread(got[sop_uid(paths[0])], stop_before_pixels=True).file_meta.TransferSyntaxUID
        assert syntax != ImplicitVRLittleEndian  # the hub prefers the stored Explicit VR LE: no re-encoding
        for src in paths:
            assert dataset_bytes(got[sop_uid(src)]) == dataset_bytes(src)
