"""What a job of the jobs engine is (Orthanc's jobs: ``/jobs/{id}`` State, Progress, Content, ErrorCode): its
states, its record, what it shows to REST (:class:`JobInfo`) and the signals a running job raises."""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.errors import HubError

if TYPE_CHECKING:
    from hub.services.jobs import Run


class JobState(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCESS = "Success"
    FAILURE = "Failure"
    PAUSED = "Paused"
    RETRY = "Retry"


FINISHED = (JobState.SUCCESS, JobState.FAILURE)


class JobInterrupted(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by :meth:`JobContext.check` when the job was asked to pause or to stop."""

    def __init__(self, request: str) -> None:
        super().__init__(request)
        self.request = request  # "pause" or "cancel"


class RetryLater(Exception):  # noqa: N818
    """Raised by a job's ``run`` to be put in state Retry and run again after ``seconds``."""

    def __init__(self, seconds: float, message: str = "") -> None:
        super().__init__(message or f"retry in {seconds} s")
        self.seconds = seconds


class JobCanceled(HubError):
    """A synchronous request whose job was cancelled (Orthanc ``CanceledJob``)."""

    def __init__(self, job_id: str) -> None:
        super().__init__("internal", f"job {job_id} was canceled")


@dataclass(frozen=True)
class JobOutput:
    """A file a job leaves behind (Orthanc 1.10: an archive job's ``archive``); ``remove``: the
    file is deleted when the job leaves the history."""

    path: Path
    content_type: str
    filename: str = ""
    remove: bool = True


@dataclass(frozen=True)
class JobInfo:
    """A snapshot of one job, safe to read from any thread."""

    id: str
    type: str
    priority: int
    state: JobState
    progress: int  # percent
    content: dict[str, Any]
    created: datetime
    completed: datetime | None
    runtime: float  # seconds spent running, over every run
    error: HubError | None
    canceled: bool
    outputs: tuple[str, ...]


@dataclass(eq=False)
class _Job:
    id: str
    type: str
    priority: int
    content: dict[str, Any]
    run: Run
    created: datetime
    state: JobState = JobState.PENDING
    progress: float = 0.0
    completed: datetime | None = None
    runtime: float = 0.0
    error: HubError | None = None
    canceled: bool = False
    outputs: dict[str, JobOutput] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)
    request: str = ""  # "", "pause" or "cancel": asked of a running job
    done: threading.Event = field(default_factory=threading.Event)

    def info(self) -> JobInfo:
        return JobInfo(self.id, self.type, self.priority, self.state, min(100, int(self.progress * 100)),
                       copy.deepcopy(self.content), self.created, self.completed, self.runtime, self.error,
                       self.canceled, tuple(sorted(self.outputs)))
