"""``rishub`` command line: import, db upgrade/current, serve's start-up errors (as subprocesses)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hub.app import Hub
from tests.conftest import TEST_FILES, make_settings
from tests.synthetic import write_series

ROOT = Path(__file__).resolve().parents[2]


def rishub(*args: str, env: dict[str, str] | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "interfaces.cli", *args], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=timeout,
    )


def config(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "rishub.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\ndatabase_url = "{db_url}"\n')
    return path


def test_import_counts_stored_duplicates_rejected(tmp_path: Path, db_url: str):
    src = tmp_path / "in"
    (src / "nested" / "deeper").mkdir(parents=True)
    shutil.copy(TEST_FILES / "CT_small.dcm", src / "a.dcm")
    shutil.copy(TEST_FILES / "CT_small.dcm", src / "nested" / "same-again.dcm")  # duplicate
    shutil.copy(TEST_FILES / "MR_small.dcm", src / "nested" / "deeper" / "b")  # no extension
    shutil.copy(TEST_FILES / "MR_truncated.dcm", src / "cut.dcm")
    (src / "notes.txt").write_text("not dicom")
    write_series(src / "series", 6, rows=16, cols=16)
    cfg = config(tmp_path, db_url)
    if not db_url.startswith("sqlite"):
        assert rishub("db", "upgrade", "--config", str(cfg)).returncode == 0
    result = rishub("import", str(src), "--config", str(cfg), "--no-progress", "-j", "4")
    assert result.returncode == 0, result.stderr
    assert "stored 8, duplicates 1, rejected 2, failed 0 (11 files" in result.stdout
    assert "cut.dcm: truncated DICOM file" in result.stderr
    assert "notes.txt: not a DICOM Part 10 file" in result.stderr
    hub = Hub.open(make_settings(tmp_path / "data", db_url), upgrade_schema=False, bootstrap_admin=False)
    try:
        assert hub.index.statistics()["instances"] == 8
        row = hub.index.instance_by_sop_uid("1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322")
        assert row["origin_protocol"] == "import"
        assert hub.blobs.path(row["blob_key"]).read_bytes() == (TEST_FILES / "CT_small.dcm").read_bytes()
    finally:
        hub.close()
    again = rishub("import", str(src / "a.dcm"), "--config", str(cfg), "--no-progress")
    assert again.returncode == 0 and "stored 0, duplicates 1" in again.stdout


def test_import_progress_bar_goes_to_stderr(tmp_path: Path):
    cfg = config(tmp_path, f"sqlite:///{tmp_path / 'i.db'}")
    result = rishub("import", str(TEST_FILES / "CT_small.dcm"), "--config", str(cfg))
    assert result.returncode == 0
    assert "1/1" in result.stderr and "stored 1" in result.stdout


def test_import_exits_non_zero_on_a_real_failure(tmp_path: Path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "d"}"\n'
                   'database_url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"\n')
    result = rishub("import", str(TEST_FILES / "CT_small.dcm"), "--config", str(cfg), "--no-progress")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and result.stderr.startswith("rishub: ")


@pytest.mark.parametrize(
    "env,needle",
    [
        ({"RISHUB_HTTP_PORT": "http"}, "RISHUB_HTTP_PORT"),
        ({"RISHUB_AE_TITLE": "WAY-TOO-LONG-AE-TITLE"}, "ae_title"),
        ({"RISHUB_STORAGE_DUPLICATE_POLICY": "sometimes"}, "storage.duplicate_policy"),
    ],
)
def test_serve_refuses_a_wrong_setting_with_one_line(tmp_path: Path, env: dict[str, str], needle: str):
    result = rishub("serve", env={"RISHUB_DATA_DIR": str(tmp_path), **env}, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("rishub: configuration error:")


def test_postgresql_schema_needs_db_upgrade(tmp_path: Path, pg_url: str):
    cfg = config(tmp_path, pg_url)
    refused = rishub("serve", "--config", str(cfg), timeout=60)
    assert refused.returncode == 2 and "rishub db upgrade" in refused.stderr
    assert rishub("db", "upgrade", "--config", str(cfg)).returncode == 0
    current = rishub("db", "current", "--config", str(cfg))
    from hub.app import head_revision

    head = head_revision()
    assert current.returncode == 0 and f"current {head}, head {head}" in current.stdout


def test_user_add_and_list(tmp_path: Path):
    cfg = config(tmp_path, f"sqlite:///{tmp_path / 'u.db'}")
    added = subprocess.run(
        [sys.executable, "-m", "interfaces.cli", "user", "add", "reader", "--role", "user", "--password-stdin",
         "--config", str(cfg)], cwd=ROOT, input="reader-password\n", capture_output=True, text=True, timeout=60,
    )
    assert added.returncode == 0 and "created user reader" in added.stdout
    listed = rishub("user", "list", "--config", str(cfg))
    assert "reader\tuser" in listed.stdout
    short = subprocess.run(
        [sys.executable, "-m", "interfaces.cli", "user", "add", "x", "--password-stdin", "--config", str(cfg)],
        cwd=ROOT, input="short\n", capture_output=True, text=True, timeout=60,
    )
    assert short.returncode == 2




def test_map_hl7_prints_orders_and_worklist_items(tmp_path: Path):
    from tests.hl7_samples import samples_dir

    HL7_SAMPLES = samples_dir()
    run = rishub("map", "hl7", str(HL7_SAMPLES / "04_omi_o23_nw_mr_two_sps_v251.hl7"))
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    (order,) = out["orders"]
    assert order["study_uid"] == "2.25.200233365037459004953088623702178552356"
    assert [s["sps_id"] for s in order["steps"]] == ["SPS-000731-1", "SPS-000731-2"]
    item = order["worklist_items"][0]
    assert item["00100010"]["Value"][0]["Alphabetic"] == "ŁUKASZEWSKA^ZOFIA" and item["00080005"]["Value"] == [
        "ISO_IR 192"]
    assert item["00400100"]["Value"][0]["00400001"]["Value"] == ["MRSCANNER2"]
    bad = tmp_path / "bad.hl7"
    segments = (HL7_SAMPLES / "01_orm_o01_nw_ct_v231.hl7").read_bytes().split(b"\r")
    pid = segments[1].split(b"|")
    pid[3] = b""  # no patient identifier
    segments[1] = b"|".join(pid)
    bad.write_bytes(b"\r".join(segments))
    run = rishub("map", "hl7", str(bad))
    assert run.returncode == 1 and "MSA|AE|RIS00012345" in run.stderr and "101" in run.stderr
