"""Worklist REST (in the manner of Orthanc's worklists plugin): ``GET /worklists`` lists the Modality
Worklist items (PS3.4 K.6) as DICOM JSON, ``POST /worklists`` creates one from a DICOM JSON item,
``DELETE /worklists/{id}`` removes one. Items made here live beside the HL7 ones and answer MWL C-FIND."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, request

from hub.domain import Origin
from hub.errors import HubError
from interfaces.http.auth import current_principal, requires
from interfaces.http.context import hub as _hub
from mappings.dicom_json_to_order import WorklistItemError, dicom_json_to_order

bp = Blueprint("orthanc_worklists", __name__)




def _item(row: dict[str, Any]) -> dict[str, Any]:
    tags: dict[str, Any] = {**json.loads(row["order_attrs"]), **json.loads(row["patient_attrs"])}
    if row["specific_character_set"]:
        tags["00080005"] = {"vr": "CS", "Value": [row["specific_character_set"]]}
    tags["00400100"] = {"vr": "SQ", "Value": [json.loads(row["attrs"])]}
    return {"ID": str(row["pk"]), "Status": row["status"], "Tags": dict(sorted(tags.items()))}


@bp.get("/worklists")
def list_worklists():  # noqa: ANN201
    """Every worklist item (``?since=ID&limit=N`` pages by id)."""
    try:
        since = int(request.args.get("since", "0"))
        limit = int(request.args.get("limit", "1000"))
    except ValueError:
        raise HubError("bad_request", "since and limit must be integers") from None
    if since < 0 or not 0 < limit <= 10000:
        raise HubError("bad_request", "since >= 0 and 0 < limit <= 10000")
    return jsonify([_item(r) for r in _hub().worklist_items.list(limit, since)])


@bp.post("/worklists")
@requires("uploader")
def create_worklist():  # noqa: ANN201
    """Create a worklist item from DICOM JSON; 201 with its id and Study Instance UID."""
    body = request.get_json(silent=True)
    try:
        cmd = dicom_json_to_order(body)
    except WorklistItemError as exc:
        raise HubError("bad_request", f"{exc.attribute}: {exc}" if exc.attribute else str(exc)) from None
    h = _hub()
    origin = Origin("rest", remote_ip=request.remote_addr or "", user=current_principal().name)
    with h.orders.unit() as unit:
        unit.apply_order(cmd, f"rest|{origin.user or ''}")
    ids = [str(s["pk"]) for s in h.orders.steps(cmd.study_uid) if s["sps_id"] in {st.sps_id for st in cmd.steps}]
    answer = {"ID": ids[0] if len(ids) == 1 else ids, "StudyInstanceUID": cmd.study_uid,
              "Path": f"/worklists/{ids[0]}" if len(ids) == 1 else "/worklists"}
    return Response(json.dumps(answer), status=201, mimetype="application/json")


@bp.delete("/worklists/<int:item>")
@requires("uploader")
def delete_worklist(item: int):  # noqa: ANN201
    """Remove one worklist item."""
    if not _hub().worklist_items.delete(item):
        raise HubError("unknown_resource", "no such worklist item")
    return jsonify({})
