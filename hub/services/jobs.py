"""Jobs for the long operations (Orthanc's jobs engine behind ``/jobs``).

A small pool of worker threads runs submitted callables, highest priority first, then in order of
submission. A job goes Pending -> Running -> Success | Failure; it can be Paused (at once when
pending, at its next :meth:`JobContext.check` when running) and resumed, cancelled (Failure,
"canceled"), resubmitted after a failure, and can ask to be run again later (Retry). Like Orthanc's
``JobsHistorySize`` only the latest finished jobs are kept. Jobs live in memory only: Orthanc
persists its registry in the database, a restart of the hub forgets them.

Every long operation uses one entry point, :meth:`JobService.submit`, with a
``run(ctx) -> dict | None`` callable; :meth:`JobService.submit_request` adds Orthanc's
``Synchronous`` / ``Asynchronous`` / ``Priority`` body semantics for a REST route.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.errors import HubError
from hub.services.job_records import (
    FINISHED,
    JobCanceled,
    JobInfo,
    JobInterrupted,
    JobOutput,
    JobState,
    RetryLater,
    _Job,
)

log = logging.getLogger(__name__)


Run = Callable[["JobContext"], "dict[str, Any] | None"]


class JobContext:
    """What a running job sees: its id and public content, progress, stop requests, outputs.

    ``memo`` survives a pause/resume (a job may record what it has done there and skip it when
    run again); it is emptied by a resubmit.
    """

    def __init__(self, service: JobService, job: _Job) -> None:
        self._service = service
        self._job = job
        self.id = job.id
        self.memo = job.memo

    @property
    def content(self) -> dict[str, Any]:
        return self._job.content

    def update(self, **content: Any) -> None:  # noqa: ANN401 - JSON values
        """Set fields of the job's public ``Content``."""
        with self._service._cond:
            self._job.content.update(content)

    def progress(self, done: float, total: float | None = None) -> None:
        """Report progress: a fraction, or ``done`` out of ``total``."""
        fraction = done / total if total else (done if total is None else 1.0)
        with self._service._cond:
            self._job.progress = max(0.0, min(1.0, float(fraction)))

    @property
    def stop_requested(self) -> bool:
        return bool(self._job.request)

    def check(self) -> None:
        """Raise :class:`JobInterrupted` when the job was asked to pause or to be cancelled."""
        if self._job.request:
            raise JobInterrupted(self._job.request)

    def set_output(self, name: str, path: str | Path, content_type: str, filename: str = "",
                   remove: bool = True) -> None:
        """Leave a file for ``GET /jobs/{id}/{name}``."""
        with self._service._cond:
            self._job.outputs[name] = JobOutput(Path(path), content_type, filename, remove)


