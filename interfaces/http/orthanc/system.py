"""Orthanc ``/system``, ``/statistics`` and ``/changes`` (Orthanc 1.10 JSON shapes)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from hub.errors import HubError
from interfaces.http.context import hub as _hub

bp = Blueprint("orthanc_system", __name__)

MB = 1024 * 1024




@bp.get("/system")
def system():  # noqa: ANN201
    hub = _hub()
    s = hub.settings
    return jsonify(
        {
            "ApiVersion": 16,
            "CheckRevisions": False,
            "DatabaseBackendPlugin": None,
            "DatabaseVersion": 6,
            "DicomAet": s.ae_title,
            "DicomPort": s.dicom.port,
            "HttpPort": s.http.port,
            "IsHttpServerSecure": not s.http.open,
            "Name": "rishub",
            "PluginsEnabled": False,
            "StorageAreaPlugin": None,
            "Version": "1.10.1",
            "rishub": {"Version": hub.version, "Database": "sqlite" if s.is_sqlite else "postgresql"},
        }
    )


@bp.get("/statistics")
def statistics():  # noqa: ANN201
    st = _hub().index.statistics()
    size = st["disk_size"]
    return jsonify(
        {
            "CountInstances": st["instances"],
            "CountPatients": st["patients"],
            "CountSeries": st["series"],
            "CountStudies": st["studies"],
            "TotalDiskSize": str(size),
            "TotalDiskSizeMB": size // MB,
            "TotalUncompressedSize": str(size),
            "TotalUncompressedSizeMB": size // MB,
        }
    )


_PATHS = {"Patient": "patients", "Study": "studies", "Series": "series", "Instance": "instances"}


def _int_arg(name: str, default: int, maximum: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HubError("bad_request", f"parameter '{name}' must be an integer") from None
    if value < 0:
        raise HubError("bad_request", f"parameter '{name}' must not be negative")
    return min(value, maximum) if maximum else value


@bp.get("/changes")
def changes():  # noqa: ANN201
    index = _hub().index
    if "last" in request.args:
        last = index.last_change()
        rows, _, _ = index.changes(last - 1, 1) if last else ([], True, 0)
        done, last_seq = True, last
    else:
        since = _int_arg("since", 0)
        limit = _int_arg("limit", 100, 10000)
        rows, done, last_seq = index.changes(since, limit)
    return jsonify(
        {
            "Changes": [
                {
                    "ChangeType": r["change_type"],
                    "Date": r["created_at"].strftime("%Y%m%dT%H%M%S"),
                    "ID": r["public_id"],
                    "Path": f"/{_PATHS[r['resource_type']]}/{r['public_id']}",
                    "ResourceType": r["resource_type"],
                    "Seq": r["seq"],
                }
                for r in rows
            ],
            "Done": done,
            "Last": last_seq,
        }
    )
