"""The hub as SCU (PS3.4 A.4, B.2, C.4.1, C.4.2): C-ECHO and C-STORE against DCMTK's storescp,
C-FIND and C-MOVE against the hub's own SCPs (modality ``SELF``), through the service and the CLI.

storescp runs in bit-preserving mode (``+B``): it writes the data set bytes as received, so
"sent unchanged" is checked byte for byte against the source file's data set.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from pynetdicom.dsutils import split_dataset

from hub.app import Hub
from hub.domain.origin import Origin
from hub.errors import HubError
from hub.services.remote import RemoteError, RemoteService
from interfaces import cli_dicom
from interfaces.dimse.scu import PynetdicomClient, remote_service
from interfaces.serve import Listeners
from tests.conftest import TEST_FILES, dcmtk, dcmtk_env, free_port, make_settings
from tests.synthetic import write_series

HOST = "127.0.0.1"
# Distinct SOP Instance UIDs, each in its own transfer syntax (J2K, RLE, explicit LE, deflated).
SAMPLES = ["JPEG2000.dcm", "MR_small_RLE.dcm", "CT_small.dcm", "image_dfl.dcm"]
TIMEOUTS = {"RISHUB_DICOM_ACSE_TIMEOUT": "10", "RISHUB_DICOM_DIMSE_TIMEOUT": "30", "RISHUB_DICOM_NETWORK_TIMEOUT": "30"}


# --------------------------------------------------------------------------- helpers


def dataset_bytes(path: Path) -> bytes:
    _, offset = split_dataset(path)
    return Path(path).read_bytes()[offset:]


def received(out: Path) -> dict[str, Path]:
    """SOP Instance UID -> file written by storescp."""
    files = {}
    for p in out.iterdir():
        if p.is_file():
            files[str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)] = p
    return files


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "storescp exited"
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("storescp did not listen")


@contextmanager
def storescp(out: Path, *args: str, aet: str = "REMOTE") -> Iterator[int]:
    """DCMTK storescp on a free port writing what it receives unchanged into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with (out.parent / f"{out.name}.log").open("wb") as log:
        proc = subprocess.Popen(
            [dcmtk("storescp"), "-v", "-aet", aet, "+B", *args, "-od", str(out), str(port)],
            env=dcmtk_env(), stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, proc)
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def associations(out: Path) -> int:
    """Associations storescp accepted so far (the port probe of :func:`wait_for_port` is none)."""
    return (out.parent / f"{out.name}.log").read_text(errors="replace").count("Association Acknowledged")


def modalities(**entries: tuple[str, int]) -> dict[str, str]:
    table = {name: {"aet": aet, "host": HOST, "port": port} for name, (aet, port) in entries.items()}
    return {"RISHUB_MODALITIES": json.dumps(table), **TIMEOUTS}


def service_for(tmp_path: Path, db_url: str, **env: str) -> RemoteService:
    settings = make_settings(tmp_path / "data", db_url, **env)
    return RemoteService.build(settings, PynetdicomClient(settings))


def rishub(monkeypatch: pytest.MonkeyPatch, data_dir: Path, db_url: str, env: dict[str, str], *argv: str) -> int:
    """Run an SCU subcommand as ``rishub`` would, with the settings in the environment. Uses
    ``interfaces.cli`` when it registers the subcommands, else a parser built with ``register``."""
    for key, value in {"RISHUB_DATA_DIR": str(data_dir), "RISHUB_DATABASE_URL": db_url,
                       "RISHUB_ADMIN_PASSWORD": "admin-secret-pw", **env}.items():
        monkeypatch.setenv(key, value)
    from interfaces import cli

    parser = cli.build_parser()
    commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)][0].choices
    if "send" in commands:
        return cli.main(list(argv))
    parser = argparse.ArgumentParser(prog="rishub")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", "-c", metavar="FILE")
        return p

    cli_dicom.register(sub, with_config)
    args = parser.parse_args(list(argv))
    return int(args.func(args))


# --------------------------------------------------------------------------- C-ECHO


def test_echo_success_service_and_cli(tmp_path: Path, db_url: str, monkeypatch, capsys) -> None:
    with storescp(tmp_path / "out") as port:
        env = modalities(REMOTE=("REMOTE", port))
        result = service_for(tmp_path, db_url, **env).echo("REMOTE")
        assert result.ok and result.status == 0 and result.modality == "REMOTE"
        assert rishub(monkeypatch, tmp_path / "data", db_url, env, "echo", "REMOTE") == 0
    assert "echo REMOTE (REMOTE@127.0.0.1" in capsys.readouterr().out


