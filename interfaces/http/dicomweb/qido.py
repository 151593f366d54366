"""QIDO-RS search (PS3.18 10.6) over the hub's one query model: studies, series and instances,
within a study or series or over the whole archive; DICOM JSON results (PS3.18 F.2)."""

from __future__ import annotations

import json

from flask import Blueprint, Response, request

from hub.domain.query import QueryLevel
from interfaces.http.dicomweb.common import base_url, check_uids, hub, json_response
from mappings.qido import qido_to_query
from mappings.record_to_dicom_json import record_to_dicom_json

bp = Blueprint("dicomweb_qido", __name__, url_prefix="/dicom-web")


def _retrieve_url(base: str, level: QueryLevel, tags: dict[str, str]) -> str | None:
    study = tags.get("StudyInstanceUID")
    if not study:
        return None
    url = f"{base}/studies/{study}"
    if level >= QueryLevel.SERIES and tags.get("SeriesInstanceUID"):
        url += f"/series/{tags['SeriesInstanceUID']}"
        if level >= QueryLevel.IMAGE and tags.get("SOPInstanceUID"):
            url += f"/instances/{tags['SOPInstanceUID']}"
    return url


def search(level: QueryLevel, scope: dict[str, str]) -> Response:
    check_uids(*scope.values())
    h = hub()
    req = qido_to_query(level, request.args.items(multi=True), scope,
                        case_insensitive_names=h.settings.dicom.case_insensitive_names)
    limit = req.query.limit
    if limit is not None:
        req.query.limit = limit + 1  # one more tells whether the results were cut
    base = base_url()
    results = []
    cut = False
    for record in h.query.find(req.query, req.keywords):
        if limit is not None and len(results) == limit:
            cut = True
            break
        results.append(record_to_dicom_json(record, req.keywords, _retrieve_url(base, level, record["tags"]),
                                            all_metadata=req.include_all and level is QueryLevel.IMAGE))
    warnings = []
    if cut:
        warnings.append('299 rishub "There are additional results that can be requested"')
    if req.unsupported:
        warnings.append(f'299 rishub "The following attributes are not supported for matching: '
                        f'{", ".join(sorted(set(req.unsupported)))}"')
    headers = {"Warning": ", ".join(warnings)} if warnings else None
    body = json.dumps(results, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return json_response(body, headers=headers)


@bp.get("/studies")
def search_studies():  # noqa: ANN201
    """QIDO-RS: search for studies."""
    return search(QueryLevel.STUDY, {})


@bp.get("/series")
def search_all_series():  # noqa: ANN201
    """QIDO-RS: search for series in all studies."""
    return search(QueryLevel.SERIES, {})


@bp.get("/studies/<study>/series")
def search_study_series(study: str):  # noqa: ANN201
    """QIDO-RS: search for series of a study."""
    return search(QueryLevel.SERIES, {"StudyInstanceUID": study})


@bp.get("/instances")
def search_all_instances():  # noqa: ANN201
    """QIDO-RS: search for instances in all studies."""
    return search(QueryLevel.IMAGE, {})


@bp.get("/studies/<study>/instances")
def search_study_instances(study: str):  # noqa: ANN201
    """QIDO-RS: search for instances of a study."""
    return search(QueryLevel.IMAGE, {"StudyInstanceUID": study})


@bp.get("/studies/<study>/series/<series>/instances")
def search_series_instances(study: str, series: str):  # noqa: ANN201
    """QIDO-RS: search for instances of a series."""
    return search(QueryLevel.IMAGE, {"StudyInstanceUID": study, "SeriesInstanceUID": series})
