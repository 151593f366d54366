"""STOW-RS (PS3.18 10.5): ``multipart/related; type="application/dicom"`` bodies, read part by part
into the single ingest path; the response lists stored (0008,1199) and failed (0008,1198) instances.

Status (PS3.18 10.5.3.2): 200 all stored, 202 some failed, 409 none stored, 400 malformed body,
415 another media type. A bad part never undoes the good ones.
"""

from __future__ import annotations

import json
import logging
import threading
import warnings
from concurrent.futures import Future
from pathlib import Path
from queue import SimpleQueue
from typing import Any

from flask import Blueprint, Response, request
from pydicom import dcmread

from hub.app import Hub
from hub.domain import Origin
from hub.errors import HubError
from hub.services.ingest import Prepared
from interfaces.http.auth import current_principal, requires
from interfaces.http.dicomweb.common import DICOM_JSON, base_url, check_uids, hub, negotiate
from interfaces.http.multipart import Part, parse_content_type, read_parts

bp = Blueprint("dicomweb_stow", __name__, url_prefix="/dicom-web")
log = logging.getLogger(__name__)

CANNOT_UNDERSTAND = 0xC000  # PS3.4 Table B.2-1 "Error: Cannot understand"
STUDY_MISMATCH = 0xA900  # the part's Study Instance UID is not the one of the URL


def _failed(path: Path, reason: int) -> dict[str, Any]:
    """A FailedSOPSequence item (PS3.18 Table 10.5.3-1): the part's SOP Class/Instance UIDs where it
    has readable ones, and the failure reason."""
    sop_class = sop_uid = ""
    if path.exists():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
            sop_class, sop_uid = str(ds.get("SOPClassUID", "") or ""), str(ds.get("SOPInstanceUID", "") or "")
        except Exception:  # not DICOM at all: no UIDs to report
            pass
    return _failure(sop_class, sop_uid, reason)


def _failure(sop_class: str, sop_uid: str, reason: int) -> dict[str, Any]:
    """A FailedSOPSequence item with its Failure Reason (0008,1197)."""
    return {**_item(sop_class, sop_uid), "00081197": {"vr": "US", "Value": [reason]}}


def _item(sop_class: str, sop_uid: str) -> dict[str, Any]:
    item: dict[str, Any] = {}
    item["00081150"] = {"vr": "UI", "Value": [sop_class]} if sop_class else {"vr": "UI"}
    item["00081155"] = {"vr": "UI", "Value": [sop_uid]} if sop_uid else {"vr": "UI"}
    return item


Outcome = tuple[str, dict[str, Any], str]  # ("stored" | "failed", response item, Study Instance UID)


def _refused(path: Path, exc: HubError, origin: Origin) -> Outcome:
    log.info("STOW-RS part refused (%s): %s", origin.describe(), exc.code)
    reason = STUDY_MISMATCH if exc.attribute == "StudyInstanceUID" else exc.dimse_status
    return "failed", _failed(path, reason), ""


def _prepare_part(h: Hub, origin: Origin, part: Part, study: str | None) -> Future[Prepared | Outcome]:
    """Stage one part and have its header parsed (in a worker process): what to commit, or the
    part's failure. The part file stays until its answer is known (a failure reports its UIDs)."""
    out: Future[Prepared | Outcome] = Future()

    def settle(f: Future[Prepared]) -> None:
        try:
            out.set_result(f.result())
        except HubError as exc:
            out.set_result(_refused(part.path, exc, origin))
        except Exception:  # never lose the other parts' answers
            log.exception("STOW-RS part failed (%s)", origin.describe())
            out.set_result(("failed", _failed(part.path, 0xA700), ""))
        finally:
            part.path.unlink(missing_ok=True)

    part_type, _ = parse_content_type(part.content_type or "application/dicom")
    if part_type != "application/dicom":
        out.set_result(("failed", _failed(part.path, CANNOT_UNDERSTAND), ""))
        part.path.unlink(missing_ok=True)
        return out
    try:
        h.ingest.prepare_parallel(origin, part.path, expected_study_uid=study, consume=True).add_done_callback(settle)
    except HubError as exc:
        out.set_result(_refused(part.path, exc, origin))
        part.path.unlink(missing_ok=True)
    return out


