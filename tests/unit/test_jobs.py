"""The job service (Orthanc's jobs engine): states, priority order, pause/resume, cancel, resubmit,
retry, outputs, history, and the Synchronous/Asynchronous request semantics. Real worker threads;
jobs are coordinated with events, never with sleeps that guess."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.errors import HubError
from hub.services.jobs import JobCanceled, JobContext, JobService, JobState, RetryLater

WAIT = 10.0


@pytest.fixture
def jobs() -> Iterator[JobService]:
    service = JobService(workers=1, history=10)
    yield service
    service.shutdown()


def wait_state(jobs: JobService, job_id: str, *states: JobState) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        info = jobs.get(job_id)
        if info is not None and info.state in states:
            return
        time.sleep(0.005)
    raise AssertionError(f"job {job_id} stayed {jobs.get(job_id)}")


class Gate:
    """A job body that runs until the test opens the gate, calling ``ctx.check()`` meanwhile."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.runs = 0

    def __call__(self, ctx: JobContext) -> dict:
        self.runs += 1
        ctx.memo["runs"] = ctx.memo.get("runs", 0) + 1
        self.started.set()
        while not self.release.wait(0.005):
            ctx.check()
        return {"Runs": ctx.memo["runs"]}


def test_success_merges_content_and_reports_completion(jobs: JobService) -> None:
    def run(ctx: JobContext) -> dict:
        ctx.progress(1, 4)
        ctx.update(Half=True)
        return {"Answer": 42}

    job_id = jobs.submit("Test", run, priority=3, content={"Description": "REST API"})
    info = jobs.wait(job_id, WAIT)
    assert info.state == JobState.SUCCESS and info.progress == 100
    assert info.content == {"Description": "REST API", "Half": True, "Answer": 42}
    assert info.completed is not None and info.completed >= info.created and info.runtime >= 0
    assert info.priority == 3 and info.type == "Test" and info.error is None
    assert [j.id for j in jobs.list()] == [job_id]


def test_highest_priority_runs_first_then_submission_order(jobs: JobService) -> None:
    gate, order = Gate(), []
    blocker = jobs.submit("Block", gate)
    assert gate.started.wait(WAIT)
    ids = {p: jobs.submit("P", lambda ctx, p=p: order.append(p), priority=p) for p in (1, 5, 3, 5)}
    assert {jobs.get(i).state for i in ids.values()} == {JobState.PENDING}
    gate.release.set()
    for job_id in ids.values():
        jobs.wait(job_id, WAIT)
    assert order == [5, 5, 3, 1]
    assert jobs.get(blocker).state == JobState.SUCCESS


def test_pause_and_resume_pending_and_running_jobs(jobs: JobService) -> None:
    gate = Gate()
    running = jobs.submit("Gate", gate)
    assert gate.started.wait(WAIT)
    pending = jobs.submit("Later", lambda ctx: None)
    assert jobs.pause(pending) and jobs.get(pending).state == JobState.PAUSED
    assert jobs.pause(running)
    wait_state(jobs, running, JobState.PAUSED)  # stopped at its next check()
    wait_state(jobs, pending, JobState.PAUSED)
    assert not jobs.resume("no-such-job") and not jobs.pause("no-such-job")
    gate.release.set()
    assert jobs.resume(running) and jobs.resume(pending)
    assert jobs.wait(running, WAIT).content == {"Runs": 2}  # run again, memo kept across the pause
    assert jobs.wait(pending, WAIT).state == JobState.SUCCESS
    assert not jobs.resume(running), "only a paused job can be resumed"
    assert jobs.pause(running) and jobs.get(running).state == JobState.SUCCESS  # finished: left alone


def test_cancel_pending_and_running_jobs(jobs: JobService) -> None:
    gate = Gate()
    running = jobs.submit("Gate", gate)
    assert gate.started.wait(WAIT)
    pending = jobs.submit("Later", lambda ctx: None)
    assert jobs.cancel(pending)
    info = jobs.get(pending)
    assert info.state == JobState.FAILURE and info.canceled and info.completed is not None
    assert jobs.cancel(running)
    info = jobs.wait(running, WAIT)
    assert info.state == JobState.FAILURE and info.canceled and info.error is None
    assert not jobs.cancel("no-such-job")
    assert jobs.cancel(pending), "cancelling a finished job is accepted and changes nothing"


def test_failure_then_resubmit_runs_again_from_scratch(jobs: JobService) -> None:
    attempts = []

    def flaky(ctx: JobContext) -> dict:
        attempts.append(dict(ctx.memo))
        ctx.memo["seen"] = True
        if len(attempts) == 1:
            raise HubError("remote_failure", "remote refused")
        return {"Attempts": len(attempts)}

    job_id = jobs.submit("Flaky", flaky)
    info = jobs.wait(job_id, WAIT)
    assert info.state == JobState.FAILURE and info.error.code == "remote_failure" and not info.canceled
    assert info.error.message == "remote refused"
    assert jobs.resubmit(job_id)
    info = jobs.wait(job_id, WAIT)
    assert info.state == JobState.SUCCESS and info.content == {"Attempts": 2}
    assert attempts == [{}, {}], "resubmit empties the memo"
    assert not jobs.resubmit(job_id), "only a failed job can be resubmitted"


