"""``/jobs`` against the real Orthanc 1.10: the job JSON of the same operations (C-STORE jobs to DCMTK
storescp, to a closed port, to a peer that never answers), the actions in every state, unknown ids,
and a job's output file served like the ``archive`` output of an Orthanc archive job."""

from __future__ import annotations

import json
import re
import socket
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.app import Hub
from hub.services.jobs import JobContext
from tests.conftest import TEST_FILES
from tests.contract.conftest import Http, OrthancRef
from tests.contract.test_orthanc_modalities import HOST, _wait_job, closed_port, declared, statuses, upload_both
from tests.integration.test_dimse_scu import storescp

TIME = re.compile(r"^\d{8}T\d{6}\.\d{6}$")
KEYS = ["CompletionTime", "Content", "CreationTime", "EffectiveRuntime", "ErrorCode", "ErrorDescription",
        "ErrorDetails", "ID", "Priority", "Progress", "State", "Timestamp", "Type"]
UNFINISHED_KEYS = [k for k in KEYS if k != "CompletionTime"]


def submit_store(server: Http, modality: str, resources: list[str], **options: Any) -> str:  # noqa: ANN401
    resp = server.post(f"/modalities/{modality}/store",
                       data=json.dumps({"Resources": resources, "Asynchronous": True, **options}))
    assert resp.status_code == 200, resp.text
    return resp.json()["ID"]


def comparable(job: dict[str, Any]) -> dict[str, Any]:
    """What must be equal between the hub's and Orthanc's JSON of the same job."""
    return {**{k: job[k] for k in ("ErrorCode", "ErrorDescription", "Priority", "Progress", "State", "Type")},
            "Content": {**job["Content"], "LocalAet": ""}, "keys": list(job)}


