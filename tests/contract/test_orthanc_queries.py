"""``/modalities/{name}/query`` and ``/queries`` against the real Orthanc 1.10.

The hub and Orthanc each query the same C-FIND SCP, the reference Orthanc (declared as ``ref`` in
both), with the same bodies; the identifiers they send must be the same (Orthanc's normalization,
added return keys, manufacturer fixes) since the answers, ``/query``, ``/level``, ``/modality`` and
the answer formats (full, ``?short``, ``?simplify``) are compared as JSON. Retrieval moves the
answers to the hub (declared in Orthanc as ``RISHUB``), as a ``DicomMoveScu`` job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import TEST_FILES
from tests.contract.conftest import Http, OrthancRef
from tests.contract.test_orthanc_modalities import HOST, declared, statuses

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
CT_INSTANCE = "f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af"  # CT_small.dcm's Orthanc id


@pytest.fixture
def both(api: Http, orthanc: OrthancRef, listeners: Any) -> Iterator[tuple[Http, OrthancRef]]:  # noqa: ANN401
    """CT_small and MR_small in Orthanc; Orthanc declared as ``ref`` in the hub and in itself; the
    hub declared in Orthanc as ``rishub``."""
    for name in ("CT_small.dcm", "MR_small.dcm"):
        orthanc.upload(TEST_FILES / name)
    ref = ["ORTHANC", HOST, orthanc.dicom_port]
    with declared(api, "ref", ref), declared(orthanc, "ref", ref), \
            declared(orthanc, "rishub", ["RISHUB", HOST, listeners.dimse.port]):
        yield api, orthanc


def query_both(servers: tuple[Http, Http], body: dict[str, Any], modality: str = "ref") -> tuple[str, str]:
    ids = []
    for s in servers:
        resp = s.post(f"/modalities/{modality}/query", data=json.dumps(body))
        assert resp.status_code == 200, (s.base, resp.text)
        answer = resp.json()
        assert set(answer) == {"ID", "Path"} and answer["Path"] == f"/queries/{answer['ID']}"
        ids.append(answer["ID"])
    return ids[0], ids[1]


QUERIES = [
    {"Level": "Study", "Query": {"PatientID": "*"}},
    {"Level": "study", "Query": {"0010,0020": "1CT1", "StudyDescription": "", "Modality": "CT",
                                 "SeriesInstanceUID": ""}},
    {"Level": "STUDY", "Query": {"StudyDate": "", "ModalitiesInStudy": "", "NumberOfStudyRelatedInstances": ""}},
    {"Level": "Series", "Query": {"StudyInstanceUID": CT_STUDY, "ModalitiesInStudy": "", "Modality": "",
                                  "NumberOfSeriesRelatedInstances": ""}},
    {"Level": "Patient", "Query": {"PatientName": "", "NumberOfPatientRelatedStudies": ""}},
    {"Level": "Patient", "Query": {"PatientName": "*MR*"}},
    {"Level": "Study", "Normalize": False, "Query": {"PatientID": "1CT1", "StudyDate": ""}},
    {"Level": "Study"},
]


@pytest.mark.parametrize("body", QUERIES, ids=[f"q{i}" for i in range(len(QUERIES))])
def test_query_answers_match_orthanc(both: tuple[Http, OrthancRef], body: dict[str, Any]) -> None:
    mine, ref = query_both(both, body)
    api, orthanc = both
    assert api.json(f"/queries/{mine}") == orthanc.json(f"/queries/{ref}")
    for suffix in ("/answers", "/answers?expand", "/answers?expand&simplify", "/answers?expand&short",
                   "/query", "/query?short", "/query?simplify"):
        assert api.json(f"/queries/{mine}{suffix}") == orthanc.json(f"/queries/{ref}{suffix}"), suffix
    for suffix in ("/level", "/modality"):
        a, b = api.get(f"/queries/{mine}{suffix}"), orthanc.get(f"/queries/{ref}{suffix}")
        assert (a.status_code, a.text, a.headers["Content-Type"].split(";")[0]) == \
               (b.status_code, b.text, b.headers["Content-Type"].split(";")[0])
    for i in range(len(api.json(f"/queries/{mine}/answers"))):
        assert api.json(f"/queries/{mine}/answers/{i}") == orthanc.json(f"/queries/{ref}/answers/{i}")
        for fmt in ("", "?simplify", "?short"):
            assert api.json(f"/queries/{mine}/answers/{i}/content{fmt}") == \
                   orthanc.json(f"/queries/{ref}/answers/{i}/content{fmt}")
    assert mine in api.json("/queries") and api.json("/queries") == sorted(api.json("/queries"))


def test_instance_level_answers_match_orthanc_but_for_group_0002(both: tuple[Http, OrthancRef]) -> None:
    """Orthanc's SCP puts (0002,0003) in IMAGE level answers; the hub's SCU drops file meta
    elements from identifiers (they are not part of a C-FIND identifier, PS3.4 C.4.1.1.3)."""
    mine, ref = query_both(both, {"Level": "Instance", "Query": {"StudyInstanceUID": CT_STUDY, "InstanceNumber": ""}})
    api, orthanc = both
    theirs = orthanc.json(f"/queries/{ref}/answers?expand&short")
    assert api.json(f"/queries/{mine}/answers?expand&short") == [
        {k: v for k, v in a.items() if not k.startswith("0002,")} for a in theirs]
    assert api.get(f"/queries/{mine}/level").text == "Instance"


def test_manufacturer_fixes_like_orthanc(both: tuple[Http, OrthancRef]) -> None:
    """GE: universal matching with ``*`` for the added keys (Orthanc's SCP refuses the ``*`` date:
    422 from both); GenericNoUniversalWildcard: every ``*`` sent as empty; GenericNoWildcardInDates:
    ``*`` dates sent as empty. The answers show what reached the SCP."""
    api, orthanc = both
    q = {"Level": "Series", "Query": {"PatientID": "*", "StudyDate": "*", "Modality": ""}}
    for manufacturer, status in (("GE", 422), ("GenericNoUniversalWildcard", 200), ("GenericNoWildcardInDates", 200),
                                 ("Generic", 422)):
        body = ["ORTHANC", HOST, orthanc.dicom_port, manufacturer]
        with declared(api, "man", body), declared(orthanc, "man", body):
            assert statuses(both, "POST", "/modalities/man/query", data=json.dumps(q)) == (status, status)
            if status == 200:
                mine, ref = query_both(both, q, modality="man")
                assert api.json(f"/queries/{mine}/answers?expand&short") == \
                       orthanc.json(f"/queries/{ref}/answers?expand&short"), manufacturer
    with declared(api, "man", ["ORTHANC", HOST, orthanc.dicom_port, "GE"]), \
            declared(orthanc, "man", ["ORTHANC", HOST, orthanc.dicom_port, "GE"]):
        # the added StudyInstanceUID "*" too: Orthanc's SCP takes no wildcard on a UID
        q = {"Level": "Study", "Query": {"PatientID": "1CT1"}}
        assert statuses(both, "POST", "/modalities/man/query", data=json.dumps(q)) == (422, 422)


def test_child_queries_like_orthanc(both: tuple[Http, OrthancRef]) -> None:
    api, orthanc = both
    mine, ref = query_both(both, {"Level": "Patient", "Query": {"PatientID": "1CT1"}})
    # Orthanc 1.10 lists "query-study" but routes "query-studies"; the hub takes both
    for child in ("query-studies", "query-series", "query-instances"):
        a = api.post(f"/queries/{mine}/answers/0/{child}", data=json.dumps({"Query": {}}))
        b = orthanc.post(f"/queries/{ref}/answers/0/{child}", data=json.dumps({"Query": {}}))
        assert (a.status_code, b.status_code) == (200, 200), a.text
        expand = "/answers?expand&short"
        mine_answers = api.json(f"/queries/{a.json()['ID']}{expand}")
        ref_answers = [{k: v for k, v in x.items() if not k.startswith("0002,")}
                       for x in orthanc.json(f"/queries/{b.json()['ID']}{expand}")]
        assert mine_answers == ref_answers, child
        assert api.json(f"/queries/{a.json()['ID']}/query") == orthanc.json(f"/queries/{b.json()['ID']}/query")
    series, ref_series = query_both(both, {"Level": "Series", "Query": {"StudyInstanceUID": CT_STUDY}})
    assert statuses(both, "POST", "/queries/X/answers/0/query-studies", data="{}") == (404, 404)
    a = api.post(f"/queries/{series}/answers/0/query-studies", data="{}")
    b = orthanc.post(f"/queries/{ref_series}/answers/0/query-studies", data="{}")
    assert (a.status_code, b.status_code) == (404, 404)


def test_query_errors_like_orthanc(both: tuple[Http, OrthancRef]) -> None:
    bad = [[], {"Query": {}}, {"Level": "Bogus"}, {"Level": 5}, {"Level": "Study", "Query": []},
           {"Level": "Study", "Query": {"PatientID": 5}}, {"Level": "Study", "Query": {"NoSuchTag": "x"}},
           {"Level": "Study", "Normalize": "no"}]
    for body in bad:
        assert statuses(both, "POST", "/modalities/ref/query", data=json.dumps(body)) == (400, 400), body
    assert statuses(both, "POST", "/modalities/ref/query", data="not json") == (400, 400)
    assert statuses(both, "POST", "/modalities/nope/query", data=json.dumps(QUERIES[0])) == (404, 404)
    for path in ("/queries/nope", "/queries/nope/answers", "/queries/nope/level", "/queries/nope/answers/0/content"):
        assert statuses(both, "GET", path) == (404, 404), path
    mine, ref = query_both(both, QUERIES[0])
    for path in ("/answers/5/content", "/answers/abc/content", "/answers/9"):
        codes = (both[0].get(f"/queries/{mine}{path}").status_code, both[1].get(f"/queries/{ref}{path}").status_code)
        assert codes == (400, 400), path
    for s, qid in zip(both, (mine, ref), strict=True):
        assert s.delete(f"/queries/{qid}").status_code == 200
        assert s.get(f"/queries/{qid}").status_code == 404
        assert qid not in s.json("/queries")


def test_remote_c_find_failures_like_orthanc(both: tuple[Http, OrthancRef], listeners: Any) -> None:  # noqa: ANN401
    """Both query the hub's C-FIND SCP with identifiers it refuses (a key below the level: 0xA900, a
    malformed date: 0xC0xx): the same HTTP status from both SCUs (500: not 0xC000)."""
    api, orthanc = both
    hub = ["RISHUB", HOST, listeners.dimse.port]
    with declared(api, "hubscp", hub), declared(orthanc, "hubscp", hub):
        for query in ({"Level": "Study", "Normalize": False, "Query": {"SOPInstanceUID": "1.2.3"}},
                      {"Level": "Study", "Query": {"StudyDate": "abc"}}):
            a = api.post("/modalities/hubscp/query", data=json.dumps(query))
            b = orthanc.post("/modalities/hubscp/query", data=json.dumps(query))
            assert a.status_code == b.status_code == 500, (a.text, b.text)
            assert a.json()["OrthancStatus"] == b.json()["OrthancStatus"] == 9
        ok = {"Level": "Study", "Query": {"PatientID": ""}}
        assert [s.post("/modalities/hubscp/query", data=json.dumps(ok)).status_code for s in both] == [200, 200]


def test_retrieve_answers_to_the_hub_like_orthanc(both: tuple[Http, OrthancRef]) -> None:
    """``/answers/{n}/retrieve`` and ``/retrieve`` (C-MOVE of the answers to ``RISHUB``): the same
    job ``Content`` as Orthanc's but for our own AE title; the studies arrive in the hub."""
    api, orthanc = both
    mine, ref = query_both(both, {"Level": "Study", "Query": {"PatientID": "1CT1"}})
    a = api.post(f"/queries/{mine}/answers/0/retrieve", data="RISHUB")
    b = orthanc.post(f"/queries/{ref}/answers/0/retrieve", data="RISHUB")
    assert (a.status_code, b.status_code) == (200, 200), a.text
    assert a.json()["LocalAet"] == "RISHUB" and b.json()["LocalAet"] == "ORTHANC"
    assert {**a.json(), "LocalAet": ""} == {**b.json(), "LocalAet": ""}
    assert api.json("/instances") == [CT_INSTANCE], "the CT study arrived, and only it"

    mine, ref = query_both(both, {"Level": "Series", "Query": {"PatientID": "*"}})
    a = api.post(f"/queries/{mine}/retrieve", data=json.dumps({"TargetAet": "RISHUB", "Asynchronous": True}))
    b = orthanc.post(f"/queries/{ref}/retrieve", data=json.dumps({"TargetAet": "RISHUB", "Asynchronous": True}))
    from tests.contract.test_orthanc_modalities import _wait_job

    mine_job, ref_job = _wait_job(api, a.json()["ID"]), _wait_job(orthanc, b.json()["ID"])
    for key in ("State", "Type", "Progress", "ErrorCode", "Priority"):
        assert mine_job[key] == ref_job[key], key
    assert {**mine_job["Content"], "LocalAet": ""} == {**ref_job["Content"], "LocalAet": ""}
    assert sorted(api.json("/instances")) == sorted(orthanc.json("/instances"))

    # a target the remote does not know: Orthanc's SCP answers 0xC000, the job fails, and a job's
    # failure is a plain network error (500), not the 422 of a direct C-MOVE
    a = api.post(f"/queries/{mine}/retrieve", data=json.dumps({"TargetAet": "NOBODY"}))
    b = orthanc.post(f"/queries/{ref}/retrieve", data=json.dumps({"TargetAet": "NOBODY"}))
    assert (a.status_code, b.status_code) == (500, 500)
    assert a.json()["OrthancStatus"] == b.json()["OrthancStatus"] == 9
    assert statuses(both, "POST", "/queries/nope/retrieve", data="RISHUB") == (404, 404)


def test_query_archive_keeps_the_latest_queries() -> None:
    """Orthanc's ``QueryRetrieveSize`` (100): the least recently used query goes first."""
    from hub.services.modalities import RemoteModality
    from interfaces.http.orthanc.modalities_queries import QueryArchive, RemoteQuery

    archive = QueryArchive(size=2)
    m = RemoteModality("ref", "ORTHANC", HOST, 4242)
    a, b, c = (RemoteQuery(m, "Study", {}) for _ in range(3))
    archive.add(a)
    archive.add(b)
    archive.get(a.id)  # used: b is now the oldest
    archive.add(c)
    assert archive.ids() == sorted([a.id, c.id])
    archive.remove(a.id)
    assert archive.ids() == [c.id]
    with pytest.raises(Exception, match="unknown query"):
        archive.get(b.id)