def _committer(h: Hub, origin: Origin, base: str, queue: SimpleQueue[Future[Prepared | Outcome] | None],
               outcomes: list[Outcome]) -> None:
    """Group commit: whatever parts are parsed when the previous transaction ends are indexed
    together in one transaction (one COMMIT and one directory fsync per shard for all of them)."""
    done = False
    while not done:
        batch = [queue.get()]
        while not queue.empty():
            batch.append(queue.get())
        if batch[-1] is None:
            batch.pop()
            done = True
        answers: list[Prepared | Outcome] = [f.result() for f in batch if f is not None]
        ready = [a for a in answers if isinstance(a, Prepared)]
        try:
            results = h.ingest.commit(ready)
        except HubError as exc:  # the whole transaction failed (database down, disk full)
            results = [exc] * len(ready)
        stored = iter(results)
        for a in answers:
            if not isinstance(a, Prepared):
                outcomes.append(a)
                continue
            result = next(stored)
            if isinstance(result, HubError):
                log.info("STOW-RS part refused (%s): %s", origin.describe(), result.code)
                inst = a.new.record.instance
                outcomes.append(("failed", _failure(inst["sop_class_uid"], inst["sop_instance_uid"],
                                                    result.dimse_status), ""))
                continue
            sop = result.instance.sop_instance_uid
            url = f"{base}/studies/{result.study_uid}/series/{result.series_uid}/instances/{sop}"
            outcomes.append(("stored", {**_item(result.sop_class_uid, sop), "00081190": {"vr": "UR", "Value": [url]}},
                             result.study_uid))


def store(study: str | None) -> Response:
    check_uids(study)
    accept = negotiate([DICOM_JSON, "application/json"])
    mtype, params = parse_content_type(request.headers.get("Content-Type", ""))
    inner = params.get("type", "application/dicom").strip().lower()
    if mtype != "multipart/related" or inner != "application/dicom":
        raise HubError("unsupported_media_type", 'STOW-RS takes multipart/related; type="application/dicom"')
    h = hub()
    tmp = h.settings.data_path / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    origin = Origin("dicomweb", remote_ip=request.remote_addr or "", user=current_principal().name)
    base = base_url()
    outcomes: list[Outcome] = []
    malformed: str | None = None
    # Parts are staged and parsed (worker processes) while the body is still being read; a committer
    # indexes them in group commits. Every part is acknowledged only once its transaction committed.
    queue: SimpleQueue[Future[Prepared | Outcome] | None] = SimpleQueue()
    committer = threading.Thread(target=_committer, args=(h, origin, base, queue, outcomes), name="stow-commit")
    committer.start()
    try:
        for part in read_parts(request.stream, params.get("boundary", ""), tmp):
            queue.put(_prepare_part(h, origin, part, study))
    except HubError as exc:
        malformed = exc.message
        log.info("STOW-RS body malformed (%s): %s", origin.describe(), exc.message)
    finally:
        queue.put(None)
        committer.join()
    stored = [item for kind, item, _ in outcomes if kind == "stored"]
    failed = [item for kind, item, _ in outcomes if kind == "failed"]
    studies = {uid for kind, _, uid in outcomes if kind == "stored"}
    body: dict[str, Any] = {}
    if len(studies) == 1 or study:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{study or next(iter(studies))}"]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    if malformed and not stored and not failed:
        raise HubError("bad_request", f"malformed multipart body: {malformed}")
    status = 200 if stored and not failed and not malformed else 202 if stored else 409
    headers = {}
    if malformed:
        headers["Warning"] = f'299 rishub "The body was cut short: {malformed}"'
        status = 202 if stored else 400
    return Response(json.dumps(body).encode(), status=status, mimetype=accept, headers=headers)


@bp.post("/studies")
@requires("uploader")
def stow_studies():  # noqa: ANN201
    """STOW-RS: store instances."""
    return store(None)


@bp.post("/studies/<study>")
@requires("uploader")
def stow_study(study: str):  # noqa: ANN201
    """STOW-RS: store instances of one study."""
    return store(study)
