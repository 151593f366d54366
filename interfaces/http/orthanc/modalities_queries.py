"""Orthanc REST API: ``POST /modalities/{name}/query`` and ``/queries`` (C-FIND SCU, PS3.4 C.4.1).

Each query's answers are kept in memory (Orthanc's ``QueryRetrieveArchive``: the latest 100, least
recently used dropped first) for ``/queries/{id}/answers``, child queries and retrieval as a
``DicomMoveScu`` job (``/retrieve``). A restart forgets them, as it does in Orthanc.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from hub.errors import HubError
from hub.services.modalities import RemoteModality
from interfaces.http.orthanc import modalities_json as mj

bp = Blueprint("orthanc_queries", __name__)

ARCHIVE_KEY = "rishub.orthanc_queries"
# Orthanc 1.10 lists "query-study" among an answer's operations but routes "query-studies": both work.
CHILD_LEVELS = {"query-study": "Study", "query-studies": "Study", "query-series": "Series",
                "query-instances": "Instance"}
_ORDER = ("Patient", "Study", "Series", "Instance")


@dataclass
class RemoteQuery:
    """One C-FIND and its answers (Orthanc ``QueryRetrieveHandler``)."""

    modality: RemoteModality
    level: str  # Orthanc level name
    query: dict[str, str]  # as asked, keyword -> value
    normalize: bool = True
    local_aet: str = ""
    timeout: int = 0
    answers: list[dict[str, str]] = field(default_factory=list)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def answer(self, index: str) -> dict[str, str]:
        try:
            i = int(index)
        except ValueError:
            raise HubError("bad_request", f"not an answer index: {index!r}") from None
        if not 0 <= i < len(self.answers):
            raise HubError("bad_request", f"Parameter out of range: no answer {i}")
        return self.answers[i]


class QueryArchive:
    """The latest ``size`` queries, least recently used dropped first."""

    def __init__(self, size: int = 100) -> None:
        self.size = size
        self._items: OrderedDict[str, RemoteQuery] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, query: RemoteQuery) -> str:
        with self._lock:
            self._items[query.id] = query
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return query.id

    def get(self, query_id: str) -> RemoteQuery:
        with self._lock:
            found = self._items.get(query_id)
            if found is None:
                raise HubError("unknown_resource", f"unknown query {query_id!r}")
            self._items.move_to_end(query_id)
            return found

    def ids(self) -> list[str]:
        """Every kept query, by id (as Orthanc lists ``/queries``)."""
        with self._lock:
            return sorted(self._items)

    def remove(self, query_id: str) -> None:
        with self._lock:
            if self._items.pop(query_id, None) is None:
                raise HubError("unknown_resource", f"unknown query {query_id!r}")


@bp.record_once
def _install(state: Any) -> None:  # noqa: ANN401 - Flask's BlueprintSetupState
    state.app.extensions.setdefault(ARCHIVE_KEY, QueryArchive())


def archive() -> QueryArchive:
    return current_app.extensions[ARCHIVE_KEY]


def run_query(q: RemoteQuery) -> dict[str, str]:
    """Send the C-FIND, keep the answers (with their QueryRetrieveLevel, as Orthanc's SCU adds it),
    archive the query; returns Orthanc's ``{"ID", "Path"}``."""
    from interfaces.http.orthanc.modalities import hub, remote_service

    identifier = mj.find_identifier(q.level, q.query, normalize=q.normalize, manufacturer=q.modality.manufacturer)
    service = remote_service(hub(), q.modality, local_aet=q.local_aet, timeout=q.timeout)
    qr_level = mj.QR_LEVEL[q.level]
    answers = service.find(q.modality, qr_level, identifier, "patient" if q.level == "Patient" else "study")
    q.answers = [a if "QueryRetrieveLevel" in a else {**a, "QueryRetrieveLevel": qr_level} for a in answers]
    query_id = archive().add(q)
    return {"ID": query_id, "Path": f"/queries/{query_id}"}


def _options(body: dict[str, Any]) -> tuple[str, int]:
    local_aet = body.get("LocalAet", "")
    if not isinstance(local_aet, str):
        raise HubError("bad_request", "The field LocalAet must contain a string")
    return local_aet, mj.unsigned(body, "Timeout", 0)


@bp.post("/modalities/<name>/query")
def query(name: str):  # noqa: ANN201
    """Orthanc ``DicomQuery``: ``{"Level", "Query": {tag: value}, "Normalize", "LocalAet", "Timeout"}``."""
    from interfaces.http.orthanc.modalities import hub

    body = mj.json_body("Must provide a JSON object")
    if not isinstance(body, dict):
        raise HubError("bad_request", "Must provide a JSON object")
    if not isinstance(body.get("Level"), str):
        raise HubError("bad_request", "The JSON body must contain field Level")
    if "Normalize" in body and not isinstance(body["Normalize"], bool):
        raise HubError("bad_request", "The field Normalize must contain a Boolean")
    if "Query" in body and not isinstance(body["Query"], dict):
        raise HubError("bad_request", "The field Query must contain a JSON object")
    m = hub().modalities.require(name)
    local_aet, timeout = _options(body)
    q = RemoteQuery(m, mj.level(body["Level"]), mj.tags_map(body.get("Query", {}), "Query"),
                    body.get("Normalize", True), local_aet, timeout)
    return jsonify(run_query(q))


@bp.get("/queries")
def list_queries():  # noqa: ANN201
    return jsonify(archive().ids())


@bp.get("/queries/<query_id>")
def query_operations(query_id: str):  # noqa: ANN201
    archive().get(query_id)
    return jsonify(["answers", "level", "modality", "query", "retrieve"])


@bp.delete("/queries/<query_id>")
def delete_query(query_id: str) -> Response:
    archive().remove(query_id)
    return Response(b"", 200, mimetype="text/plain")


@bp.get("/queries/<query_id>/answers")
def answers(query_id: str):  # noqa: ANN201
    q = archive().get(query_id)
    if mj.flag("expand"):
        fmt = mj.dicom_format()
        return jsonify([mj.dataset_json(a, fmt) for a in q.answers])
    return jsonify([str(i) for i in range(len(q.answers))])


@bp.get("/queries/<query_id>/answers/<index>")
def answer_operations(query_id: str, index: str):  # noqa: ANN201
    q = archive().get(query_id)
    q.answer(index)
    children = {"Patient": ["query-study", "query-series", "query-instances"],
                "Study": ["query-series", "query-instances"], "Series": ["query-instances"]}.get(q.level, [])
    return jsonify(["content", "retrieve", *children])


@bp.get("/queries/<query_id>/answers/<index>/content")
def answer_content(query_id: str, index: str):  # noqa: ANN201
    return jsonify(mj.dataset_json(archive().get(query_id).answer(index), mj.dicom_format()))


@bp.get("/queries/<query_id>/level")
def query_level(query_id: str) -> Response:
    return Response(archive().get(query_id).level, 200, mimetype="text/plain")


@bp.get("/queries/<query_id>/modality")
def query_modality(query_id: str) -> Response:
    return Response(archive().get(query_id).modality.name, 200, mimetype="text/plain")


@bp.get("/queries/<query_id>/query")
def query_query(query_id: str):  # noqa: ANN201
    return jsonify(mj.dataset_json(archive().get(query_id).query, mj.dicom_format()))


@bp.post("/queries/<query_id>/answers/<index>/<child>")
def child_query(query_id: str, index: str, child: str):  # noqa: ANN201
    """Orthanc 1.5 ``query-study`` / ``query-series`` / ``query-instances``: a C-FIND one or more
    levels below an answer, with the answer's identifiers."""
    if child not in CHILD_LEVELS:
        raise HubError("unknown_resource", f"no such operation {child!r}")
    parent = archive().get(query_id)
    answer = parent.answer(index)
    lvl = CHILD_LEVELS[child]
    if _ORDER.index(lvl) <= _ORDER.index(parent.level):
        raise HubError("unknown_resource", f"{child} is not below the {parent.level} level")
    body = mj.json_body("Must provide a JSON object")
    if not isinstance(body, dict):
        raise HubError("bad_request", "Must provide a JSON object")
    keys = mj.tags_map(body.get("Query", {}), "Query")
    for key in mj.MOVE_KEYS[parent.level]:
        if key in answer:
            keys[key] = answer[key]
    timeout = mj.unsigned(body, "Timeout", parent.timeout)
    q = RemoteQuery(parent.modality, lvl, keys, parent.normalize, parent.local_aet, timeout)
    return jsonify(run_query(q))


@bp.post("/queries/<query_id>/answers/<index>/retrieve")
def retrieve_answer(query_id: str, index: str):  # noqa: ANN201
    q = archive().get(query_id)
    return _retrieve(q, [q.answer(index)])


@bp.post("/queries/<query_id>/retrieve")
def retrieve_all(query_id: str):  # noqa: ANN201
    q = archive().get(query_id)
    return _retrieve(q, q.answers)


def _retrieve(q: RemoteQuery, answers: list[dict[str, str]]):  # noqa: ANN202
    """Orthanc ``SubmitRetrieveJob``: a C-MOVE of each answer to ``TargetAet`` (JSON body, or the
    AE title as plain text; default our own AE title), synchronous by default, answering the
    job's ``Content``."""
    from interfaces.http.orthanc.modalities import hub, move_job, remote_service, submit_job

    h = hub()
    target = q.modality.local_aet or h.settings.ae_title
    raw = request.get_data()
    body: Any = {}
    if raw.strip():
        try:
            body = mj.json_body()
        except HubError:
            body = {}
            target = raw.decode("utf-8", "replace").strip()
    if isinstance(body, dict):
        value = body.get("TargetAet", target)
        if not isinstance(value, str):
            raise HubError("bad_request", "String value expected in field: TargetAet")
        target = value
    elif isinstance(body, str):
        target = body
    timeout = mj.unsigned(body, "Timeout", q.timeout) if isinstance(body, dict) else q.timeout
    local_aet = q.local_aet or q.modality.local_aet or h.settings.ae_title
    service = remote_service(h, q.modality, local_aet=local_aet, timeout=timeout)
    items = [{k: a[k] for k in mj.RETRIEVE_KEYS if k in a} for a in answers]
    content = {"Description": "REST API", "LocalAet": local_aet,
               "Query": [mj.dataset_json(i, "short") for i in items], "RemoteAet": q.modality.aet}
    run = move_job(service, q.modality, items, target)
    return jsonify(submit_job(h, body if isinstance(body, dict) else {}, "DicomMoveScu", run, content=content))