def test_echo_failures_are_one_line(tmp_path: Path, db_url: str, monkeypatch, capsys) -> None:
    closed = free_port()
    env = modalities(CLOSED=("NOBODY", closed))
    service = service_for(tmp_path, db_url, **env)
    with pytest.raises(RemoteError) as info:
        service.echo("CLOSED")
    assert info.value.kind == "unreachable"
    assert str(info.value) == f"CLOSED (NOBODY@127.0.0.1:{closed}): connection refused"

    with pytest.raises(HubError) as unknown:
        service.echo("NOPE")
    assert unknown.value.code == "unknown_resource" and not isinstance(unknown.value, RemoteError)

    capsys.readouterr()
    assert rishub(monkeypatch, tmp_path / "data", db_url, env, "echo", "CLOSED") == 1
    err = capsys.readouterr().err
    assert err == f"rishub: echo CLOSED: CLOSED (NOBODY@127.0.0.1:{closed}): connection refused\n"
    assert rishub(monkeypatch, tmp_path / "data", db_url, env, "echo", "NOPE") == 2
    assert "unknown modality 'NOPE'" in capsys.readouterr().err


def test_silent_peer_times_out(tmp_path: Path, db_url: str, monkeypatch, capsys) -> None:
    """A peer that takes the TCP connection but never answers the A-ASSOCIATE-RQ (ACSE timeout)."""
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        env = {**modalities(MUTE=("MUTE", port)), "RISHUB_DICOM_ACSE_TIMEOUT": "1"}
        started = time.monotonic()
        with pytest.raises(RemoteError) as info:
            service_for(tmp_path, db_url, **env).echo("MUTE")
        assert time.monotonic() - started < 10
        assert info.value.kind == "timeout"
        assert str(info.value) == f"MUTE (MUTE@127.0.0.1:{port}): no association response within 1 s"
        capsys.readouterr()
        assert rishub(monkeypatch, tmp_path / "data", db_url, env, "echo", "MUTE") == 1
        assert capsys.readouterr().err.count("\n") == 1


def test_association_rejected_by_called_aet(tmp_path: Path, db_url: str) -> None:
    port = free_port()
    env = {**modalities(WRONG=("NOT-RISHUB", port)), "RISHUB_DICOM_PORT": str(port)}
    hub = Hub.open(make_settings(tmp_path / "data", db_url, **env), upgrade_schema=True)
    listeners = Listeners(hub)
    listeners.start()
    try:
        with pytest.raises(RemoteError) as info:
            remote_service(hub).echo("WRONG")
    finally:
        listeners.stop()
        hub.close()
    assert info.value.kind == "rejected"
    assert "association rejected" in str(info.value) and "Called AE" in str(info.value)


# --------------------------------------------------------------------------- C-STORE


def test_send_files_unchanged_over_one_association(tmp_path: Path, db_url: str, monkeypatch, capsys) -> None:
    series = write_series(tmp_path / "src" / "series", 4, rows=32, cols=32, seed="scu")
    samples = [TEST_FILES / n for n in SAMPLES]
    with storescp(tmp_path / "out", "+xa") as port:
        env = modalities(REMOTE=("REMOTE", port))
        report = service_for(tmp_path, db_url, **env).store("REMOTE", [tmp_path / "src", *samples])
        assert [i.error for i in report.items if not i.ok] == []
        assert report.ok and report.sent == len(series) + len(SAMPLES)
        assert all(i.unchanged for i in report.items)
        assert associations(tmp_path / "out") == 1
        got = received(tmp_path / "out")
        for path in [*series, *samples]:
            uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            want = dataset_bytes(path)
            if len(want) % 2:  # image_dfl.dcm: odd deflate stream, sent with the PS3.5 A.5 NULL pad byte
                assert path.name == "image_dfl.dcm"
                want += b"\0"
            assert dataset_bytes(got[uid]) == want, path.name
            meta = pydicom.dcmread(got[uid], stop_before_pixels=True).file_meta
            assert meta.TransferSyntaxUID == pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID

        assert rishub(monkeypatch, tmp_path / "data", db_url, env, "send", "REMOTE", str(tmp_path / "src")) == 0
    assert capsys.readouterr().out.startswith(f"sent {len(series)}, failed 0 to REMOTE")


