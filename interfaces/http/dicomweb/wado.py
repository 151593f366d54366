"""WADO-RS (PS3.18 10.4): instances as ``multipart/related; type="application/dicom"``, metadata as
DICOM JSON from the index, bulk data by URI; and WADO-URI (PS3.18 9) for ``application/dicom``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from flask import Blueprint, Response, request

from hub.app import Hub
from hub.domain.wado import WadoInstance
from hub.errors import HubError
from hub.services.frames import FRAME_MEDIA, frame_numbers, read_frame
from hub.services.transcode import NATIVE as NATIVE_SYNTAXES
from hub.services.transcode import can_transcode, transcode
from interfaces.http.dicomweb.common import accept_list, base_url, check_uids, hub, json_response, matches
from interfaces.http.multipart import file_chunks, new_boundary, write_parts

bp = Blueprint("dicomweb_wado", __name__, url_prefix="/dicom-web")
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _dicom_syntax() -> str | None:
    """The transfer syntax the Accept header asks of ``application/dicom`` parts: a UID, ``*`` (as
    stored) or ``None`` (not said: Explicit VR Little Endian where possible, PS3.18 8.7.3.5.2)."""
    for mtype, params, _ in accept_list(request.headers.get("Accept")):
        if mtype == "multipart/related":
            inner = params.get("type", "application/dicom").strip().lower()
            if matches(inner, "application/dicom"):
                return params.get("transfer-syntax")
        elif mtype in ("application/dicom", "*/*", "application/*"):
            return params.get("transfer-syntax")
    raise HubError("not_acceptable", 'instances are sent as multipart/related; type="application/dicom"')


def _parts(h: Hub, instances: list[WadoInstance], wanted: str | None
           ) -> Iterator[tuple[dict[str, str], Iterable[bytes]]]:
    """The parts, produced while the response streams (outside the request context: ``h`` is given)."""
    for inst in instances:
        stored = inst.transfer_syntax_uid
        target = stored if wanted in (None, "*") else wanted
        if wanted is None and can_transcode(stored, EXPLICIT_LE):
            target = EXPLICIT_LE
        path = h.wado.path(inst)
        if target == stored:
            yield {"Content-Type": f"application/dicom; transfer-syntax={stored}"}, file_chunks(path)
        else:
            yield {"Content-Type": f"application/dicom; transfer-syntax={target}"}, [transcode(path, target)]


def retrieve(study: str, series: str | None = None, sop: str | None = None) -> Response:
    check_uids(study, series, sop)
    wanted = _dicom_syntax()
    instances = hub().wado.instances(study, series, sop)
    if wanted not in (None, "*"):
        bad = [i for i in instances if not can_transcode(i.transfer_syntax_uid, wanted)]
        if bad:
            raise HubError("not_acceptable", f"{len(bad)} instance(s) cannot be sent in transfer syntax {wanted}")
    boundary = new_boundary()
    body = write_parts(_parts(hub(), instances, wanted), boundary)
    return Response(body, mimetype=None, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})


@bp.get("/studies/<study>")
def retrieve_study(study: str):  # noqa: ANN201
    """WADO-RS: retrieve the instances of a study."""
    return retrieve(study)


@bp.get("/studies/<study>/series/<series>")
def retrieve_series(study: str, series: str):  # noqa: ANN201
    """WADO-RS: retrieve the instances of a series."""
    return retrieve(study, series)


@bp.get("/studies/<study>/series/<series>/instances/<sop>")
def retrieve_instance(study: str, series: str, sop: str):  # noqa: ANN201
    """WADO-RS: retrieve one instance."""
    return retrieve(study, series, sop)


def metadata(study: str, series: str | None = None, sop: str | None = None) -> Response:
    check_uids(study, series, sop)
    h = hub()
    instances = h.wado.instances(study, series, sop, with_metadata=True)
    return json_response(h.wado.metadata_json(instances, base_url()), etag=h.wado.etag(instances),
                         last_modified=max(i.received_at for i in instances))


@bp.get("/studies/<study>/metadata")
def study_metadata(study: str):  # noqa: ANN201
    """WADO-RS: metadata of every instance of a study (from the index)."""
    return metadata(study)


@bp.get("/studies/<study>/series/<series>/metadata")
def series_metadata(study: str, series: str):  # noqa: ANN201
    """WADO-RS: metadata of every instance of a series (from the index)."""
    return metadata(study, series)


@bp.get("/studies/<study>/series/<series>/instances/<sop>/metadata")
def instance_metadata(study: str, series: str, sop: str):  # noqa: ANN201
    """WADO-RS: metadata of one instance (from the index)."""
    return metadata(study, series, sop)


@bp.get("/studies/<study>/series/<series>/instances/<sop>/bulk/<tag>")
def bulk(study: str, series: str, sop: str, tag: str):  # noqa: ANN201
    """WADO-RS: one bulk data value the metadata references (``multipart/related`` of
    ``application/octet-stream``, or the bare octets with Range support when asked for those)."""
    if len(tag) != 8 or any(c not in "0123456789abcdefABCDEF" for c in tag):
        raise HubError("bad_request", "bulk data is named by an 8-digit hexadecimal tag")
    h = hub()
    data = h.wado.bulk_value(h.wado.instances(study, series, sop)[0], tag.upper())
    kind = _octet_kind()
    if kind == "single":
        resp = Response(data, mimetype="application/octet-stream")
        return resp.make_conditional(request, accept_ranges=True, complete_length=len(data))
    boundary = new_boundary()
    body = write_parts([({"Content-Type": "application/octet-stream"}, [data])], boundary)
    return Response(body, headers={
        "Content-Type": f'multipart/related; type="application/octet-stream"; boundary={boundary}'})


def _octet_kind() -> str:
    """``multipart`` (the PS3.18 default) or ``single`` (a bare application/octet-stream was preferred)."""
    for mtype, params, _ in accept_list(request.headers.get("Accept")):
        if mtype == "multipart/related":
            inner = params.get("type", "application/octet-stream").lower()
            if matches(inner, "application/octet-stream"):
                return "multipart"
        elif mtype == "application/octet-stream":
            return "single"
        elif mtype in ("*/*", "application/*"):
            return "multipart"
    raise HubError("not_acceptable", "bulk data is sent as application/octet-stream")


@dataclass(frozen=True)
class FrameAnswer:
    multipart: bool
    uncompressed: bool  # decode compressed frames to native little endian
    part_type: str  # media type of the parts ("" = each frame's own: octet-stream or image/*)


def _frame_answer(stored: str, count: int) -> FrameAnswer:
    """How the Accept header wants frames (PS3.18 8.7.3.5.3, 8.7.4): multipart of octet-stream
    (uncompressed, a given syntax or ``*``), of the stored image/* type, or a single octet-stream."""
    own = FRAME_MEDIA.get(stored, "application/octet-stream")
    for mtype, params, _ in accept_list(request.headers.get("Accept")):
        ts = params.get("transfer-syntax")
        if mtype == "multipart/related":
            inner = params.get("type", "application/octet-stream").strip().lower()
            if inner in ("*/*", "*"):  # a common client quirk: anything, as stored
                return FrameAnswer(True, False, "")
            if inner == "application/octet-stream":
                if ts == "*" or (ts == stored and stored not in NATIVE_SYNTAXES):
                    return FrameAnswer(True, False, "application/octet-stream")
                if ts in (None, EXPLICIT_LE) or (ts == stored):
                    return FrameAnswer(True, True, "application/octet-stream")
                continue
            if inner == own and inner != "application/octet-stream" and ts in (None, "*", stored):
                return FrameAnswer(True, False, own)
        elif mtype == "application/octet-stream" and count == 1 and ts in (None, "*", EXPLICIT_LE, stored):
            return FrameAnswer(False, ts in (None, EXPLICIT_LE) and stored != ts, "application/octet-stream")
        elif mtype in ("*/*", "multipart/*"):
            return FrameAnswer(True, stored in NATIVE_SYNTAXES, "")
    raise HubError("not_acceptable", f"frames of this instance are available as application/octet-stream or {own}")


