"""Per-instance content routes against the real Orthanc 1.10: the same files go to both servers and
every answer is compared (status, Content-Type, bodies; images decoded with Pillow and compared
pixel for pixel, exactly)."""

from __future__ import annotations

import gzip
import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from tests.conftest import TEST_FILES

# A single-frame CT with private tags and a sequence, MR, big endian MR, RGB (big endian and
# planar-free), multi-frame RLE RGB, multi-frame JPEG YBR, JPEG RGB, palette, RT Plan (sequences),
# JPEG 2000, multi-frame 32-bit RT Dose, 1-bit SEG, deflated.
TAG_FILES = ["CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "ExplVR_BigEnd.dcm", "SC_rgb_rle_2frame.dcm",
             "examples_ybr_color.dcm", "SC_rgb_jpeg_dcmtk.dcm", "examples_palette.dcm", "rtplan.dcm", "JPEG2000.dcm",
             "rtdose.dcm", "liver_1frame.dcm", "image_dfl.dcm", "J2K_pixelrep_mismatch.dcm", "test-SR.dcm"]
IMAGE_FILES = ["CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "ExplVR_BigEnd.dcm", "SC_rgb_rle_2frame.dcm",
               "examples_ybr_color.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm", "examples_palette.dcm",
               "MR_small_RLE.dcm", "rtdose_rle_1frame.dcm", "liver_1frame.dcm", "image_dfl.dcm",
               "SC_jpeg_no_color_transform.dcm"]
IMAGE_ROUTES = ["preview", "image-uint8", "image-uint16", "image-int16", "rendered",
                "rendered?window-center=100&window-width=400", "rendered?width=50", "rendered?height=40&smooth=1",
                "rendered?width=64&height=64&smooth=true", "frames/1/preview", "frames/1/rendered"]


def both(api, orthanc, path: Path) -> str:
    """Upload ``path`` to the hub and to Orthanc; both must name it with the same id."""
    ours, theirs = api.upload(path), orthanc.upload(path)
    assert ours["ID"] == theirs["ID"]
    return ours["ID"]


def both_ids(api, orthanc, path: Path) -> tuple[str, str]:
    """(hub id, Orthanc id) of ``path``: they differ when an identifying attribute is UN-encoded
    with padding, which Orthanc keeps (rtdose_rle*.dcm)."""
    return api.upload(path)["ID"], orthanc.upload(path)["ID"]


def forget(api, orthanc, iid: str) -> None:
    """Delete the instance from both servers (several test files share a SOP Instance UID)."""
    assert api.delete(f"/instances/{iid}").status_code == 200
    orthanc.clear()


def pdf_file(tmp: Path) -> tuple[Path, bytes]:
    """An Encapsulated PDF instance (PS3.3 A.45) whose document has an odd length (padded)."""
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R  >>\n%%EOF"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1001"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1002", "1.2.826.0.1.3680043.8.498.1003"
    ds.PatientID, ds.PatientName, ds.Modality = "PDF1", "Doc^Ument", "DOC"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.DocumentTitle = "report"
    assert len(pdf) % 2 == 1
    ds.EncapsulatedDocument = pdf  # written with one pad byte
    path = tmp / "pdf.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path, pdf


