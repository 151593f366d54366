"""The render REST API (``/render/series/{id}/info|mpr|mip``) on a live hub, over the analytic phantom
stored through the single ingest path: image contents (where the brightest sphere lands, orientation
labels), formats, ETag/304, parameter validation (400), unknown series (404) and non-volumes (422)."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from hub.domain import Origin
from tests.contract.conftest import Http
from tests.render_phantom import features, phantom_data, write_phantom_series
from tests.synthetic import write_series

SHAPE = (64, 80, 96)  # nz, ny, nx
SPACING = (0.8, 0.8, 1.5)  # sx, sy, sz mm


@pytest.fixture
def series(hub: Any, api: Http, tmp_path: Path) -> str:
    origin = Origin("import", user="test")
    for path in write_phantom_series(tmp_path / "phantom", SHAPE, SPACING):
        hub.ingest.store(origin, path)
    (sid,) = api.json("/series")
    return sid


def complete(api: Http, sid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        info = api.json(f"/render/series/{sid}/info")
        if info["Complete"] or time.monotonic() > deadline:
            return info
        time.sleep(0.05)


def grey(resp: requests.Response) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    return np.asarray(Image.open(io.BytesIO(resp.content)).convert("L"), dtype=np.int16)


def brightest(image: np.ndarray) -> tuple[float, float]:
    """(column, row) centroid of the brightest pixels, as fractions of the image size."""
    rows, cols = np.nonzero(image >= image.max() - 2)
    return (cols.mean() + 0.5) / image.shape[1], (rows.mean() + 0.5) / image.shape[0]


def test_info_reports_geometry_from_positions_and_the_value_range(api: Http, series: str) -> None:
    info = complete(api, series)
    assert info["Dimensions"] == [96, 80, 64]
    assert info["Spacing"] == [0.8, 0.8, 1.5]  # the files say SliceThickness 3.0: spacing is from the positions
    assert info["Normal"] == [0.0, 0.0, 1.0] and info["Orientation"] == [1, 0, 0, 0, 1, 0]
    assert info["ValueRange"] == [float(phantom_data(SHAPE).min()), float(phantom_data(SHAPE).max())]
    assert info["Windows"][0]["Center"] == 40 and info["Windows"][0]["Width"] == 400
    assert info["Loaded"] == 1.0 and info["Error"] is None and info["Backend"] in ("cpu", "gl")


def test_axial_coronal_sagittal_put_the_brightest_sphere_where_it_is(api: Http, series: str) -> None:
    (sphere, *_), _ = features(SHAPE)
    x, y, z = (c / n for c, n in zip(sphere.centre, (96, 80, 64), strict=True))  # fractions of the extent
    z_mm = 50.0 + sphere.centre[2] * SPACING[2]
    y_mm = -120.0 + sphere.centre[1] * SPACING[1]
    x_mm = -100.0 + sphere.centre[0] * SPACING[0]
    win = "window=500,2000"
    axial = api.get(f"/render/series/{series}/mpr?plane=axial&position={z_mm}&{win}&format=png")
    assert axial.headers["X-Orientation"] == "left=R;right=L;top=A;bottom=P"
    assert np.allclose(brightest(grey(axial)), (x, y), atol=0.03)
    coronal = api.get(f"/render/series/{series}/mpr?plane=coronal&position={y_mm}&{win}&format=png")
    assert coronal.headers["X-Orientation"] == "left=R;right=L;top=H;bottom=F"
    assert np.allclose(brightest(grey(coronal)), (x, 1 - z), atol=0.03)  # superior at the top
    sagittal = api.get(f"/render/series/{series}/mpr?plane=sagittal&position={x_mm}&{win}&format=png")
    assert sagittal.headers["X-Orientation"] == "left=A;right=P;top=H;bottom=F"
    assert np.allclose(brightest(grey(sagittal)), (y, 1 - z), atol=0.03)
    # physical aspect ratio kept: 76.8 x 64 mm axial field, 76.8 x 96 mm coronal
    a, c = grey(axial), grey(coronal)
    assert abs(a.shape[1] / a.shape[0] - 76.8 / 64) < 0.03 and abs(c.shape[1] / c.shape[0] - 76.8 / 96) < 0.03


def centre_offset(resp: requests.Response) -> tuple[float, float]:
    """(right, down) offset in mm of the brightest pixels from the image centre (the volume's centre)."""
    image = grey(resp)
    pixel = float(resp.headers["X-Pixel-Spacing"])
    fx, fy = brightest(image)
    return (fx - 0.5) * image.shape[1] * pixel, (fy - 0.5) * image.shape[0] * pixel


def test_full_volume_mip_from_the_front_and_the_side(api: Http, series: str) -> None:
    (sphere, *_), _ = features(SHAPE)
    centre = [(n - 1) / 2 for n in (96, 80, 64)]
    dx, dy, dz = ((c - m) * s for c, m, s in zip(sphere.centre, centre, SPACING, strict=True))  # mm from centre
    front = api.get(f"/render/series/{series}/mip?window=500,2000&format=png")
    assert front.headers["X-Orientation"] == "left=R;right=L;top=H;bottom=F"
    assert np.allclose(centre_offset(front), (dx, -dz), atol=1.6)  # within two output pixels
    assert grey(front).max() >= 254  # 1500 HU seen through the whole volume, window 500/2000 -> 255
    side = api.get(f"/render/series/{series}/mip?azimuth=90&window=500,2000&format=png")
    assert side.headers["X-Orientation"] in ("left=A;right=P;top=H;bottom=F", "left=P;right=A;top=H;bottom=F")
    sign = 1 if side.headers["X-Orientation"].startswith("left=A") else -1
    assert np.allclose(centre_offset(side), (sign * dy, -dz), atol=1.6)
    # MinIP from the front: air wherever a ray leaves the rods, except the rod running front to back (600 HU)
    _, rods = features(SHAPE)
    rod = next(r for r in rods if r.axis == 1)
    minip_resp = api.get(f"/render/series/{series}/mip?mode=minip&window=500,2000&format=png")
    assert abs(int(grey(minip_resp).max()) - round((600 - (500 - 0.5)) / 1999 * 255 + 127.5)) <= 1
    rx, rz = ((c - m) * s for c, m, s in zip(rod.at, (centre[0], centre[2]), (SPACING[0], SPACING[2]), strict=True))
    assert np.allclose(centre_offset(minip_resp), (rx, -rz), atol=1.6)


def test_slabs_oblique_planes_formats_and_presets(api: Http, series: str) -> None:
    for query in ("plane=axial&thickness=20&mode=mip", "plane=sagittal&thickness=20&mode=avg",
                  "plane=oblique&normal=1,1,1&thickness=10&mode=avg",
                  "plane=coronal&thickness=3&mode=minip", "plane=oblique&angles=30,0,15",
                  "plane=oblique&point=-70,-90,100&normal=0,1,1&quality=fast", "plane=axial&preset=bone",
                  "plane=axial&preset=dicom:0", "plane=axial&width=40&height=40"):
        image = grey(api.get(f"/render/series/{series}/mpr?{query}"))
        assert image.size > 0 and image.std() > 0, query
    assert max(grey(api.get(f"/render/series/{series}/mpr?width=40&height=40")).shape) == 40
    missing = api.get(f"/render/series/{series}/mpr?preset=dicom:7")  # the series has one preset: dicom:0
    assert missing.status_code == 400 and "1 window preset" in missing.json()["Message"]
    for fmt, mime, magic in (("jpeg", "image/jpeg", b"\xff\xd8"), ("png", "image/png", b"\x89PNG"),
                             ("webp", "image/webp", b"RIFF")):
        resp = api.get(f"/render/series/{series}/mpr?format={fmt}")
        assert resp.headers["Content-Type"] == mime and resp.content.startswith(magic)
    negotiated = api.get(f"/render/series/{series}/mpr", headers={"Accept": "image/webp,image/png;q=0.5"})
    assert negotiated.headers["Content-Type"] == "image/webp"
    assert api.get(f"/render/series/{series}/mpr", headers={"Accept": "application/pdf"}).status_code == 406


def test_etag_answers_304_and_changes_with_the_request_and_the_series(hub: Any, api: Http, series: str,
                                                                       tmp_path: Path) -> None:
    first = api.get(f"/render/series/{series}/mpr?plane=coronal")
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "private, no-cache"
    again = api.get(f"/render/series/{series}/mpr?plane=coronal", headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.content
    assert api.get(f"/render/series/{series}/mpr?plane=sagittal").headers["ETag"] != etag
    # one more slice stored in the series: a new volume and a new ETag
    extra = write_phantom_series(tmp_path / "extra", (65, 80, 96), SPACING, shuffle=False)[-1]
    hub.ingest.store(Origin("import", user="test"), extra)
    changed = api.get(f"/render/series/{series}/mpr?plane=coronal", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert api.json(f"/render/series/{series}/info")["Dimensions"] == [96, 80, 65]


@pytest.mark.parametrize("query, words", [
    ("plane=bogus", "'plane'"), ("thickness=-1", "'thickness'"), ("plane=oblique", "normal"),
    ("plane=axial&normal=0,0,1", "oblique"), ("plane=oblique&normal=0,0,0", "zero"), ("window=40", "'window'"),
    ("window=40,0", "width"), ("preset=nope", "'preset'"), ("window=40,400&preset=lung", "not both"),
    ("width=0", "'width'"), ("format=gif", "'format'"), ("q=101", "'q'"), ("mode=sum", "'mode'"),
    ("width=1e9", "'width'"), ("position=nan", "'position'"),
    ("positon=3", "unknown parameter"), ("quality=slow", "'quality'"), ("position=abc", "'position'"),
    ("plane=oblique&normal=1,2", "'normal'"), ("preset=dicom:x", "preset"),
])
def test_bad_parameters_are_400_with_a_message(api: Http, query: str, words: str) -> None:
    """Checked before the series is looked up: no volume is loaded for a request that cannot be served."""
    resp = api.get(f"/render/series/00000000-00000000-00000000-00000000-00000000/mpr?{query}")
    assert resp.status_code == 400, (query, resp.status_code, resp.text)
    assert words in resp.json()["Message"], resp.json()


def test_unknown_series_is_404_and_a_single_image_is_422_naming_the_reason(hub: Any, api: Http,
                                                                           tmp_path: Path) -> None:
    assert api.get("/render/series/00000000-00000000-00000000-00000000-00000000/info").status_code == 404
    assert api.get("/render/series/1.2.3.4/mpr").status_code == 404
    (path,) = write_series(tmp_path / "one", 1, seed="render-single", rows=32, cols=32)
    hub.ingest.store(Origin("import", user="test"), path)
    (sid,) = api.json("/series")
    for route in ("info", "mpr", "mip"):
        resp = api.get(f"/render/series/{sid}/{route}")
        assert resp.status_code == 422, resp.text
        assert resp.json()["Reason"] == "single-image" and "single image" in resp.json()["Message"]


def test_series_by_uid_and_authentication(api: Http, series: str) -> None:
    uid = api.json(f"/series/{series}")["MainDicomTags"]["SeriesInstanceUID"]
    assert api.json(f"/render/series/{uid}/info")["Series"] == series
    assert requests.get(api.url(f"/render/series/{series}/mpr"), timeout=30).status_code == 401


@pytest.mark.parametrize("name", ["rtdose.dcm", "rtdose_rle.dcm"])
def test_a_real_multi_frame_file_renders(hub: Any, api: Http, test_file: Any, name: str) -> None:
    """pydicom's RT Dose (15 frames on a Grid Frame Offset Vector; native and RLE-compressed) is a volume."""
    hub.ingest.store(Origin("import", user="test"), test_file(name))
    (sid,) = api.json("/series")
    info = complete(api, sid)
    assert info["Dimensions"][2] == 15 and info["Complete"] and info["Error"] is None, info
    for route in ("mpr?plane=axial", "mpr?plane=coronal&thickness=10", "mip?azimuth=45&mode=avg"):
        image = grey(api.get(f"/render/series/{sid}/{route}&format=png"))
        assert image.std() > 0, route