def test_a_bug_in_a_job_is_an_internal_failure_and_the_worker_lives_on(jobs: JobService) -> None:
    bad = jobs.submit("Bug", lambda ctx: 1 / 0)
    info = jobs.wait(bad, WAIT)
    assert info.state == JobState.FAILURE and info.error.code == "internal"
    assert "ZeroDivisionError" in info.error.message
    assert jobs.wait(jobs.submit("Fine", lambda ctx: {"ok": 1}), WAIT).state == JobState.SUCCESS


def test_retry_later_comes_back_pending(jobs: JobService) -> None:
    calls = []
    seen_retry = threading.Event()

    def run(ctx: JobContext) -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RetryLater(0.3)

    job_id = jobs.submit("Retry", run)

    def watch() -> None:
        wait_state(jobs, job_id, JobState.RETRY)
        seen_retry.set()

    threading.Thread(target=watch, daemon=True).start()
    assert jobs.wait(job_id, WAIT).state == JobState.SUCCESS
    assert seen_retry.wait(WAIT) and len(calls) == 2 and calls[1] - calls[0] >= 0.25


def test_outputs_and_history_limit(tmp_path: Path) -> None:
    jobs = JobService(workers=2, history=3)
    try:
        files = []

        def make(i: int):  # noqa: ANN202
            def run(ctx: JobContext) -> None:
                path = tmp_path / f"out{i}.zip"
                path.write_bytes(b"PK")
                files.append(path)
                ctx.set_output("archive", path, "application/zip", "archive.zip")
            return run

        ids = []
        for i in range(5):
            ids.append(jobs.submit("Archive", make(i)))
            jobs.wait(ids[-1], WAIT)
        assert [j.id for j in jobs.list()] == sorted(ids[2:])
        out = jobs.output(ids[-1], "archive")
        assert out.path == tmp_path / "out4.zip" and out.content_type == "application/zip"
        assert out.filename == "archive.zip" and jobs.get(ids[-1]).outputs == ("archive",)
        assert jobs.output(ids[0], "archive") is None and jobs.get(ids[0]) is None
        assert [p.exists() for p in files] == [False, False, True, True, True]
        assert jobs.output(ids[-1], "nope") is None
    finally:
        jobs.shutdown()


def test_submit_request_synchronous_and_asynchronous(jobs: JobService) -> None:
    def run(ctx: JobContext) -> dict:
        return {"Done": True}

    assert jobs.submit_request({}, "T", run, content={"A": 1}) == {"A": 1, "Done": True}
    answer = jobs.submit_request({"Asynchronous": True, "Priority": 7}, "T", run)
    assert set(answer) == {"ID", "Path"} and answer["Path"] == f"/jobs/{answer['ID']}"
    assert jobs.wait(answer["ID"], WAIT).priority == 7
    # Synchronous wins over Asynchronous; a non-object body keeps the route's default
    assert "ID" in jobs.submit_request({"Synchronous": False, "Asynchronous": False}, "T", run)
    assert "ID" in jobs.submit_request(["x"], "T", run, default_synchronous=False)
    assert jobs.submit_request({}, "T", run, synchronous_answer=lambda content: {}) == {}
    for body in ({"Synchronous": "yes"}, {"Asynchronous": 1}, {"Priority": "high"}, {"Priority": True}):
        with pytest.raises(HubError) as info:
            jobs.submit_request(body, "T", run)
        assert info.value.code == "bad_request"


def test_synchronous_request_raises_the_job_failure(jobs: JobService) -> None:
    def fail(ctx: JobContext) -> None:
        raise HubError("unknown_resource", "gone")

    with pytest.raises(HubError, match="gone") as info:
        jobs.submit_request({}, "T", fail)
    assert info.value.code == "unknown_resource"
    failed = [j for j in jobs.list() if j.state == JobState.FAILURE]
    assert len(failed) == 1, "a synchronous job is listed like any other"

    gate = Gate()
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            jobs.submit_request({}, "T", gate)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert gate.started.wait(WAIT)
    running = [j.id for j in jobs.list() if j.state == JobState.RUNNING]
    assert jobs.cancel(running[0])
    caller.join(WAIT)
    assert len(outcome) == 1 and isinstance(outcome[0], JobCanceled)


def test_shutdown_stops_the_workers() -> None:
    jobs = JobService(workers=2)
    jobs.wait(jobs.submit("T", lambda ctx: None), WAIT)
    threads = list(jobs._threads)
    jobs.shutdown()
    assert all(not t.is_alive() for t in threads)
    with pytest.raises(HubError):
        jobs.submit("T", lambda ctx: None)


def test_idle_workers_exit_and_come_back() -> None:
    jobs = JobService(workers=2, idle_seconds=0.2)
    try:
        jobs.wait(jobs.submit("T", lambda ctx: None), WAIT)
        threads = list(jobs._threads)
        assert len(threads) == 2
        for t in threads:
            t.join(WAIT)
        assert jobs._threads == []
        assert jobs.wait(jobs.submit("T", lambda ctx: {"again": True}), WAIT).content == {"again": True}
    finally:
        jobs.shutdown()
