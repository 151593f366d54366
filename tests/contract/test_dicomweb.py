"""DICOMweb driven by the third-party ``dicomweb-client``: STOW, QIDO at every level, WADO-RS
retrieve and metadata with resolvable bulk data URIs, WADO-URI; and the 4xx answers to bad input."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from hub.app import Hub
from hub.domain import Origin
from tests.conftest import TEST_FILES
from tests.contract.conftest import Http
from tests.synthetic import write_series

FILES = ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm"]


@pytest.fixture
def client(api: Http) -> DICOMwebClient:
    session = requests.Session()
    session.auth = api.session.auth
    return DICOMwebClient(url=f"{api.base}/dicom-web", session=session)


def _read(name: str) -> Dataset:
    return pydicom.dcmread(TEST_FILES / name)


def _multipart(parts: list[tuple[str, bytes]], boundary: str = "b0undary") -> tuple[bytes, str]:
    body = b"".join(f"--{boundary}\r\nContent-Type: {ct}\r\n\r\n".encode() + data + b"\r\n" for ct, data in parts)
    return body + f"--{boundary}--\r\n".encode(), f'multipart/related; type="application/dicom"; boundary={boundary}'


def test_store_search_retrieve_round_trip(client: DICOMwebClient, tmp_path: Path) -> None:
    series = [pydicom.dcmread(p) for p in write_series(tmp_path / "ct", 5, rows=16, cols=16, seed="dw")]
    datasets = [_read(n) for n in FILES] + series
    answer = client.store_instances(datasets)
    stored = answer.ReferencedSOPSequence
    assert len(stored) == len(datasets) and "FailedSOPSequence" not in answer
    assert {i.ReferencedSOPInstanceUID for i in stored} == {d.SOPInstanceUID for d in datasets}

    studies = client.search_for_studies()
    assert len(studies) == len({d.StudyInstanceUID for d in datasets})
    ct = client.search_for_studies(search_filters={"PatientID": series[0].PatientID})
    assert len(ct) == 1
    study = Dataset.from_json(ct[0])
    assert study.StudyInstanceUID == series[0].StudyInstanceUID
    assert study.NumberOfStudyRelatedInstances == 5 and study.ModalitiesInStudy == "CT"
    assert study.RetrieveURL.endswith(f"/dicom-web/studies/{study.StudyInstanceUID}")
    by_name = client.search_for_studies(search_filters={"PatientName": str(series[0].PatientName)[:3].lower()},
                                        fuzzymatching=True)
    assert study.StudyInstanceUID in {Dataset.from_json(s).StudyInstanceUID for s in by_name}

    found_series = client.search_for_series(study.StudyInstanceUID)
    assert [Dataset.from_json(s).SeriesInstanceUID for s in found_series] == [series[0].SeriesInstanceUID]
    instances = client.search_for_instances(study.StudyInstanceUID, series[0].SeriesInstanceUID,
                                            search_filters={"InstanceNumber": "3"})
    assert [Dataset.from_json(i).SOPInstanceUID for i in instances] == [series[2].SOPInstanceUID]
    everywhere = client.search_for_instances(limit=2, offset=1)
    assert len(everywhere) == 2

    got = client.retrieve_series(study.StudyInstanceUID, series[0].SeriesInstanceUID,
                                 media_types=(("application/dicom", "*"),))
    assert sorted(d.SOPInstanceUID for d in got) == sorted(d.SOPInstanceUID for d in series)
    assert {d.SOPInstanceUID: d.PixelData for d in got} == {d.SOPInstanceUID: d.PixelData for d in series}

    ct_small = _read("CT_small.dcm")
    one = client.retrieve_instance(ct_small.StudyInstanceUID, ct_small.SeriesInstanceUID, ct_small.SOPInstanceUID)
    assert one.PixelData == ct_small.PixelData and one.PatientName == ct_small.PatientName


def test_metadata_from_the_index_with_resolvable_bulk_data(client: DICOMwebClient, api: Http) -> None:
    ds = _read("CT_small.dcm")
    client.store_instances([ds])
    meta = client.retrieve_series_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert len(meta) == 1
    pixel = meta[0]["7FE00010"]
    uri = pixel["BulkDataURI"]
    assert uri.startswith(f"{api.base}/dicom-web/studies/{ds.StudyInstanceUID}/series/")
    assert Dataset.from_json({k: v for k, v in meta[0].items() if k != "7FE00010"}).PatientID == ds.PatientID
    data = client.retrieve_bulkdata(uri)
    assert data[0] == ds.PixelData
    resp = api.get(f"/dicom-web/studies/{ds.StudyInstanceUID}/metadata", headers={"Accept-Encoding": "gzip"})
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/dicom+json"
    etag = resp.headers["ETag"]
    again = api.get(f"/dicom-web/studies/{ds.StudyInstanceUID}/metadata", headers={"If-None-Match": etag})
    assert again.status_code == 304
    since = api.get(f"/dicom-web/studies/{ds.StudyInstanceUID}/metadata",
                    headers={"If-Modified-Since": resp.headers["Last-Modified"]})
    assert since.status_code == 304


PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "pacs.example", "X-Forwarded-Prefix": "/archive"}


def test_absolute_urls_follow_a_trusted_reverse_proxy_only(client: DICOMwebClient, api: Http, tmp_path: Path,
                                                          db_url: str) -> None:
    ds = _read("MR_small.dcm")
    client.store_instances([ds])
    url = Dataset.from_json(api.get("/dicom-web/studies", headers=PROXY).json()[0]).RetrieveURL
    assert url == f"{api.base}/dicom-web/studies/{ds.StudyInstanceUID}"  # an untrusted client's headers are ignored

    from interfaces.serve import Listeners
    from tests.conftest import make_settings

    behind = Hub.open(make_settings(tmp_path / "proxied", db_url, RISHUB_HTTP_TRUSTED_PROXY="127.0.0.1"),
                      upgrade_schema=True)
    listeners = Listeners(behind)
    listeners.start()
    try:
        behind.ingest.store(Origin("import"), TEST_FILES / "MR_small.dcm")
        proxied = Http(f"http://127.0.0.1:{listeners.http.port}", api.session.auth)  # type: ignore[arg-type]
        url = Dataset.from_json(proxied.get("/dicom-web/studies", headers=PROXY).json()[0]).RetrieveURL
        assert url == f"https://pacs.example/archive/dicom-web/studies/{ds.StudyInstanceUID}"
    finally:
        listeners.stop()
        behind.close()


def test_wado_uri_and_transcoding(client: DICOMwebClient, api: Http) -> None:
    ds = _read("MR_small_implicit.dcm")
    client.store_instances([ds])
    uids = f"studyUID={ds.StudyInstanceUID}&seriesUID={ds.SeriesInstanceUID}&objectUID={ds.SOPInstanceUID}"
    resp = api.get(f"/wado?requestType=WADO&{uids}&contentType=application/dicom")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/dicom"
    assert pydicom.dcmread(BytesIO(resp.content)).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    explicit = api.get(f"/wado?requestType=WADO&{uids}&contentType=application/dicom"
                       "&transferSyntax=1.2.840.10008.1.2.1")
    got = pydicom.dcmread(BytesIO(explicit.content))
    assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1" and got.PixelData == ds.PixelData
    rle = _read("MR_small_RLE.dcm")
    client.store_instances([rle])
    decoded = client.retrieve_instance(rle.StudyInstanceUID, rle.SeriesInstanceUID, rle.SOPInstanceUID,
                                       media_types=(("application/dicom", "1.2.840.10008.1.2.1"),))
    assert decoded.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert decoded.pixel_array.tolist() == rle.pixel_array.tolist()
    assert api.get("/wado?requestType=WADO&studyUID=1.2&seriesUID=1.3&objectUID=1.4"
                   "&contentType=application/dicom").status_code == 404
    assert api.get(f"/wado?requestType=NOPE&{uids}").status_code == 400


def test_stow_bad_parts_are_refused_and_good_parts_kept(api: Http, hub: Hub) -> None:
    good = (TEST_FILES / "CT_small.dcm").read_bytes()
    body, ctype = _multipart([("application/dicom", b"this is not DICOM"), ("application/dicom", good)])
    resp = api.post("/dicom-web/studies", data=body, headers={"Content-Type": ctype})
    assert resp.status_code == 202, resp.text
    answer = Dataset.from_json(resp.json())
    assert len(answer.ReferencedSOPSequence) == 1 and len(answer.FailedSOPSequence) == 1
    assert answer.FailedSOPSequence[0].FailureReason == 0xC000
    assert hub.index.statistics()["instances"] == 1

    wrong_study, ctype = _multipart([("application/dicom", good)])
    resp = api.post("/dicom-web/studies/1.2.3.4", data=wrong_study, headers={"Content-Type": ctype})
    assert resp.status_code == 409 and Dataset.from_json(resp.json()).FailedSOPSequence[0].FailureReason == 0xA900

    resp = api.post("/dicom-web/studies", data=good, headers={"Content-Type": "application/dicom"})
    assert resp.status_code == 415
    resp = api.post("/dicom-web/studies", data=b"--nope\r\nbroken",
                    headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=other'})
    assert resp.status_code == 400
    assert hub.index.statistics()["instances"] == 1


@pytest.mark.parametrize(("path", "status"), [
    ("/dicom-web/studies?NoSuchKeyword=1", 400),
    ("/dicom-web/studies?limit=-1", 400),
    ("/dicom-web/studies?StudyDate=2020-01-01-x", 400),
    ("/dicom-web/studies?SOPInstanceUID=1.2", 400),
    ("/dicom-web/studies/1.2.103673031343433195971437890369112581189/metadata", 404),
    ("/dicom-web/studies/1.2.3", 404),
    ("/dicom-web/studies/not-a-uid/metadata", 400),
    ("/dicom-web/studies/1.2.3/series/1..2/instances", 400),
    ("/dicom-web/studies/1.2.3/series/x/instances/1.2/frames/1", 400),
])
def test_bad_queries_get_4xx(api: Http, path: str, status: int) -> None:
    resp = api.get(path)
    assert resp.status_code == status, resp.text
    assert resp.json()["HttpStatus"] == status


def test_accept_negotiation(client: DICOMwebClient, api: Http) -> None:
    client.store_instances([_read("CT_small.dcm")])
    resp = api.get("/dicom-web/studies", headers={"Accept": "application/xml;q=1, application/json;q=0.5"})
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    assert api.get("/dicom-web/studies", headers={"Accept": "application/xml"}).status_code == 406


def test_frames_native_encapsulated_and_decoded(client: DICOMwebClient, api: Http) -> None:
    from pydicom.encaps import get_frame

    ct, dose, j2k, rle = (_read(n) for n in ("CT_small.dcm", "rtdose.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm"))
    client.store_instances([ct, dose, j2k, rle])

    def frames(ds: Dataset, numbers: list[int], media: tuple = ()) -> list[bytes]:
        return client.retrieve_instance_frames(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
                                               frame_numbers=numbers, media_types=media or None)

    assert frames(ct, [1]) == [ct.PixelData]
    size = dose.Rows * dose.Columns * dose.BitsAllocated // 8
    assert frames(dose, [2, 5]) == [dose.PixelData[size : 2 * size], dose.PixelData[4 * size : 5 * size]]
    stored = frames(j2k, [1], (("application/octet-stream", "*"),))
    assert stored == [get_frame(j2k.PixelData, 0, number_of_frames=1)]
    decoded = frames(rle, [1], (("application/octet-stream", "1.2.840.10008.1.2.1"),))
    assert decoded == [rle.pixel_array.astype("<i2" if rle.PixelRepresentation else "<u2").tobytes()]
    base = f"/dicom-web/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}"
    quirk = api.get(f"{base}/frames/1", headers={"Accept": 'multipart/related; type="*/*"'})
    assert quirk.status_code == 200 and ct.PixelData in quirk.content
    assert api.get(f"{base}/frames/2").status_code == 404
    assert api.get(f"{base}/frames/x").status_code == 400
    assert api.get(f"{base}/frames/1", headers={"Accept": "image/png"}).status_code == 406


def test_rendered_thumbnail_and_wado_uri_images(client: DICOMwebClient, api: Http) -> None:
    import numpy as np
    from PIL import Image

    ct = _read("CT_small.dcm")
    client.store_instances([ct])
    base = f"/dicom-web/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}"

    def image(path: str, **headers: str) -> Image.Image:
        resp = api.get(path, headers=headers)
        assert resp.status_code == 200, (path, resp.status_code, resp.text[:200])
        return Image.open(BytesIO(resp.content))

    jpeg = image(f"{base}/rendered")
    assert jpeg.format == "JPEG" and jpeg.size == (ct.Columns, ct.Rows)
    png = image(f"{base}/rendered?accept=image/png&viewport=64,64")
    assert png.format == "PNG" and png.size == (64, 64)
    narrow = np.asarray(image(f"{base}/frames/1/rendered?window=40,80", Accept="image/png"))
    wide = np.asarray(image(f"{base}/frames/1/rendered?window=40,4000", Accept="image/png"))
    assert narrow.std() > wide.std()  # a narrow window spreads the soft tissue over more grey levels
    # the render service's window (PS3.3 C.11.2.1.2.1) on the modality values, pixel for pixel
    from hub.render import window

    hu = ct.pixel_array.astype(np.float32) * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
    exact = np.asarray(image(f"{base}/frames/1/rendered?window=40,400", Accept="image/png"))
    assert np.array_equal(exact, window.apply(hu, 40, 400))
    assert image(f"/dicom-web/studies/{ct.StudyInstanceUID}/thumbnail").size[0] <= 128
    assert image(f"/dicom-web/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}/thumbnail").format == "JPEG"
    uids = f"studyUID={ct.StudyInstanceUID}&seriesUID={ct.SeriesInstanceUID}&objectUID={ct.SOPInstanceUID}"
    assert image(f"/wado?requestType=WADO&{uids}").format == "JPEG"  # image/jpeg is WADO-URI's default
    small = image(f"/wado?requestType=WADO&{uids}&contentType=image/png&rows=32&columns=32")
    assert small.format == "PNG" and small.size == (32, 32)
    assert api.get(f"{base}/rendered?window=40").status_code == 400
    assert api.get(f"{base}/rendered?viewport=0,10").status_code == 400
    assert api.get(f"{base}/rendered", headers={"Accept": "image/gif"}).status_code == 406
    assert api.get(f"{base}/frames/2/rendered").status_code == 404


def test_rendered_through_dicomweb_client(client: DICOMwebClient, tmp_path: Path) -> None:
    from PIL import Image

    series = [pydicom.dcmread(p) for p in write_series(tmp_path / "r", 3, rows=32, cols=32, seed="rendered")]
    client.store_instances(series)
    s = series[0]
    one = client.retrieve_instance_rendered(s.StudyInstanceUID, s.SeriesInstanceUID, s.SOPInstanceUID,
                                            media_types=("image/png",))
    assert Image.open(BytesIO(one)).size == (32, 32)
    frame = client.retrieve_instance_frames_rendered(s.StudyInstanceUID, s.SeriesInstanceUID, s.SOPInstanceUID,
                                                     frame_numbers=[1], media_types=("image/jpeg",))
    assert Image.open(BytesIO(frame)).format == "JPEG"
    whole = client.retrieve_series_rendered(s.StudyInstanceUID, s.SeriesInstanceUID, media_types=("image/jpeg",))
    assert Image.open(BytesIO(whole)).format == "JPEG"


def test_series_rendered_as_multipart(client: DICOMwebClient, api: Http, tmp_path: Path) -> None:
    series = [pydicom.dcmread(p) for p in write_series(tmp_path / "m", 3, rows=16, cols=16, seed="multi")]
    client.store_instances(series)
    s = series[0]
    resp = api.get(f"/dicom-web/studies/{s.StudyInstanceUID}/series/{s.SeriesInstanceUID}/rendered",
                   headers={"Accept": 'multipart/related; type="image/png"'})
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith('multipart/related; type="image/png"')
    assert resp.content.count(b"Content-Type: image/png") == 3


def test_stow_with_header_parsing_in_worker_processes(tmp_path: Path, db_url: str) -> None:
    """The production path: headers parsed in worker processes, parts indexed in group commits.
    A part refused in a worker (no SOP Instance UID), one of another study, a repeated instance and
    good slices in one request: each gets its own answer, and only the good ones are stored."""
    from interfaces.serve import Listeners
    from tests.conftest import make_settings

    h = Hub.open(make_settings(tmp_path / "data", db_url, RISHUB_STORAGE_PARSE_WORKERS="1"), upgrade_schema=True)
    ls = Listeners(h)
    ls.start()
    try:
        api = Http(f"http://127.0.0.1:{ls.http.port}", ("admin", "admin-secret-pw"))
        slices = [p.read_bytes() for p in write_series(tmp_path / "s", 6, seed="stow-workers")]
        study = pydicom.dcmread(BytesIO(slices[0]), stop_before_pixels=True).StudyInstanceUID
        no_uid = pydicom.dcmread(BytesIO(slices[0]))
        del no_uid.SOPInstanceUID
        buf = BytesIO()
        no_uid.save_as(buf, enforce_file_format=True)
        other = (TEST_FILES / "CT_small.dcm").read_bytes()
        parts = [("application/dicom", s) for s in slices] + [("application/dicom", slices[2]),
                                                                ("application/dicom", buf.getvalue()),
                                                                ("application/dicom", other)]
        body, ctype = _multipart(parts)
        resp = api.post(f"/dicom-web/studies/{study}", data=body, headers={"Content-Type": ctype})
        assert resp.status_code == 202, resp.text
        answer = Dataset.from_json(resp.json())
        assert len(answer.ReferencedSOPSequence) == 7  # six slices and the repeat of one (kept, as stored)
        assert sorted(int(i.FailureReason) for i in answer.FailedSOPSequence) == [0xA900, 0xA900]
        assert h.index.statistics()["instances"] == 6
        for s in slices:
            ds = pydicom.dcmread(BytesIO(s), stop_before_pixels=True)
            sop = ds.SOPInstanceUID
            got = api.get(f"/dicom-web/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{sop}/metadata")
            assert got.status_code == 200 and got.json()[0]["00080018"]["Value"] == [sop]
    finally:
        ls.stop()
        h.close()