class JobService:
    """The job registry and its worker threads (started by a submit, gone after a while idle)."""

    def __init__(self, workers: int = 2, history: int = 10, idle_seconds: float = 60.0) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.history = history
        self.idle_seconds = idle_seconds  # a worker with nothing to do that long exits (restarted on submit)
        self._cond = threading.Condition()
        self._jobs: dict[str, _Job] = {}
        self._queue: list[tuple[int, int, str]] = []
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._closed = False

    # ------------------------------------------------------------------ submit / inspect
    def submit(self, job_type: str, run: Run, *, priority: int = 0, content: Mapping[str, Any] | None = None) -> str:
        """Queue ``run(ctx)``; its returned dict (if any) is merged into the job's ``Content``."""
        job = _Job(str(uuid.uuid4()), job_type, int(priority), dict(content or {}), run, _now())
        with self._cond:
            if self._closed:
                raise HubError("internal", "the job service is shut down")
            self._jobs[job.id] = job
            self._enqueue(job)
            self._start_workers()
        return job.id

    def get(self, job_id: str) -> JobInfo | None:
        with self._cond:
            job = self._jobs.get(job_id)
            return job.info() if job else None

    def list(self) -> list[JobInfo]:
        """Every known job, by id (Orthanc lists ``/jobs`` in id order)."""
        with self._cond:
            return [self._jobs[k].info() for k in sorted(self._jobs)]

    def output(self, job_id: str, name: str) -> JobOutput | None:
        with self._cond:
            job = self._jobs.get(job_id)
            return job.outputs.get(name) if job else None

    def wait(self, job_id: str, timeout: float | None = None) -> JobInfo:
        """Block until the job succeeded or failed (or ``timeout``); returns its snapshot."""
        with self._cond:
            job = self._jobs.get(job_id)
        if job is None:
            raise HubError("unknown_resource", f"unknown job {job_id!r}")
        job.done.wait(timeout)
        with self._cond:
            return job.info()

    # ------------------------------------------------------------------ control
    def cancel(self, job_id: str) -> bool:
        """Orthanc ``/jobs/{id}/cancel``: a queued, paused or retrying job fails at once, a running
        one at its next check; a finished one is left as it is. False: unknown job."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                return False
            if job.state in (JobState.PENDING, JobState.PAUSED, JobState.RETRY):
                job.canceled = True
                self._finish(job, JobState.FAILURE)
            elif job.state == JobState.RUNNING:
                job.request = "cancel"
            return True

    def pause(self, job_id: str) -> bool:
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                return False
            if job.state in (JobState.PENDING, JobState.RETRY):
                job.state = JobState.PAUSED
            elif job.state == JobState.RUNNING and job.request != "cancel":
                job.request = "pause"
            return True

    def resume(self, job_id: str) -> bool:
        """Only a paused job can be resumed (Orthanc answers 400 otherwise)."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.state != JobState.PAUSED:
                return False
            self._enqueue(job)
            return True

    def resubmit(self, job_id: str) -> bool:
        """Only a failed job can be resubmitted: it runs again from the start."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.state != JobState.FAILURE:
                return False
            self._drop_outputs(job)
            job.progress, job.error, job.canceled, job.completed = 0.0, None, False, None
            job.memo.clear()
            job.done = threading.Event()
            self._enqueue(job)
            return True

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the workers once their current job is done; queued jobs are not run."""
        with self._cond:
            self._closed = True
            for job in self._jobs.values():
                if job.state == JobState.RUNNING:
                    job.request = "cancel"
            self._cond.notify_all()
            threads = list(self._threads)
        for t in threads:
            t.join(timeout)

    # ------------------------------------------------------------------ REST semantics
    def submit_request(
        self,
        body: Any,  # noqa: ANN401 - the request's parsed JSON
        job_type: str,
        run: Run,
        *,
        content: Mapping[str, Any] | None = None,
        default_synchronous: bool = True,
        synchronous_answer: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Orthanc ``SubmitGenericJob``: ``Synchronous`` (or the negation of ``Asynchronous``)
        decides; synchronous returns the job's ``Content`` once it succeeded (its failure is
        raised), asynchronous returns ``{"ID", "Path"}`` at once. ``Priority`` sets the priority."""
        synchronous = is_synchronous(body, default_synchronous)
        priority = 0
        if isinstance(body, Mapping) and "Priority" in body:
            priority = body["Priority"]
            if isinstance(priority, bool) or not isinstance(priority, int):
                raise HubError("bad_request", "Integer value expected in field: Priority")
        job_id = self.submit(job_type, run, priority=priority, content=content)
        if not synchronous:
            return {"ID": job_id, "Path": f"/jobs/{job_id}"}
        info = self.wait(job_id)
        if info.state == JobState.FAILURE:
            if info.canceled or info.error is None:
                raise JobCanceled(job_id)
            raise info.error
        return synchronous_answer(info.content) if synchronous_answer else info.content

    # ------------------------------------------------------------------ internals (hold _cond)
    def _enqueue(self, job: _Job) -> None:
        job.state = JobState.PENDING
        heapq.heappush(self._queue, (-job.priority, next(self._seq), job.id))
        self._cond.notify()

    def _start_workers(self) -> None:
        while len(self._threads) < self.workers:
            t = threading.Thread(target=self._work, name=f"job-worker-{len(self._threads)}", daemon=True)
            self._threads.append(t)
            t.start()

    def _finish(self, job: _Job, state: JobState) -> None:
        job.state = state
        job.request = ""
        job.completed = _now()
        if state == JobState.SUCCESS:
            job.progress = 1.0
        job.done.set()
        self._trim()

    def _trim(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.state in FINISHED),
                          key=lambda j: j.completed or j.created)
        for job in finished[: max(0, len(finished) - self.history)]:
            self._drop_outputs(job)
            del self._jobs[job.id]

    @staticmethod
    def _drop_outputs(job: _Job) -> None:
        for out in job.outputs.values():
            if out.remove:
                out.path.unlink(missing_ok=True)
        job.outputs.clear()

    def _next(self) -> _Job | None:
        """The next pending job; None when the worker should exit (shut down, or idle too long)."""
        idle_since = time.monotonic()
        while not self._closed:
            while self._queue:
                _, _, job_id = heapq.heappop(self._queue)
                job = self._jobs.get(job_id)
                if job is not None and job.state == JobState.PENDING:
                    return job
            left = self.idle_seconds - (time.monotonic() - idle_since)
            if left <= 0:
                break
            self._cond.wait(left)
        self._threads.remove(threading.current_thread())
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                job = self._next()
                if job is None:
                    return
                job.state = JobState.RUNNING
                job.request = ""
            self._run(job)

    def _run(self, job: _Job) -> None:
        started = time.monotonic()
        outcome: JobState = JobState.SUCCESS
        retry_after = 0.0
        error: HubError | None = None
        canceled = False
        try:
            result = job.run(JobContext(self, job))
            if result:
                with self._cond:
                    job.content.update(result)
        except JobInterrupted as exc:
            outcome = JobState.PAUSED if exc.request == "pause" else JobState.FAILURE
            canceled = exc.request == "cancel"
        except RetryLater as exc:
            outcome, retry_after = JobState.RETRY, exc.seconds
        except HubError as exc:
            outcome, error = JobState.FAILURE, exc
        except Exception as exc:  # a bug in the job: reported as an internal error, the worker lives on
            log.exception("job %s (%s) failed", job.id, job.type)
            outcome, error = JobState.FAILURE, HubError("internal", f"{type(exc).__name__}: {exc}")
        with self._cond:
            job.runtime += time.monotonic() - started
            if outcome in FINISHED:
                job.error, job.canceled = error, canceled
                self._finish(job, outcome)
            elif outcome == JobState.PAUSED:
                job.state, job.request = JobState.PAUSED, ""
            else:
                job.state, job.request = JobState.RETRY, ""
                timer = threading.Timer(retry_after, self._retry, args=(job.id,))
                timer.daemon = True
                timer.start()

    def _retry(self, job_id: str) -> None:
        with self._cond:
            job = self._jobs.get(job_id)
            if job is not None and job.state == JobState.RETRY and not self._closed:
                self._enqueue(job)


def is_synchronous(body: Any, default: bool) -> bool:  # noqa: ANN401 - parsed JSON
    """Orthanc ``IsSynchronousJobRequest``: ``Synchronous`` wins over ``Asynchronous``."""
    if not isinstance(body, Mapping):
        return default
    for key, negate in (("Synchronous", False), ("Asynchronous", True)):
        if key in body:
            value = body[key]
            if not isinstance(value, bool):
                raise HubError("bad_request", f"Boolean value expected in field: {key}")
            return value != negate
    return default


def _now() -> datetime:
    return datetime.now(UTC)