@bp.get("/studies/<study>/series/<series>/instances/<sop>/frames/<frames>")
def frames(study: str, series: str, sop: str, frames: str):  # noqa: ANN201
    """WADO-RS: frames of an instance (1-based list), as stored or uncompressed."""
    check_uids(study, series, sop)
    h = hub()
    inst = h.wado.instances(study, series, sop, with_metadata=True)[0]
    numbers = frame_numbers(frames, max(inst.number_of_frames, 1))
    answer = _frame_answer(inst.transfer_syntax_uid, len(numbers))
    path = h.wado.path(inst)
    if not answer.multipart:
        frame = read_frame(path, inst, numbers[0], uncompressed=answer.uncompressed)
        return Response(frame.data, headers={
            "Content-Type": f"application/octet-stream; transfer-syntax={frame.transfer_syntax_uid}"})

    def parts() -> Iterator[tuple[dict[str, str], Iterable[bytes]]]:
        for n in numbers:
            frame = read_frame(path, inst, n, uncompressed=answer.uncompressed)
            ctype = answer.part_type or frame.media_type
            yield {"Content-Type": f"{ctype}; transfer-syntax={frame.transfer_syntax_uid}"}, [frame.data]

    first = read_frame(path, inst, numbers[0], uncompressed=answer.uncompressed)  # errors before streaming
    outer = answer.part_type or first.media_type
    boundary = new_boundary()
    return Response(write_parts(parts(), boundary), headers={
        "Content-Type": f'multipart/related; type="{outer}"; boundary={boundary}'})