def test_send_converts_uncompressed_and_reports_refused_compressed(tmp_path: Path, db_url: str, monkeypatch,
                                                                   capsys) -> None:
    """An SCP taking only Implicit VR Little Endian (storescp +xi): explicit LE files are re-encoded,
    a JPEG 2000 file is reported (not transcoded), and the CLI exits 1."""
    series = write_series(tmp_path / "src", 2, rows=16, cols=16, seed="conv")
    j2k = TEST_FILES / "JPEG2000.dcm"
    with storescp(tmp_path / "out", "+xi") as port:
        env = modalities(REMOTE=("REMOTE", port))
        report = service_for(tmp_path, db_url, **env).store("REMOTE", [*series, j2k])
        by_label = {Path(i.label).name: i for i in report.items}
        assert report.sent == 2 and report.failed == 1 and not report.ok
        assert by_label[series[0].name].transfer_syntax_uid == "1.2.840.10008.1.2"
        assert not by_label[series[0].name].unchanged
        assert "accepts no context" in by_label["JPEG2000.dcm"].error and by_label["JPEG2000.dcm"].status is None
        got = received(tmp_path / "out")
        original = pydicom.dcmread(series[0])
        copy = pydicom.dcmread(got[str(original.SOPInstanceUID)])
        assert copy.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
        assert copy.PixelData == original.PixelData and copy.PatientName == original.PatientName

        capsys.readouterr()
        assert rishub(monkeypatch, tmp_path / "data", db_url, env, "send", "REMOTE", str(j2k)) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "JPEG 2000" in err and "rishub: sent 0, failed 1" in err


def test_send_archived_instances_by_id(tmp_path: Path, db_url: str, monkeypatch, capsys) -> None:
    env_base = {**TIMEOUTS}
    settings = make_settings(tmp_path / "data", db_url, **env_base)
    hub = Hub.open(settings, upgrade_schema=True)
    try:
        stored = [hub.ingest.store(Origin("import"), TEST_FILES / n) for n in ("CT_small.dcm", "JPEG2000.dcm")]
    finally:
        hub.close()
    ids = [s.instance.public_id for s in stored]
    with storescp(tmp_path / "out", "+xa") as port:
        env = modalities(REMOTE=("REMOTE", port))
        hub = Hub.open(make_settings(tmp_path / "data", db_url, **env), upgrade_schema=True)
        try:
            service = remote_service(hub)
            # by Orthanc id and by SOP Instance UID
            report = service.store("REMOTE", instances=[ids[0], stored[1].instance.sop_instance_uid])
            assert report.ok and report.sent == 2, report.items
            with pytest.raises(HubError) as info:
                service.store("REMOTE", instances=["0000dead-beef0000-00000000-00000000-00000000"])
            assert info.value.code == "unknown_resource"
            blobs = {s.instance.sop_instance_uid: hub.blobs.path(hub.index.instance_by_sop_uid(
                s.instance.sop_instance_uid)["blob_key"]) for s in stored}
        finally:
            hub.close()
        got = received(tmp_path / "out")
        for uid, blob in blobs.items():
            assert dataset_bytes(got[uid]) == dataset_bytes(blob)
            assert dataset_bytes(got[uid]) == dataset_bytes(TEST_FILES / ("CT_small.dcm" if "12322" in uid
                                                                          else "JPEG2000.dcm"))
        for p in got.values():
            p.unlink()
        capsys.readouterr()
        assert rishub(monkeypatch, tmp_path / "data", db_url, env, "send", "REMOTE", "--instance", ids[1]) == 0
        assert len(received(tmp_path / "out")) == 1
        assert rishub(monkeypatch, tmp_path / "data", db_url, env, "send", "REMOTE", "--instance", "x") == 2
    assert "unknown instance 'x'" in capsys.readouterr().err


# --------------------------------------------------------------------------- C-FIND / C-MOVE on the hub itself


@pytest.fixture
def self_hub(tmp_path: Path, db_url: str) -> Iterator[tuple[Hub, dict[str, str], Path]]:
    """A hub with 3 synthetic CT images listening on a known port, declared to itself as ``SELF``,
    and a storescp ``REMOTE`` as move destination."""
    out = tmp_path / "moved"
    with storescp(out) as remote_port:
        port = free_port()
        env = {**modalities(SELF=("RISHUB", port), REMOTE=("REMOTE", remote_port)), "RISHUB_DICOM_PORT": str(port)}
        hub = Hub.open(make_settings(tmp_path / "data", db_url, **env), upgrade_schema=True)
        for p in write_series(tmp_path / "src", 3, rows=16, cols=16, patient_id="SCU1", patient_name="Scu^Test",
                              seed="self"):
            hub.ingest.store(Origin("import"), p)
        listeners = Listeners(hub)
        listeners.start()
        try:
            yield hub, env, out
        finally:
            listeners.stop()
            hub.close()