def wait_state(server: Http, job_id: str, *states: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = server.json(f"/jobs/{job_id}")
        if job["State"] in states or time.monotonic() > deadline:
            return job
        time.sleep(0.02)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A peer that takes TCP connections and never answers an A-ASSOCIATE-RQ."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def test_store_job_json_matches_orthanc(api: Http, orthanc: OrthancRef, tmp_path: Path) -> None:
    ct, mr = upload_both(api, orthanc)
    with storescp(tmp_path / "a", aet="STORESCP") as port, storescp(tmp_path / "b", aet="STORESCP") as ref_port, \
            declared(api, "scp", ["STORESCP", HOST, port]), declared(orthanc, "scp", ["STORESCP", HOST, ref_port]):
        ids = (submit_store(api, "scp", [ct["ParentStudy"], mr["ID"]], Priority=5),
               submit_store(orthanc, "scp", [ct["ParentStudy"], mr["ID"]], Priority=5))
        mine, ref = _wait_job(api, ids[0]), _wait_job(orthanc, ids[1])
    assert comparable(mine) == comparable(ref)
    assert list(mine) == KEYS and mine["State"] == "Success" and mine["Priority"] == 5
    assert mine["ErrorDetails"] == ref["ErrorDetails"] == "" and mine["Content"]["InstancesCount"] == 2
    for key in ("CompletionTime", "CreationTime", "Timestamp"):
        assert TIME.match(mine[key]), (key, mine[key])
    assert isinstance(mine["EffectiveRuntime"], float) and mine["EffectiveRuntime"] >= 0
    assert mine["CreationTime"] <= mine["CompletionTime"] <= mine["Timestamp"]
    assert ids[0] in api.json("/jobs")
    expanded = {j["ID"]: j for j in api.json("/jobs?expand")}
    assert {k: v for k, v in expanded[ids[0]].items() if k != "Timestamp"} == \
           {k: v for k, v in mine.items() if k != "Timestamp"}
    assert api.json("/jobs") == sorted(api.json("/jobs")), "Orthanc lists jobs in id order"


def test_failed_job_and_actions_like_orthanc(api: Http, orthanc: OrthancRef) -> None:
    ct, _ = upload_both(api, orthanc)
    dead = closed_port()
    servers = (api, orthanc)
    with declared(api, "dead", ["DEAD", HOST, dead]), declared(orthanc, "dead", ["DEAD", HOST, dead]):
        ids = [submit_store(s, "dead", [ct["ID"]]) for s in servers]
        mine, ref = _wait_job(api, ids[0]), _wait_job(orthanc, ids[1])
        assert comparable(mine) == comparable(ref)
        assert mine["State"] == "Failure" and mine["ErrorCode"] == 9 and "connection refused" in mine["ErrorDetails"]

        def act(action: str) -> tuple[tuple[int, Any], ...]:
            out = []
            for s, job_id in zip(servers, ids, strict=True):
                resp = s.post(f"/jobs/{job_id}/{action}")
                out.append((resp.status_code, resp.json() if resp.status_code == 200 else None))
            return tuple(out)

        assert act("resume") == ((400, None), (400, None))  # not paused
        assert act("pause") == ((200, {}), (200, {}))  # finished: nothing to do
        assert act("cancel") == ((200, {}), (200, {}))
        assert api.json(f"/jobs/{ids[0]}")["State"] == "Failure"
        assert act("resubmit") == ((200, {}), (200, {}))
        mine, ref = _wait_job(api, ids[0]), _wait_job(orthanc, ids[1])
        assert comparable(mine) == comparable(ref) and mine["State"] == "Failure"

    for action in ("cancel", "pause", "resume", "resubmit"):
        assert statuses(servers, "POST", f"/jobs/nope/{action}") == (400, 400), action
    assert statuses(servers, "GET", "/jobs/nope") == (404, 404)
    assert statuses(servers, "GET", "/jobs/nope/archive") == (404, 404)
    codes = (api.get(f"/jobs/{ids[0]}/archive").status_code, orthanc.get(f"/jobs/{ids[1]}/archive").status_code)
    assert codes == (404, 404), "a store job leaves no output"


def test_success_job_actions_like_orthanc(api: Http, orthanc: OrthancRef) -> None:
    ct, _ = upload_both(api, orthanc)
    ref_aet = ["ORTHANC", HOST, orthanc.dicom_port]
    with declared(api, "ref", ref_aet), declared(orthanc, "ref", ref_aet):
        ids = [submit_store(s, "ref", [ct["ID"]]) for s in (api, orthanc)]
        assert _wait_job(api, ids[0])["State"] == _wait_job(orthanc, ids[1])["State"] == "Success"
    for action, want in (("cancel", 200), ("pause", 200), ("resume", 400), ("resubmit", 400)):
        codes = (api.post(f"/jobs/{ids[0]}/{action}").status_code, orthanc.post(f"/jobs/{ids[1]}/{action}").status_code)
        assert codes == (want, want), action
    assert api.json(f"/jobs/{ids[0]}")["State"] == "Success"


def test_pending_job_pause_resume_cancel_like_orthanc(api: Http, orthanc: OrthancRef, silent_port: int) -> None:
    """Two workers in both: two store jobs to a silent peer keep them busy (until the modality's
    2 s timeout), a third waits Pending; it is paused, resumed, then cancelled (ErrorCode 37)."""
    ct, _ = upload_both(api, orthanc)
    body = {"AET": "MUTE", "Host": HOST, "Port": silent_port, "Timeout": 2}
    servers = (api, orthanc)
    with declared(api, "mute", body), declared(orthanc, "mute", body):
        jobs = [[submit_store(s, "mute", [ct["ID"]]) for _ in range(3)] for s in servers]
        for s, ids in zip(servers, jobs, strict=True):
            for job_id in ids[:2]:
                wait_state(s, job_id, "Running", timeout=5)
        states = [[s.json(f"/jobs/{j}")["State"] for j in ids] for s, ids in zip(servers, jobs, strict=True)]
        assert states[0] == states[1] == ["Running", "Running", "Pending"], states
        last = [ids[2] for ids in jobs]
        for action, state in (("pause", "Paused"), ("resume", "Pending")):
            for s, job_id in zip(servers, last, strict=True):
                assert s.post(f"/jobs/{job_id}/{action}").json() == {}
                assert s.json(f"/jobs/{job_id}")["State"] == state, (s.base, action)
        paused = [s.json(f"/jobs/{j}") for s, j in zip(servers, last, strict=True)]
        assert list(paused[0]) == UNFINISHED_KEYS and list(paused[1]) == UNFINISHED_KEYS
        for s, job_id in zip(servers, last, strict=True):
            assert s.post(f"/jobs/{job_id}/cancel").json() == {}
        mine, ref = (s.json(f"/jobs/{j}") for s, j in zip(servers, last, strict=True))
        assert comparable(mine) == comparable(ref)
        assert (mine["State"], mine["ErrorCode"], mine["ErrorDescription"]) == ("Failure", 37, "This job was canceled")
        assert list(mine) == KEYS and mine["EffectiveRuntime"] == 0.0
        firsts = [wait_state(s, ids[0], "Failure", "Success") for s, ids in zip(servers, jobs, strict=True)]
        assert comparable(firsts[0]) == comparable(firsts[1]) and firsts[0]["ErrorCode"] == 9
        assert firsts[0]["EffectiveRuntime"] >= 1.5


def test_job_output_served_like_an_orthanc_archive(api: Http, orthanc: OrthancRef, hub: Hub, tmp_path: Path) -> None:
    """``GET /jobs/{id}/{output}`` serves what a job attached with ``ctx.set_output`` (here a ZIP as
    the archive jobs leave), with the headers Orthanc gives its ``archive`` output."""
    ct = orthanc.upload(TEST_FILES / "CT_small.dcm")
    ref_job = orthanc.post(f"/studies/{ct['ParentStudy']}/archive", data=json.dumps({"Asynchronous": True})).json()
    _wait_job(orthanc, ref_job["ID"])
    ref = orthanc.get(f"/jobs/{ref_job['ID']}/archive")

    def run(ctx: JobContext) -> dict[str, Any]:
        path = tmp_path / f"{ctx.id}.zip"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("hello.txt", "hi")
        ctx.set_output("archive", path, "application/zip", "archive.zip")
        return {"ArchiveSize": str(path.stat().st_size)}

    job_id = hub.jobs.submit("Archive", run, content={"Description": "REST API"})
    hub.jobs.wait(job_id, 10)
    mine = api.get(f"/jobs/{job_id}/archive")
    assert (mine.status_code, ref.status_code) == (200, 200)
    for header in ("Content-Type", "Content-Disposition"):
        assert mine.headers[header] == ref.headers[header], header
    assert zipfile.ZipFile(tmp_path / f"{job_id}.zip").read("hello.txt") == b"hi"
    assert mine.content == (tmp_path / f"{job_id}.zip").read_bytes()
    assert api.json(f"/jobs/{job_id}")["Type"] == "Archive"
    assert (api.post(f"/jobs/{job_id}/archive").status_code, orthanc.post(f"/jobs/{ref_job['ID']}/archive")
            .status_code) == (405, 405)
    assert api.get(f"/jobs/{job_id}/other").status_code == 404
    assert api.delete(f"/jobs/{job_id}").status_code == orthanc.delete(f"/jobs/{ref_job['ID']}").status_code