def wado_uri_dicom(study: str, series: str, sop: str, syntax: str | None) -> Response:
    """WADO-URI ``contentType=application/dicom`` (PS3.18 9.1.2.1): the object, as stored unless a
    ``transferSyntax`` is asked."""
    h = hub()
    instances = h.wado.instances(study, series, sop)
    inst = instances[0]
    path = h.wado.path(inst)
    headers = {"Content-Disposition": f'attachment; filename="{sop}.dcm"'}
    if syntax and syntax != inst.transfer_syntax_uid:
        if not can_transcode(inst.transfer_syntax_uid, syntax):
            raise HubError("not_acceptable", f"cannot send this object in transfer syntax {syntax}")
        return Response(transcode(path, syntax), mimetype="application/dicom", headers=headers)
    headers["Content-Length"] = str(inst.file_size)
    return Response(file_chunks(path), mimetype="application/dicom", headers=headers)


def _wado_uri():  # noqa: ANN202
    args = request.args
    if args.get("requestType", "") != "WADO":
        raise HubError("bad_request", "requestType must be WADO")
    uids = {k: args.get(k, "").strip() for k in ("studyUID", "seriesUID", "objectUID")}
    missing = [k for k, v in uids.items() if not v]
    if missing:
        raise HubError("bad_request", f"missing {', '.join(missing)}")
    content_types = [c.strip().lower() for c in args.get("contentType", "image/jpeg").split(",") if c.strip()]
    for ct in content_types:
        if ct in ("application/dicom", "*/*", "application/*"):
            return wado_uri_dicom(uids["studyUID"], uids["seriesUID"], uids["objectUID"], args.get("transferSyntax"))
        if ct in ("image/jpeg", "image/png", "image/gif", "image/*"):
            from interfaces.http.dicomweb.rendered import wado_uri_image

            return wado_uri_image(uids["studyUID"], uids["seriesUID"], uids["objectUID"], ct, args)
    raise HubError("not_acceptable", "contentType must be application/dicom, image/jpeg or image/png")


@bp.get("/wado")
def wado_uri_dicomweb():  # noqa: ANN201
    """WADO-URI: one object by study, series and object UID."""
    return _wado_uri()


root_bp = Blueprint("wado_uri", __name__)


@root_bp.get("/wado")
def wado_uri():  # noqa: ANN201
    """WADO-URI: one object by study, series and object UID."""
    return _wado_uri()
