"""``/modalities`` against the real Orthanc 1.10: the registry (PUT/GET/DELETE, ``?expand``,
``/configuration``, error statuses), C-ECHO, C-STORE of archived resources to DCMTK storescp and to
Orthanc, C-MOVE from Orthanc to the hub; and that modalities declared over REST survive a restart and
are seen at once by the DIMSE side (``check_calling`` allow-list, C-MOVE destinations)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove, Verification

from hub.app import Hub
from interfaces.serve import Listeners
from tests.conftest import TEST_FILES, free_port, make_settings
from tests.contract.conftest import ADMIN_PASSWORD, Http, OrthancRef
from tests.integration.test_dimse_scu import dataset_bytes, received, storescp

HOST = "127.0.0.1"
FILES = ["CT_small.dcm", "MR_small.dcm"]


# --------------------------------------------------------------------------- helpers shared with the other files


@contextmanager
def declared(server: Http, name: str, body: Any) -> Iterator[None]:  # noqa: ANN401
    """``PUT /modalities/{name}`` for the duration of the block (the Orthanc reference lives for the
    whole session, so its registry is cleaned up after each use)."""
    resp = server.put(f"/modalities/{name}", data=json.dumps(body))
    assert resp.status_code == 200, resp.text
    try:
        yield
    finally:
        server.delete(f"/modalities/{name}")


def upload_both(api: Http, orthanc: OrthancRef, names: list[str] = FILES) -> list[dict[str, Any]]:
    out = []
    for n in names:
        mine, ref = api.upload(TEST_FILES / n), orthanc.upload(TEST_FILES / n)
        assert mine["ID"] == ref["ID"]
        out.append(mine)
    return out


def hub_dicom_port(api: Http, hub: Hub) -> int:
    return int(api.json("/system")["DicomPort"]) or hub.settings.dicom.port


def closed_port() -> int:
    return free_port()


def statuses(servers: tuple[Http, Http], method: str, path: str, **kwargs: Any) -> tuple[int, int]:  # noqa: ANN401
    return tuple(s.request(method, path, **kwargs).status_code for s in servers)  # type: ignore[return-value]


# --------------------------------------------------------------------------- registry


REGISTRY_BODIES = {
    "short": ["SHORT", "127.0.0.1", 11112],
    "short-ge": ["SHORTGE", "localhost", "4242", "GE"],
    "object": {"AET": "OBJ", "Host": "10.0.0.5", "Port": 104, "Manufacturer": "GenericNoUniversalWildcard",
               "AllowEcho": False, "AllowStore": False, "AllowFindWorklist": False, "AllowTranscoding": False,
               "LocalAet": "LOCAL1", "Timeout": 7, "UseDicomTls": False, "Unknown": "ignored"},
    "commitment": {"AET": "SC", "Host": "h", "Port": "105", "AllowNAction": True, "AllowStorageCommitment": False},
    "obsolete": {"AET": "OLD", "Host": "h", "Port": 1, "Manufacturer": "SyngoVia"},
}


def test_registry_matches_orthanc(api: Http, orthanc: OrthancRef) -> None:
    servers = (api, orthanc)
    names = [f"rishub-test-{k}" for k in REGISTRY_BODIES]
    try:
        for name, body in zip(names, REGISTRY_BODIES.values(), strict=True):
            for s in servers:
                resp = s.put(f"/modalities/{name}", data=json.dumps(body))
                assert resp.status_code == 200 and resp.content == b"", (s.base, resp.text)
        mine, ref = api.json("/modalities?expand"), orthanc.json("/modalities?expand")
        assert {n: mine[n] for n in names} == {n: ref[n] for n in names}
        assert list(mine) == sorted(mine)
        assert [n for n in api.json("/modalities") if n in names] == [n for n in orthanc.json("/modalities")
                                                                         if n in names]
        for name in names:
            assert api.json(f"/modalities/{name}/configuration") == orthanc.json(f"/modalities/{name}/configuration")
        ops = api.json(f"/modalities/{names[0]}")
        assert set(ops) <= set(orthanc.json(f"/modalities/{names[0]}"))
        assert {"echo", "query", "move", "store", "configuration"} <= set(ops)

        # PUT replaces the whole declaration
        for s in servers:
            assert s.put(f"/modalities/{names[2]}", data=json.dumps(["OBJ2", "h", 1])).status_code == 200
        path = f"/modalities/{names[2]}/configuration"
        assert api.json(path) == orthanc.json(path)

        for s in servers:
            assert s.delete(f"/modalities/{names[0]}").status_code == 200
        assert statuses(servers, "DELETE", f"/modalities/{names[0]}") == (404, 404)
        assert statuses(servers, "GET", f"/modalities/{names[0]}/configuration") == (404, 404)
        assert statuses(servers, "GET", f"/modalities/{names[0]}") == (404, 404)
        assert names[0] not in api.json("/modalities")
        err = api.delete(f"/modalities/{names[0]}").json()
        assert err["HttpStatus"] == 404 and err["Method"] == "DELETE"
    finally:
        for name in names:
            orthanc.delete(f"/modalities/{name}")


BAD_BODIES = [
    {"AET": "X", "Host": "h"},  # no Port
    {"Host": "h", "Port": 1},  # no AET
    {"AET": "X", "Host": "h", "Port": 0},
    {"AET": "X", "Host": "h", "Port": 65535},
    {"AET": "X", "Host": "h", "Port": "abc"},
    {"AET": "X", "Host": "h", "Port": 1.5},
    {"AET": "X", "Host": "h", "Port": True},
    {"AET": "X", "Host": "h", "Port": 1, "AllowEcho": "yes"},
    {"AET": "X", "Host": "h", "Port": 1, "Manufacturer": "Nope"},
    {"AET": "X", "Host": "h", "Port": 1, "Manufacturer": "generic"},
    {"AET": "X", "Host": "h", "Port": 1, "Timeout": -1},
    {"AET": "X", "Host": "h", "Port": 1, "LocalAet": 5},
    ["X", "h"],
    ["X", "h", 1, "GE", "extra"],
    [1, 2],
    "str",
]


def test_bad_declarations_are_400_like_orthanc(api: Http, orthanc: OrthancRef) -> None:
    name = "rishub-test-bad"
    try:
        for body in [*BAD_BODIES, "not json"]:
            data = body if body == "not json" else json.dumps(body)
            assert statuses((api, orthanc), "PUT", f"/modalities/{name}", data=data) == (400, 400), body
        assert name not in api.json("/modalities") and name not in orthanc.json("/modalities")
        err = api.put(f"/modalities/{name}", data=json.dumps({"AET": "X", "Host": "h", "Port": 0})).json()
        assert err["HttpStatus"] == 400 and "[1..65534]" in err["Message"]
    finally:
        orthanc.delete(f"/modalities/{name}")


def test_stricter_than_orthanc_on_unusable_declarations(api: Http) -> None:
    """Orthanc 1.10 stores an empty or 20-character AET and an empty host; the hub refuses them
    (no association can use them)."""
    for body in (["", "h", 1], ["X" * 17, "h", 1], ["X", "", 1], ["A\\B", "h", 1]):
        assert api.put("/modalities/bad", data=json.dumps(body)).status_code == 400, body


def test_writes_need_admin(api: Http, hub: Hub) -> None:
    hub.auth.set_password("reader", "reader-pw-123", ("user",))
    reader = Http(api.base, ("reader", "reader-pw-123"))
    assert reader.get("/modalities").status_code == 200
    assert reader.put("/modalities/x", data='["X","h",1]').status_code == 403
    assert reader.post("/modalities/x/echo").status_code == 403
    admin = Http(api.base, ("admin", ADMIN_PASSWORD))
    assert admin.put("/modalities/x", data='["X","h",1]').status_code == 200


# --------------------------------------------------------------------------- persistence and the DIMSE side


def _echo_from(port: int, calling_aet: str) -> bool:
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.network_timeout = 5
    ae.add_requested_context(Verification)
    assoc = ae.associate(HOST, port, ae_title="RISHUB")
    try:
        return assoc.is_established and int(assoc.send_c_echo().Status) == 0
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


@contextmanager
def running(tmp_path: Path, db_url: str, **env: str) -> Iterator[tuple[Hub, Listeners, Http]]:
    hub = Hub.open(make_settings(tmp_path / "data", db_url, **env), upgrade_schema=True)
    ls = Listeners(hub)
    ls.start()
    try:
        yield hub, ls, Http(f"http://{HOST}:{ls.http.port}", ("admin", ADMIN_PASSWORD))
    finally:
        ls.stop()
        hub.close()


def test_rest_declarations_persist_and_reach_the_dimse_side_at_once(tmp_path: Path, db_url: str) -> None:
    """With ``check_calling``, an AE declared over REST may associate at once and one deleted may
    not; a ``[modalities]`` entry deleted over REST stays deleted after a restart."""
    env = {"RISHUB_DICOM_CHECK_CALLING": "1",
           "RISHUB_MODALITIES": json.dumps({"CONF": {"aet": "CONFAE", "host": HOST, "port": 104}})}
    with running(tmp_path, db_url, **env) as (hub, ls, api):
        port = ls.dimse.port
        assert _echo_from(port, "CONFAE") and not _echo_from(port, "NEWAE")
        assert api.put("/modalities/new", data=json.dumps(["NEWAE", HOST, 104])).status_code == 200
        assert _echo_from(port, "NEWAE")
        assert api.put("/modalities/new", data=json.dumps({"AET": "NEWAE", "Host": HOST, "Port": 104,
                                                           "AllowEcho": False})).status_code == 200
        assert not _echo_from(port, "NEWAE"), "AllowEcho false is enforced at once"
        assert api.put("/modalities/new", data=json.dumps(["NEWAE", HOST, 104])).status_code == 200
        assert api.delete("/modalities/CONF").status_code == 200
        assert not _echo_from(port, "CONFAE")
        assert api.json("/modalities") == ["new"]
    with running(tmp_path, db_url, **env) as (hub, ls, api):
        assert api.json("/modalities") == ["new"]
        assert _echo_from(ls.dimse.port, "NEWAE") and not _echo_from(ls.dimse.port, "CONFAE")
        assert api.put("/modalities/CONF", data=json.dumps(["CONFAE", HOST, 11112])).status_code == 200
        assert api.json("/modalities/CONF/configuration")["Port"] == 11112
        assert api.delete("/modalities/new").status_code == 200
    with running(tmp_path, db_url, **env) as (hub, ls, api):
        assert api.json("/modalities") == ["CONF"]
        assert hub.modalities.require("CONF").port == 11112


def test_move_destination_declared_over_rest(tmp_path: Path, db_url: str) -> None:
    """The hub's C-MOVE SCP finds a destination declared a moment ago over REST (PS3.4 C.4.2.1.5:
    unknown destination 0xA801 before)."""
    with running(tmp_path, db_url) as (hub, ls, api):
        api.upload(TEST_FILES / "CT_small.dcm")
        study_uid = str(pydicom.dcmread(TEST_FILES / "CT_small.dcm", stop_before_pixels=True).StudyInstanceUID)
        with storescp(tmp_path / "out", aet="DEST") as dest_port:
            def c_move() -> int:
                ae = AE(ae_title="MOVER")
                ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
                assoc = ae.associate(HOST, ls.dimse.port, ae_title="RISHUB")
                ds = pydicom.Dataset()
                ds.QueryRetrieveLevel, ds.StudyInstanceUID = "STUDY", study_uid
                try:
                    return int(list(assoc.send_c_move(ds, "DEST", StudyRootQueryRetrieveInformationModelMove))[-1][0]
                               .Status)
                finally:
                    assoc.release()
                    ae.shutdown()

            assert c_move() == 0xA801
            assert api.put("/modalities/dest", data=json.dumps(["DEST", HOST, dest_port])).status_code == 200
            assert c_move() == 0x0000
        assert len(received(tmp_path / "out")) == 1


# --------------------------------------------------------------------------- C-ECHO


def test_echo_like_orthanc(api: Http, orthanc: OrthancRef) -> None:
    servers = (api, orthanc)
    dead = closed_port()
    with declared(api, "ref", ["ORTHANC", HOST, orthanc.dicom_port]), \
            declared(orthanc, "ref", ["ORTHANC", HOST, orthanc.dicom_port]), \
            declared(api, "dead", ["DEAD", HOST, dead]), declared(orthanc, "dead", ["DEAD", HOST, dead]):
        for body in (None, "{}", json.dumps({"Timeout": 5}), json.dumps({"CheckFind": False})):
            answers = [s.post("/modalities/ref/echo", data=body) for s in servers]
            assert [(r.status_code, r.json()) for r in answers] == [(200, {}), (200, {})]
        assert statuses(servers, "POST", "/modalities/ref/echo", data="not json") == (400, 400)
        assert statuses(servers, "POST", "/modalities/nope/echo") == (404, 404)
        mine, ref = api.post("/modalities/dead/echo"), orthanc.post("/modalities/dead/echo")
        assert (mine.status_code, ref.status_code) == (500, 500)
        assert {k: mine.json()[k] for k in ("HttpStatus", "OrthancStatus", "OrthancError")} == \
               {k: ref.json()[k] for k in ("HttpStatus", "OrthancStatus", "OrthancError")}
        assert "connection refused" in mine.json()["Message"]


# --------------------------------------------------------------------------- C-STORE


def _same_content(mine: dict[str, Any], ref: dict[str, Any]) -> None:
    """Store/move job contents: equal but for our own AE title."""
    assert mine["LocalAet"] == "RISHUB" and ref["LocalAet"] == "ORTHANC"
    assert {**mine, "LocalAet": ""} == {**ref, "LocalAet": ""}


def test_store_to_storescp_like_orthanc(api: Http, orthanc: OrthancRef, tmp_path: Path) -> None:
    uploaded = upload_both(api, orthanc)
    ct, mr = uploaded
    with storescp(tmp_path / "out", aet="STORESCP") as port, storescp(tmp_path / "ref", aet="STORESCP") as ref_port:
        with declared(api, "scp", ["STORESCP", HOST, port]), declared(orthanc, "scp", ["STORESCP", HOST, ref_port]):
            for body in (ct["ID"], json.dumps(ct["ID"]), json.dumps([ct["ParentStudy"], mr["ParentPatient"]]),
                         json.dumps({"Resources": [ct["ParentSeries"]], "Synchronous": True})):
                mine, ref = (s.post("/modalities/scp/store", data=body) for s in (api, orthanc))
                assert (mine.status_code, ref.status_code) == (200, 200), mine.text
                _same_content(mine.json(), ref.json())
            got = received(tmp_path / "out")  # what the hub sent: the stored data sets, unchanged
            for name in FILES:
                uid = str(pydicom.dcmread(TEST_FILES / name, stop_before_pixels=True).SOPInstanceUID)
                assert dataset_bytes(got[uid]) == dataset_bytes(TEST_FILES / name)

            answer = api.post("/modalities/scp/store", data=json.dumps({"Resources": [ct["ParentStudy"]],
                                                                        "Asynchronous": True})).json()
            assert set(answer) == {"ID", "Path"} and answer["Path"] == f"/jobs/{answer['ID']}"
            job = _wait_job(api, answer["ID"])
            assert job["State"] == "Success" and job["Type"] == "DicomModalityStore" and job["Progress"] == 100

            for body, want in (("not json", 400), (json.dumps({"Resource": []}), 400),
                               (json.dumps({"Resources": "x"}), 400), (json.dumps([1]), 400),
                               (json.dumps(["not-an-id"]), 400), (json.dumps(5), 400),
                               (json.dumps(["0000dead-beef0000-00000000-00000000-00000000"]), 404)):
                assert statuses((api, orthanc), "POST", "/modalities/scp/store", data=body) == (want, want), body
            assert statuses((api, orthanc), "POST", "/modalities/nope/store", data=json.dumps([])) == (404, 404)


def test_store_straight_like_orthanc(api: Http, orthanc: OrthancRef, tmp_path: Path) -> None:
    """``/store-straight``: the body sent as it is, nothing stored in the hub."""
    data = (TEST_FILES / "CT_small.dcm").read_bytes()
    dead = closed_port()
    with storescp(tmp_path / "out", aet="STORESCP") as port, storescp(tmp_path / "ref", aet="STORESCP") as ref_port, \
            declared(api, "scp", ["STORESCP", HOST, port]), declared(orthanc, "scp", ["STORESCP", HOST, ref_port]), \
            declared(api, "dead", ["DEAD", HOST, dead]), declared(orthanc, "dead", ["DEAD", HOST, dead]):
        mine, ref = (s.post("/modalities/scp/store-straight", data=data) for s in (api, orthanc))
        assert (mine.status_code, mine.json()) == (ref.status_code, ref.json()) == (200, {
            "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
            "SOPInstanceUID": "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"})
        assert dataset_bytes(next((tmp_path / "out").iterdir())) == dataset_bytes(TEST_FILES / "CT_small.dcm")
        assert api.json("/instances") == []
        assert statuses((api, orthanc), "POST", "/modalities/scp/store-straight", data=b"garbage") == (400, 400)
        assert statuses((api, orthanc), "POST", "/modalities/dead/store-straight", data=data) == (500, 500)


def _wait_job(server: Http, job_id: str, timeout: float = 30) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout
    while True:
        job = server.json(f"/jobs/{job_id}")
        if job["State"] in ("Success", "Failure") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_store_to_orthanc_and_overrides(api: Http, orthanc: OrthancRef, tmp_path: Path) -> None:
    """The hub sends to the reference Orthanc (which accepts C-STORE from unknown AEs): the same ids
    appear there. ``CalledAet``/``Port`` override the declaration for one call."""
    ct = api.upload(TEST_FILES / "CT_small.dcm")
    with declared(api, "ref", ["WRONG", HOST, closed_port()]):
        resp = api.post("/modalities/ref/store", data=json.dumps({
            "Resources": [ct["ParentStudy"]], "CalledAet": "ORTHANC", "Port": orthanc.dicom_port}))
        assert resp.status_code == 200, resp.text
        assert resp.json()["RemoteAet"] == "ORTHANC" and resp.json()["InstancesCount"] == 1
    assert orthanc.json(f"/instances/{ct['ID']}")["ID"] == ct["ID"]


def test_store_failures_like_orthanc(api: Http, orthanc: OrthancRef, tmp_path: Path) -> None:
    ct, _ = upload_both(api, orthanc)
    dead = closed_port()
    with declared(api, "dead", ["DEAD", HOST, dead]), declared(orthanc, "dead", ["DEAD", HOST, dead]):
        mine, ref = (s.post("/modalities/dead/store", data=ct["ID"]) for s in (api, orthanc))
        assert (mine.status_code, ref.status_code) == (500, 500)
        assert mine.json()["OrthancStatus"] == ref.json()["OrthancStatus"] == 9
        jobs = [s.post("/modalities/dead/store", data=json.dumps({"Resources": [ct["ID"]], "Asynchronous": True}))
                .json()["ID"] for s in (api, orthanc)]
        mine_job, ref_job = _wait_job(api, jobs[0]), _wait_job(orthanc, jobs[1])
        for key in ("State", "ErrorCode", "ErrorDescription", "Progress", "Type", "Priority"):
            assert mine_job[key] == ref_job[key], key
        _same_content(mine_job["Content"], ref_job["Content"])
        assert "connection refused" in mine_job["ErrorDetails"]


def test_store_reports_instances_the_remote_refused(api: Http, tmp_path: Path) -> None:
    """storescp accepting only Implicit VR Little Endian refuses the JPEG 2000 file (no transcoding):
    the job fails, or with ``Permissive`` succeeds and counts it (Orthanc's FailedInstancesCount)."""
    uploaded = [api.upload(TEST_FILES / n) for n in ("CT_small.dcm", "JPEG2000.dcm")]
    ids = [u["ID"] for u in uploaded]
    with storescp(tmp_path / "out", "+xi", aet="IMPLICIT") as port, declared(api, "imp", ["IMPLICIT", HOST, port]):
        resp = api.post("/modalities/imp/store", data=json.dumps(ids))
        assert resp.status_code == 500 and "failed for 1 instance" in resp.json()["Message"]
        resp = api.post("/modalities/imp/store", data=json.dumps({"Resources": ids, "Permissive": True}))
        assert resp.status_code == 200, resp.text
        assert resp.json()["FailedInstancesCount"] == 1 and resp.json()["InstancesCount"] == 2


# --------------------------------------------------------------------------- C-MOVE


def test_move_from_orthanc_to_the_hub_like_orthanc(api: Http, orthanc: OrthancRef, hub: Hub, listeners) -> None:
    """``/modalities/{name}/move``: Orthanc (declared in the hub) sends a study to the hub (declared in
    Orthanc); the answer is ``{}`` as Orthanc 1.10's; bad bodies and failures give Orthanc's statuses."""
    ct = orthanc.upload(TEST_FILES / "CT_small.dcm")
    study_uid = orthanc.json(f"/studies/{ct['ParentStudy']}")["MainDicomTags"]["StudyInstanceUID"]
    servers = (api, orthanc)
    with declared(api, "ref", ["ORTHANC", HOST, orthanc.dicom_port]), \
            declared(orthanc, "ref", ["ORTHANC", HOST, orthanc.dicom_port]), \
            declared(orthanc, "rishub", ["RISHUB", HOST, listeners.dimse.port]):
        body = {"Level": "Study", "Resources": [{"StudyInstanceUID": study_uid}], "TargetAet": "RISHUB"}
        mine, ref = (s.post("/modalities/ref/move", data=json.dumps(body)) for s in servers)
        assert (mine.status_code, mine.json()) == (ref.status_code, ref.json()) == (200, {})
        assert api.json(f"/instances/{ct['ID']}")["ID"] == ct["ID"]

        answer = api.post("/modalities/ref/move", data=json.dumps({**body, "Asynchronous": True})).json()
        job = _wait_job(api, answer["ID"])
        assert job["State"] == "Success" and job["Type"] == "DicomMoveScu"
        assert job["Content"] == {"Description": "REST API", "LocalAet": "RISHUB", "Query": [
            {"0008,0052": "STUDY", "0020,000d": study_uid}], "RemoteAet": "ORTHANC"}

        bad = [{"Level": "Study"}, {"Resources": []}, {"Level": "Bogus", "Resources": []}, [],
               {"Level": "Series", "Resources": [{"StudyInstanceUID": study_uid}]}]
        for b in bad:
            assert statuses(servers, "POST", "/modalities/ref/move", data=json.dumps(b)) == (400, 400), b
        unknown_target = {**body, "TargetAet": "NOBODY"}
        assert statuses(servers, "POST", "/modalities/ref/move", data=json.dumps(unknown_target)) == (422, 422)
        assert statuses(servers, "POST", "/modalities/nope/move", data=json.dumps(body)) == (404, 404)


def test_unreachable_remote_is_500(api: Http) -> None:
    with declared(api, "dead", ["DEAD", HOST, closed_port()]):
        body = {"Level": "Study", "Resources": [{"StudyInstanceUID": "1.2.3"}]}
        resp = api.post("/modalities/dead/move", data=json.dumps(body))
        assert resp.status_code == 500 and resp.json()["OrthancError"] == "Error in the network protocol"


def test_silent_remote_times_out_with_the_modality_timeout(api: Http) -> None:
    """The declaration's ``Timeout`` replaces the [dicom] timeouts for calls to that node."""
    import time

    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen(4)
        with declared(api, "mute", {"AET": "MUTE", "Host": HOST, "Port": silent.getsockname()[1], "Timeout": 1}):
            started = time.monotonic()
            resp = api.post("/modalities/mute/echo")
            assert resp.status_code == 500 and time.monotonic() - started < 10
