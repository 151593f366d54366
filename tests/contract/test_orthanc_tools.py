"""``/tools/find``, ``/tools/lookup``, ``/tools/now`` and ``/tools/generate-uid`` against the real
Orthanc 1.10, on the data set of the resource tests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import UID

from tests.contract.conftest import Http, stable_view
from tests.contract.test_orthanc_resources import upload_all, write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_dataset(tmp_path_factory.mktemp("tools"))


@pytest.fixture
def loaded(api: Http, orthanc: Http, dataset: list[Path]) -> tuple[Http, Http]:
    upload_all((api, orthanc), dataset)
    return api, orthanc


def find(server: Http, body: Any) -> Any:
    resp = server.post("/tools/find", data=json.dumps(body) if not isinstance(body, str) else body)
    assert resp.ok, (body, resp.status_code, resp.text[:300])
    return resp.json()


QUERIES: list[tuple[str, dict[str, str], int]] = [
    # (level, query, expected number of matches)
    ("Patient", {}, 5),
    ("Study", {}, 6),
    ("Series", {}, 7),
    ("Instance", {}, 11),
    ("study", {"PatientName": "*test*"}, 2),
    ("Study", {"PatientName": "resource^test"}, 2),
    ("Study", {"PatientName": "compressed?amples^CT1"}, 1),
    ("Study", {"PatientName": "*"}, 6),
    ("Study", {"PatientName": ""}, 6),
    ("Study", {"PatientID": "rs001"}, 2),
    ("Study", {"PatientID": "RS00*"}, 3),
    ("Patient", {"PatientID": "1CT1\\rs002"}, 2),
    ("Study", {"0010,0020": "1CT1"}, 1),
    ("Study", {"StudyDate": "-20040119"}, 2),
    ("Study", {"StudyDate": "20250101-"}, 3),
    ("Study", {"StudyDate": "20040101-20301231"}, 5),
    ("Study", {"StudyDate": "20250101"}, 1),
    ("Study", {"StudyDate": "garbage"}, 0),
    ("Study", {"StudyTime": "07-08"}, 1),
    ("Study", {"StudyTime": "101500"}, 3),
    ("Study", {"StudyDescription": "ct*"}, 3),
    ("Study", {"StudyDescription": "e+1"}, 1),
    ("Study", {"AccessionNumber": "acc*"}, 3),
    ("Study", {"StudyInstanceUID": "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322\\1.2.3"}, 1),
    ("Study", {"Modality": "CT"}, 0),  # a series tag on studies: Orthanc 1.10 finds nothing
    ("Study", {"SeriesDescription": "*"}, 0),
    ("Patient", {"StudyDescription": "CT*"}, 0),
    ("Study", {"InstitutionName": "jfk*"}, 1),
    ("Series", {"Modality": "mr"}, 2),
    ("Series", {"ModalitiesInStudy": "MR"}, 0),  # only a study-level key for Orthanc 1.10
    ("Patient", {"ModalitiesInStudy": "MR"}, 0),
    ("Series", {"SeriesNumber": "3"}, 1),
    ("Series", {"SeriesNumber": "1\\3"}, 3),
    ("Series", {"SeriesNumber": "x"}, 0),
    ("Series", {"Manufacturer": "RISHUB*"}, 4),
    ("Series", {"BodyPartExamined": "chest"}, 4),
    ("Series", {"PatientName": "Resource^Test", "Modality": "CT"}, 2),
    ("Series", {"ImageOrientationPatient": "1\\0\\0\\0\\1\\0"}, 0),  # a list of six values, none matches
    ("Instance", {"InstanceNumber": "2"}, 3),
    ("Instance", {"SOPInstanceUID": "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"}, 1),
    ("Instance", {"PatientName": "*TEST", "InstanceNumber": "1"}, 3),
    ("Instance", {"ImageComments": "uncompressed"}, 2),
    ("Instance", {"SliceThickness": "5.000000"}, 1),  # not a main tag: matched on the instance
    ("Instance", {"KVP": "120"}, 9),
    ("Study", {"SliceThickness": "1.25"}, 3),
    ("Series", {"WindowCenter": "40", "Modality": "CT"}, 3),
    ("Images", {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.481.5"}, 1),
]


def test_find_is_orthancs(loaded: tuple[Http, Http]):
    """Every query of :data:`QUERIES` (one upload for all): ids, order and expanded JSON."""
    hub, ref = loaded
    wrong = []
    for level, query, count in QUERIES:
        body = {"Level": level, "Query": query}
        ours, theirs = find(hub, body), find(ref, body)
        if ours != theirs or len(ours) != count:
            wrong.append((body, len(ours), len(theirs), count))
        elif stable_view(find(hub, {**body, "Expand": True})) != stable_view(find(ref, {**body, "Expand": True})):
            wrong.append((body, "expanded"))
    assert wrong == []


def test_modalities_in_study(loaded: tuple[Http, Http]):
    """The same studies as Orthanc 1.10, which lists them in another order (not by id, as its other
    study lookups) and ignores Since for this key: the hub keeps its one order and paging."""
    hub, ref = loaded
    for query, count in (({"ModalitiesInStudy": "MR\\CT"}, 5), ({"ModalitiesInStudy": "mr"}, 2),
                         ({"ModalitiesInStudy": "CT", "PatientName": "*test"}, 2)):
        body = {"Level": "Study", "Query": query}
        ours = find(hub, body)
        assert ours == sorted(find(ref, body)) and len(ours) == count, query
        assert find(hub, {**body, "Since": 1, "Limit": 1}) == ours[1:2]
        assert stable_view(find(hub, {**body, "Expand": True})) == stable_view(
            sorted(find(ref, {**body, "Expand": True}), key=lambda s: s["ID"])
        )


def test_find_paging_is_orthancs(loaded: tuple[Http, Http]):
    hub, ref = loaded
    for since, limit in ((0, 1), (1, 2), (2, 0), (5, 3), (20, 1), (2**31 - 1, 1), (1, 2**31 - 1)):
        for level, query in (("Study", {}), ("Instance", {"Modality": "CT"}), ("Study", {"SliceThickness": "1.25"}),
                             ("Series", {"Modality": "*"})):
            body = {"Level": level, "Query": query, "Since": since, "Limit": limit}
            assert find(hub, body) == find(ref, body), body


def test_case_sensitive_find(loaded: tuple[Http, Http]):
    hub, ref = loaded
    for query, count in (({"PatientName": "*test*"}, 0), ({"PatientName": "*Test*"}, 2),
                         ({"StudyDescription": "ct head"}, 0), ({"StudyDescription": "CT head"}, 1),
                         ({"PatientID": "rs001"}, 0), ({"PatientID": "RS001"}, 2)):
        body = {"Level": "Study", "Query": query, "CaseSensitive": True}
        assert find(hub, body) == find(ref, body), query
        assert len(find(hub, body)) == count, query


BAD: list[tuple[str, str]] = [
    ("not json", "The body must contain a JSON object"),
    ("[]", "The body must contain a JSON object"),
    ('{"Query": {}}', 'Field "Level"'),
    ('{"Level": "Bad", "Query": {}}', "Invalid resource type"),
    ('{"Level": "Study"}', 'Field "Query"'),
    ('{"Level": "Study", "Query": {"PatientID": 3}}', "should be associated with a string"),
    ('{"Level": "Study", "Query": {}, "Limit": "2"}', "integer"),
    ('{"Level": "Study", "Query": {}, "Since": 100000000000000000000}', "integer"),
    ('{"Level": "Study", "Query": {}, "Since": -1}', "positive"),
    ('{"Level": "Study", "Query": {"StudyDate": "2004*"}}', "Wildcards are not allowed on tag 0008,0020"),
    ('{"Level": "Study", "Query": {"StudyInstanceUID": "1.2*"}}', "Wildcards"),
    ('{"Level": "Series", "Query": {"SeriesNumber": "1*"}}', "Wildcards"),
    # Orthanc answers these two with a 500; the hub with a 400
    ('{"Level": "Study", "Query": {"Foo": "x"}}', "Unknown DICOM tag"),
    ('{"Level": "Study", "Query": {}, "Expand": "yes"}', "Boolean"),
    ('{"Level": "Study", "Query": {}, "RequestedTags": "PatientName"}', "RequestedTags"),
]


def test_bad_find_requests_are_400(loaded: tuple[Http, Http]):
    hub, ref = loaded
    for body, message in BAD:
        resp = hub.post("/tools/find", data=body)
        assert resp.status_code == 400, body
        error = resp.json()
        assert error["HttpStatus"] == 400 and message in error["Message"] and error["Uri"] == "/tools/find", body
        if "Foo" not in body and "Expand" not in body and "RequestedTags" not in body:
            assert ref.post("/tools/find", data=body).status_code == 400, body


def test_lookup_is_orthancs(loaded: tuple[Http, Http]):
    hub, ref = loaded
    values = ["1CT1", "rs001", " RS002 ", "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322",
              "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322", "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322",
              "nothing", ""]
    for value in values:
        ours = hub.post("/tools/lookup", data=value)
        assert ours.status_code == 200
        assert ours.json() == ref.post("/tools/lookup", data=value).json(), value
    assert [r["Type"] for r in hub.post("/tools/lookup", data="1CT1").json()] == ["Patient"]


def test_now_and_generate_uid(loaded: tuple[Http, Http]):
    hub, ref = loaded
    for path in ("/tools/now", "/tools/now-local"):
        resp = hub.get(path)
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/plain")
        assert re.fullmatch(r"\d{8}T\d{6}", resp.text)
        assert abs(int(resp.text[9:13]) - int(ref.get(path).text[9:13])) <= 1 or resp.text[9:11] != "00"
    patient = hub.get("/tools/generate-uid?level=patient").text
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", patient)
    uids = {hub.get(f"/tools/generate-uid?level={lvl}").text for lvl in ("study", "series", "instance", "Study")}
    assert len(uids) == 4 and all(UID(u).is_valid for u in uids)
    for bad in ("", "?level=foo"):
        resp = hub.get(f"/tools/generate-uid{bad}")
        assert resp.status_code == 400 and resp.json()["HttpStatus"] == 400  # Orthanc: an empty 404


def test_a_reader_may_find_but_not_delete(loaded: tuple[Http, Http], hub: Any):
    api, _ = loaded
    hub.auth.set_password("reader", "reader-pw-123", ("user",))
    reader = Http(api.base, ("reader", "reader-pw-123"))
    assert reader.post("/tools/find", data='{"Level": "Patient", "Query": {}}').status_code == 200
    assert reader.post("/tools/lookup", data="1CT1").status_code == 200
    pid = reader.json("/patients")[0]
    assert reader.delete(f"/patients/{pid}").status_code == 403
    assert pid in api.json("/patients")


def test_candidates_for_file_tags_are_read_in_pages(loaded: tuple[Http, Http], hub: Any):
    """The candidates of a query on tags outside the index come in keyset pages, in find order."""
    from hub.domain.query import Query, QueryLevel

    repo = hub.resources.repository
    for level in (QueryLevel.PATIENT, QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE):
        paged = [pid for pid, dataset in repo.find_with_dataset(Query(level), page=2) if dataset]
        assert paged == repo.find(Query(level)), level