def charset_file(tmp: Path) -> Path:
    """Latin-1 names, a value over 256 bytes, numbers of every binary VR, AT, private tags with and
    without a dictionary entry, a UN string, nested and empty sequences."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.2001"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.2002", "1.2.826.0.1.3680043.8.498.2003"
    ds.PatientID, ds.PatientName = "CHARS", "Müller^Jürgen"
    ds.add_new(0x00204000, "LT", "ßeta " * 60)  # over 256 bytes of UTF-8: TooLong
    ds.add_new(0x00209165, "AT", [0x00100010, 0x00200013])
    ds.add_new(0x00189305, "FD", [1.1, 2.0e-7])
    ds.add_new(0x00189306, "FL", [0.1, 1e-5])
    ds.add_new(0x00189307, "SL", [-5, 7])
    ds.add_new(0x00280120, "SS", -2000)
    ds.private_block(0x0029, "ACME 1.0", create=True).add_new(0x01, "LO", "acme value")
    ds.private_block(0x0019, "GEMS_ACQU_01", create=True).add_new(0x02, "UN", b"912 ")
    ds.add_new(0x00101010, "UN", b"042Y")
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "123", "DCM"
    inner = Dataset()
    inner.CodeMeaning = "inner"
    code.ConceptCodeSequence = Sequence([inner])
    ds.ProcedureCodeSequence = Sequence([code, Dataset()])
    ds.ReferencedImageSequence = Sequence([])
    path = tmp / "chars.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_file_is_the_stored_bytes(api, orthanc):
    path = TEST_FILES / "CT_small.dcm"
    iid = both(api, orthanc, path)
    ours, theirs = api.get(f"/instances/{iid}/file"), orthanc.get(f"/instances/{iid}/file")
    assert ours.status_code == theirs.status_code == 200
    assert ours.content == theirs.content == path.read_bytes()
    assert ours.headers["Content-Type"] == theirs.headers["Content-Type"] == "application/dicom"
    for resp in (ours, theirs):
        disposition = resp.headers["Content-Disposition"]
        assert disposition.startswith('filename="') and disposition.endswith('.dcm"')
    assert api.get("/instances/nope/file").status_code == orthanc.get("/instances/nope/file").status_code == 404


def test_tags_simplified_short_and_header_equal_orthanc(api, orthanc, tmp_path):
    paths = [TEST_FILES / n for n in TAG_FILES] + [pdf_file(tmp_path)[0], charset_file(tmp_path)]
    routes = ["tags", "tags?simplify", "tags?short", "tags?simplify=false", "simplified-tags", "header",
              "header?simplify", "header?short", "tags?ignore-length=0020-4000"]
    for path in paths:
        iid = both(api, orthanc, path)
        for route in routes:
            ours, theirs = api.get(f"/instances/{iid}/{route}"), orthanc.get(f"/instances/{iid}/{route}")
            assert ours.status_code == theirs.status_code == 200, (path.name, route)
            assert ours.json() == theirs.json(), (path.name, route)
            assert ours.headers["Content-Type"].startswith("application/json")
        forget(api, orthanc, iid)


def test_content_navigation_equals_orthanc(api, orthanc):
    paths = {
        "CT_small.dcm": ["", "0010-0010", "0010,0010", "0028-0010", "0028-0030", "0043-1028", "0010-1002",
                         "0010-1002/", "0010-1002/0", "0010-1002/1/0010-0020", "0010-1002/5", "0010-1002/x",
                         "0010-0010/0", "0099-0010", "7fe0-0010", "7fe0-0010/0", "7fe0-0010/1", "PatientName"],
        "MR_small_bigendian.dcm": ["0028-0010", "0028-0030", "7fe0-0010/0"],
        "SC_rgb_rle_2frame.dcm": ["7fe0-0010", "7fe0-0010/0", "7fe0-0010/1", "7fe0-0010/2", "7fe0-0010/3"],
        "rtplan.dcm": ["300a-0010", "300a-0010/0", "300a-0010/0/300a-0016", "300a-00b0/0/300a-0111/1"],
    }
    for name, routes in paths.items():
        iid = both(api, orthanc, TEST_FILES / name)
        for route in routes:
            ours = api.get(f"/instances/{iid}/content/{route}")
            theirs = orthanc.get(f"/instances/{iid}/content/{route}")
            assert ours.status_code == theirs.status_code, (name, route)
            if theirs.status_code != 200:
                continue
            assert ours.headers["Content-Type"].split(";")[0] == theirs.headers["Content-Type"].split(";")[0]
            if theirs.headers["Content-Type"].startswith("application/json"):
                assert ours.json() == theirs.json(), (name, route)
            else:
                assert ours.content == theirs.content, (name, route)
        forget(api, orthanc, iid)
    # Orthanc answers an unknown tag name with a 500; the hub says 400 (a bad parameter).
    iid = both(api, orthanc, TEST_FILES / "CT_small.dcm")
    assert api.get(f"/instances/{iid}/content/NotATag").status_code == 400
    assert api.get("/instances/nope/content/").status_code == orthanc.get("/instances/nope/content/").status_code


RAW_FILES = ["CT_small.dcm", "SC_rgb_rle_2frame.dcm", "examples_ybr_color.dcm", "rtdose.dcm", "MR_small_bigendian.dcm",
             "SC_rgb_small_odd_big_endian.dcm", "JPEG2000.dcm", "rtdose_expb.dcm", "liver_1frame.dcm", "image_dfl.dcm",
             "MR_small_jpeg_ls_lossless.dcm"]


@pytest.mark.parametrize("name", RAW_FILES)
def test_frames_and_raw_frames_equal_orthanc(api, orthanc, name):
    iid = both(api, orthanc, TEST_FILES / name)
    frames = api.json(f"/instances/{iid}/frames")
    assert frames == orthanc.json(f"/instances/{iid}/frames")
    assert api.json(f"/instances/{iid}/frames/0") == orthanc.json(f"/instances/{iid}/frames/0")
    for n in [*frames, len(frames), "x"]:
        for suffix in ("raw", "raw.gz"):
            ours = api.get(f"/instances/{iid}/frames/{n}/{suffix}")
            theirs = orthanc.get(f"/instances/{iid}/frames/{n}/{suffix}")
            assert ours.status_code == theirs.status_code, (n, suffix)
            if theirs.status_code == 200:
                assert ours.headers["Content-Type"] == theirs.headers["Content-Type"]
                if suffix == "raw":
                    assert ours.content == theirs.content
                else:
                    assert gzip.decompress(ours.content) == gzip.decompress(theirs.content)


def _pixels(body: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(body)))


def test_images_equal_orthanc_pixel_for_pixel(api, orthanc):
    """PNG and JPEG answers decode to the same pixels as Orthanc's (exact); formats Orthanc cannot
    decode (415) are only required to decode here when the hub has a decoder."""
    for name in IMAGE_FILES:
        iid, oid = both_ids(api, orthanc, TEST_FILES / name)
        for route in IMAGE_ROUTES:
            for accept in (None, "image/jpeg"):
                headers = {"Accept": accept} if accept else {}
                ours = api.get(f"/instances/{iid}/{route}", headers=headers)
                theirs = orthanc.get(f"/instances/{oid}/{route}", headers=headers)
                if route.startswith("frames/1/") and theirs.status_code == 415:
                    assert ours.status_code == 404  # Orthanc's decoder fails on the missing frame; 404 here
                    continue
                assert ours.status_code == theirs.status_code, (name, route, accept)
                if theirs.status_code != 200:
                    continue
                assert ours.headers["Content-Type"] == theirs.headers["Content-Type"]
                a, b = _pixels(ours.content), _pixels(theirs.content)
                assert a.shape == b.shape and a.dtype == b.dtype, (name, route, accept)
                assert np.array_equal(a, b), (name, route, accept)
        forget(api, orthanc, iid)


def test_jpeg_2000_decodes_here_where_orthanc_cannot(api, orthanc):
    iid = both(api, orthanc, TEST_FILES / "MR_small_jp2klossless.dcm")
    assert orthanc.get(f"/instances/{iid}/preview").status_code == 415
    assert get_decoder("1.2.840.10008.1.2.4.90").is_available  # pylibjpeg-openjpeg is a dependency
    ours = api.get(f"/instances/{iid}/image-int16")
    assert ours.status_code == 200
    # Lossless: the same values as the uncompressed MR_small.dcm.
    assert np.array_equal(_pixels(ours.content).view(np.int16), dcmread(TEST_FILES / "MR_small.dcm").pixel_array)


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_gdcm.dcm", "MR_small_jpeg_ls_lossless.dcm"])
def test_jpeg_lossless_and_jpeg_ls_previews_equal_orthancs(api, orthanc, name):
    """JPEG Lossless SV1 and JPEG-LS (GDCM here, DCMTK in Orthanc) give the same pixels."""
    iid = both(api, orthanc, TEST_FILES / name)
    for route in ("preview", "rendered") + (("image-uint16",) if "rgb" not in name else ()):
        ours, theirs = api.get(f"/instances/{iid}/{route}"), orthanc.get(f"/instances/{iid}/{route}")
        assert ours.status_code == theirs.status_code == 200, (route, ours.text)
        assert np.array_equal(_pixels(ours.content), _pixels(theirs.content)), route


def test_undecodable_syntax_is_415_never_500(api, orthanc):
    """12-bit JPEG extended: Pillow and GDCM cannot decode it (pylibjpeg's libjpeg, GPL, is not installed and
    differs from DCMTK by 1 at places), so the hub says what it cannot do where Orthanc's DCMTK decodes it."""
    if get_decoder("1.2.840.10008.1.2.4.51").is_available and importlib.util.find_spec("libjpeg") is not None:
        pytest.skip("pylibjpeg-libjpeg is installed here (it is not a dependency of the hub)")
    iid = both(api, orthanc, TEST_FILES / "JPGExtended.dcm")
    ours = api.get(f"/instances/{iid}/preview")
    assert ours.status_code == 415 and ours.json()["HttpStatus"] == 415
    assert orthanc.get(f"/instances/{iid}/preview").status_code == 200