def test_find_on_self(self_hub, tmp_path: Path, db_url: str, monkeypatch, capsys) -> None:
    hub, env, _ = self_hub
    service = remote_service(hub)
    rows = service.find("SELF", "STUDY", {"PatientID": "SCU1", "StudyInstanceUID": "", "PatientName": "",
                                          "NumberOfStudyRelatedInstances": ""})
    assert len(rows) == 1
    study_uid = pydicom.dcmread(tmp_path / "src" / "CT00000.dcm", stop_before_pixels=True).StudyInstanceUID
    assert rows[0]["StudyInstanceUID"] == study_uid and rows[0]["PatientName"] == "Scu^Test"
    assert rows[0]["NumberOfStudyRelatedInstances"] == "3"
    assert service.find("SELF", "STUDY", {"PatientID": "NOBODY"}) == []
    images = service.find("SELF", "IMAGE", {"StudyInstanceUID": study_uid, "SeriesInstanceUID": "*",
                                            "SOPInstanceUID": "", "InstanceNumber": ""})
    assert sorted(r["InstanceNumber"] for r in images) == ["1", "2", "3"]
    with pytest.raises(HubError) as info:
        service.find("SELF", "PATIENT", {"PatientID": ""}, root="study")
    assert info.value.code == "bad_request"

    capsys.readouterr()
    code = rishub(monkeypatch, tmp_path / "data", db_url, env, "find", "SELF", "--level", "study",
                  "-k", "PatientID=SCU1", "-k", "StudyInstanceUID", "-k", "0010,0010=")
    assert code == 0
    assert capsys.readouterr().out == f"SCU1\t{study_uid}\tScu^Test\n"
    assert rishub(monkeypatch, tmp_path / "data", db_url, env, "find", "SELF", "-k", "NoSuchKeyword=1") == 2
    assert "unknown DICOM attribute 'NoSuchKeyword'" in capsys.readouterr().err


def test_move_from_self_to_storescp(self_hub, tmp_path: Path, db_url: str, monkeypatch, capsys) -> None:
    hub, env, out = self_hub
    study_uid = str(pydicom.dcmread(tmp_path / "src" / "CT00000.dcm", stop_before_pixels=True).StudyInstanceUID)
    result = remote_service(hub).move("SELF", "STUDY", {"StudyInstanceUID": study_uid}, "REMOTE")
    assert result.ok, result
    assert (result.completed, result.failed, result.warnings) == (3, 0, 0)
    assert len(received(out)) == 3
    for src in sorted((tmp_path / "src").iterdir()):
        uid = str(pydicom.dcmread(src, stop_before_pixels=True).SOPInstanceUID)
        assert dataset_bytes(received(out)[uid]) == dataset_bytes(src)

    bad = remote_service(hub).move("SELF", "STUDY", {"StudyInstanceUID": study_uid}, "UNKNOWN-AE")
    assert not bad.ok and bad.status == 0xA801

    capsys.readouterr()
    assert rishub(monkeypatch, tmp_path / "data", db_url, env, "move", "SELF", "--to", "REMOTE",
                  "-k", f"StudyInstanceUID={study_uid}") == 0
    assert "completed 3, failed 0" in capsys.readouterr().out
    assert rishub(monkeypatch, tmp_path / "data", db_url, env, "move", "SELF", "--to", "REMOTE",
                  "-k", "PatientID=SCU1") == 2
    assert "needs StudyInstanceUID" in capsys.readouterr().err


def test_cli_sees_modalities_declared_at_run_time(tmp_path: Path, db_url: str, monkeypatch, capsys, caplog) -> None:
    """A modality declared over REST (kept in the database) is known to ``rishub echo``; without a
    database to read, the CLI falls back to ``[modalities]`` quietly."""
    from hub.services.modalities import RemoteModality

    with storescp(tmp_path / "out") as port:
        hub = Hub.open(make_settings(tmp_path / "data", db_url, **TIMEOUTS), upgrade_schema=True)
        try:
            hub.modalities.put(RemoteModality("RUNTIME", "REMOTE", HOST, port))
        finally:
            hub.close()
        capsys.readouterr()
        assert rishub(monkeypatch, tmp_path / "data", db_url, TIMEOUTS, "echo", "RUNTIME") == 0
        assert "echo RUNTIME (REMOTE@127.0.0.1" in capsys.readouterr().out
        env = modalities(CONF=("REMOTE", port))
        assert rishub(monkeypatch, tmp_path / "empty", "sqlite:///" + str(tmp_path / "none" / "x.db"), env,
                      "echo", "CONF") == 0
        out = capsys.readouterr()
        assert "echo CONF" in out.out and out.err == ""
        assert [r.message for r in caplog.records if r.name.startswith("hub") and r.levelname == "WARNING"] == []
