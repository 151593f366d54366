"""Header-only reading with a structural check: every cut is caught, no pixels decoded."""

from pathlib import Path

import pytest

from hub.dicomfile import read_header
from hub.errors import HubError
from tests.conftest import TEST_FILES
from tests.synthetic import write_series


def test_reads_header_and_finds_pixel_data_offset(tmp_path: Path):
    path = write_series(tmp_path, 1, rows=32, cols=32)[0]
    h = read_header(path)
    data = path.read_bytes()
    assert h.pixel_data_offset is not None
    assert data[h.pixel_data_offset : h.pixel_data_offset + 4] == b"\xe0\x7f\x10\x00"
    assert h.pixel_data_vr == "OW"
    assert "PixelData" not in h.dataset
    assert h.transfer_syntax_uid == "1.2.840.10008.1.2.1"


@pytest.mark.parametrize("cut", [10, 200, 700, -1, -100])
def test_any_truncation_is_rejected(tmp_path: Path, cut: int):
    path = write_series(tmp_path, 1, rows=32, cols=32)[0]
    data = path.read_bytes()
    bad = tmp_path / "cut.dcm"
    bad.write_bytes(data[:cut])
    with pytest.raises(HubError) as exc:
        read_header(bad)
    assert exc.value.code == "bad_file_format"


@pytest.mark.parametrize("name", ["MR_truncated.dcm", "rtplan_truncated.dcm", "no_meta.dcm"])
def test_bundled_bad_files_are_rejected(name: str):
    with pytest.raises(HubError):
        read_header(TEST_FILES / name)


def test_not_dicom_bytes(tmp_path: Path):
    p = tmp_path / "x.dcm"
    p.write_bytes(b"hello world" * 100)
    with pytest.raises(HubError, match="not a DICOM Part 10 file"):
        read_header(p)


@pytest.mark.parametrize(
    "name,ts",
    [
        ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),
        ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),
        ("image_dfl.dcm", "1.2.840.10008.1.2.1.99"),
        ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91"),
        ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),
        ("UN_sequence.dcm", "1.2.840.10008.1.2.4.70"),
    ],
)
def test_transfer_syntaxes_and_nested_sequences(name: str, ts: str):
    assert read_header(TEST_FILES / name).transfer_syntax_uid == ts