def test_pdf_route(api, orthanc, tmp_path):
    path, pdf = pdf_file(tmp_path)
    iid = both(api, orthanc, path)
    ours, theirs = api.get(f"/instances/{iid}/pdf"), orthanc.get(f"/instances/{iid}/pdf")
    assert ours.status_code == theirs.status_code == 200
    assert ours.content == theirs.content == pdf  # the pad byte is dropped
    assert ours.headers["Content-Type"] == theirs.headers["Content-Type"] == "application/pdf"
    ct = both(api, orthanc, TEST_FILES / "CT_small.dcm")
    assert api.get(f"/instances/{ct}/pdf").status_code == orthanc.get(f"/instances/{ct}/pdf").status_code == 404
    assert api.get("/instances/nope/pdf").status_code == 404


def test_errors_match_orthanc_statuses(api, orthanc):
    iid = both(api, orthanc, TEST_FILES / "MR_small.dcm")
    same = ["/instances/nope/tags", "/instances/nope/header", "/instances/nope/frames", "/instances/nope/preview",
            "/instances/nope/frames/0/raw", f"/instances/{iid}/frames/1/raw", f"/instances/{iid}/frames/x/raw",
            f"/instances/{iid}/frames/1/preview", f"/instances/{iid}/frames/x/rendered",
            f"/instances/{iid}/frames/1/image-uint8", f"/instances/{iid}/frames/²/raw"]  # ² passes str.isdigit
    for url in same:
        assert api.get(url).status_code == orthanc.get(url).status_code, url
    for accept in ("text/html", "image/webp, image/jpeg;q=0.5, image/png;q=0.9", "image/*",
                   "image/x-portable-arbitrarymap"):
        ours = api.get(f"/instances/{iid}/preview", headers={"Accept": accept})
        theirs = orthanc.get(f"/instances/{iid}/preview", headers={"Accept": accept})
        assert ours.status_code == theirs.status_code, accept
        if theirs.ok:
            assert ours.headers["Content-Type"] == theirs.headers["Content-Type"]
            if "arbitrarymap" not in accept:
                assert np.array_equal(_pixels(ours.content), _pixels(theirs.content))
    # JPEG of 16-bit values: Orthanc answers 404, so does the hub.
    url = f"/instances/{iid}/image-uint16"
    assert api.get(url, headers={"Accept": "image/jpeg"}).status_code == 404 == orthanc.get(
        url, headers={"Accept": "image/jpeg"}).status_code
    # Bad arguments: Orthanc answers 404 or 415 (its decoder swallows them); the hub says 400.
    for query in ("window-width=abc", "width=-3", "smooth=maybe", "quality=0", "quality=²"):
        resp = api.get(f"/instances/{iid}/rendered?{query}")
        assert resp.status_code == 400 and resp.json()["HttpStatus"] == 400, query


def test_numpy_and_matlab_match_orthanc(api, orthanc):
    for name in ("MR_small.dcm", "SC_rgb_small_odd.dcm"):
        iid = both(api, orthanc, TEST_FILES / name)
        for route in ("numpy", "frames/0/numpy", "numpy?rescale=0", "frames/0/numpy?rescale=false"):
            ours, theirs = api.get(f"/instances/{iid}/{route}"), orthanc.get(f"/instances/{iid}/{route}")
            assert ours.status_code == theirs.status_code == 200
            a, b = np.load(io.BytesIO(ours.content)), np.load(io.BytesIO(theirs.content))
            assert a.dtype == b.dtype and np.array_equal(a, b), (name, route)
        compressed = np.load(io.BytesIO(api.get(f"/instances/{iid}/numpy?compress=1").content))["arr_0"]
        assert np.array_equal(compressed, np.load(io.BytesIO(orthanc.get(f"/instances/{iid}/numpy").content)))
        ours, theirs = api.get(f"/instances/{iid}/matlab"), orthanc.get(f"/instances/{iid}/matlab")
        assert ours.text == theirs.text
        assert ours.headers["Content-Type"].startswith("text/plain")
        forget(api, orthanc, iid)
