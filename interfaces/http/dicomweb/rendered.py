"""Rendered images of DICOMweb (PS3.18 8.3.5 rendered resources, 10.4.1.1.3 /rendered, /thumbnail)
and WADO-URI image content types (PS3.18 9.1.2.2): windowed 8-bit images as JPEG or PNG, drawn by the
same imaging code as Orthanc's ``/rendered``."""

from __future__ import annotations

from flask import Blueprint, Response, request
from werkzeug.datastructures import MultiDict

from hub.domain.wado import WadoInstance
from hub.errors import HubError
from hub.services.content import RenderOptions
from interfaces.http.dicomweb.common import accept_list, check_uids, hub, matches
from interfaces.http.multipart import new_boundary, write_parts

bp = Blueprint("dicomweb_rendered", __name__, url_prefix="/dicom-web")
THUMBNAIL = 128  # pixels of the longer side of a thumbnail unless a viewport says otherwise
MEDIA = {"image/jpeg": "jpeg", "image/png": "png"}


def _media(explicit: str | None = None) -> str:
    """The image type: the ``accept`` query parameter (PS3.18 8.3.3.1), else the Accept header; JPEG
    by default (PS3.18 8.7.4 rendered media types)."""
    header = explicit or request.args.get("accept") or request.headers.get("Accept") or "image/jpeg"
    for mtype, params, _ in accept_list(header):
        if mtype == "multipart/related":
            mtype = params.get("type", "image/jpeg").lower()
        for offered in MEDIA:
            if matches(mtype, offered):
                return offered
    raise HubError("not_acceptable", "rendered images are image/jpeg or image/png")


def _float(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise HubError("bad_request", f"'{name}' must hold numbers") from None


def _options(args: MultiDict[str, str], default_size: int = 0) -> tuple[RenderOptions, int]:
    """``window=center,width[,function]``, ``viewport=vw,vh[,...]``, ``quality=1..100`` (PS3.18 8.3.5.1)."""
    center = width = None
    if "window" in args:
        parts = args["window"].split(",")
        if len(parts) < 2:
            raise HubError("bad_request", "'window' is center,width[,function]")
        center, width = _float("window", parts[0]), _float("window", parts[1])
        if width <= 0:
            raise HubError("bad_request", "the window width must be positive")
        if len(parts) > 2 and parts[2].strip().upper() not in ("", "LINEAR", "LINEAR_EXACT"):
            raise HubError("bad_request", "only the LINEAR window function is supported")
    vw = vh = default_size
    if "viewport" in args:
        parts = args["viewport"].split(",")
        try:
            vw, vh = int(parts[0]), int(parts[1])
        except (ValueError, IndexError):
            raise HubError("bad_request", "'viewport' is width,height") from None
        if vw <= 0 or vh <= 0 or vw > 8192 or vh > 8192:
            raise HubError("bad_request", "'viewport' must be between 1 and 8192 pixels")
    quality = 90
    if "quality" in args:
        try:
            quality = int(args["quality"])
        except ValueError:
            raise HubError("bad_request", "'quality' is an integer from 1 to 100") from None
        if not 1 <= quality <= 100:
            raise HubError("bad_request", "'quality' is an integer from 1 to 100")
    return RenderOptions(window_center=center, window_width=width, width=vw, height=vh, smooth=bool(vw),
                         voi="dicom"), quality


def _render(inst: WadoInstance, frame: int, mtype: str, args: MultiDict[str, str], default_size: int = 0) -> bytes:
    options, quality = _options(args, default_size)
    data, _ = hub().content.image(inst.public_id, frame - 1, "rendered", MEDIA[mtype], quality=quality,
                                  options=options)
    return data


def _image(inst: WadoInstance, frame: int, args: MultiDict[str, str], *, default_size: int = 0,
           media: str | None = None) -> Response:
    check_uids(inst.study_uid, inst.series_uid, inst.sop_instance_uid)
    mtype = media or _media()
    return Response(_render(inst, frame, mtype, args, default_size), mimetype=mtype)


def _representative(study: str, series: str | None = None) -> WadoInstance:
    """The instance a study or series thumbnail shows: the middle one of its first series with pixels."""
    check_uids(study, series)
    instances = hub().wado.instances(study, series)
    first_series = instances[0].series_uid
    members = [i for i in instances if i.series_uid == first_series]
    return members[len(members) // 2]


@bp.get("/studies/<study>/series/<series>/rendered")
def series_rendered(study: str, series: str):  # noqa: ANN201
    """WADO-RS: a series rendered: every instance's first frame as multipart/related parts when the
    client asks for multipart, else one image standing for the series (its middle instance)."""
    check_uids(study, series)
    instances = hub().wado.instances(study, series)
    mtype = _media()
    wants_multipart = any(t == "multipart/related" for t, _, _ in accept_list(
        request.args.get("accept") or request.headers.get("Accept")))
    if not wants_multipart:
        return _image(_representative(study, series), 1, request.args)
    _options(request.args)  # bad parameters are refused before anything is sent
    images = [_render(inst, 1, mtype, request.args) for inst in instances]
    boundary = new_boundary()
    body = write_parts([({"Content-Type": mtype}, [data]) for data in images], boundary)
    return Response(body, headers={"Content-Type": f'multipart/related; type="{mtype}"; boundary={boundary}'})


@bp.get("/studies/<study>/series/<series>/instances/<sop>/rendered")
def instance_rendered(study: str, series: str, sop: str):  # noqa: ANN201
    """WADO-RS: the first frame of an instance, rendered (window, viewport, quality)."""
    check_uids(study, series, sop)
    return _image(hub().wado.instances(study, series, sop)[0], 1, request.args)


@bp.get("/studies/<study>/series/<series>/instances/<sop>/frames/<int:frame>/rendered")
def frame_rendered(study: str, series: str, sop: str, frame: int):  # noqa: ANN201
    """WADO-RS: one frame (1-based), rendered."""
    inst = hub().wado.instances(study, series, sop)[0]
    if frame < 1 or frame > max(inst.number_of_frames, 1):
        raise HubError("unknown_resource", f"the instance has {inst.number_of_frames} frame(s)")
    return _image(inst, frame, request.args)


@bp.get("/studies/<study>/thumbnail")
def study_thumbnail(study: str):  # noqa: ANN201
    """WADO-RS: a small rendered image standing for a study."""
    return _image(_representative(study), 1, request.args, default_size=THUMBNAIL)


@bp.get("/studies/<study>/series/<series>/thumbnail")
def series_thumbnail(study: str, series: str):  # noqa: ANN201
    """WADO-RS: a small rendered image standing for a series."""
    return _image(_representative(study, series), 1, request.args, default_size=THUMBNAIL)


@bp.get("/studies/<study>/series/<series>/instances/<sop>/thumbnail")
def instance_thumbnail(study: str, series: str, sop: str):  # noqa: ANN201
    """WADO-RS: a small rendered image of an instance."""
    return _image(hub().wado.instances(study, series, sop)[0], 1, request.args, default_size=THUMBNAIL)


@bp.get("/studies/<study>/series/<series>/instances/<sop>/frames/<int:frame>/thumbnail")
def frame_thumbnail(study: str, series: str, sop: str, frame: int):  # noqa: ANN201
    """WADO-RS: a small rendered image of one frame."""
    inst = hub().wado.instances(study, series, sop)[0]
    if frame < 1 or frame > max(inst.number_of_frames, 1):
        raise HubError("unknown_resource", f"the instance has {inst.number_of_frames} frame(s)")
    return _image(inst, frame, request.args, default_size=THUMBNAIL)


def wado_uri_image(study: str, series: str, sop: str, content_type: str, args: MultiDict[str, str]) -> Response:
    """WADO-URI image request (PS3.18 9.1.2.2): ``windowCenter``/``windowWidth``, ``rows``/``columns``,
    ``frameNumber``, ``imageQuality``."""
    inst = hub().wado.instances(study, series, sop)[0]
    mapped: MultiDict[str, str] = MultiDict()
    if "windowCenter" in args or "windowWidth" in args:
        mapped["window"] = f"{args.get('windowCenter', '')},{args.get('windowWidth', '')}"
    if "columns" in args or "rows" in args:
        mapped["viewport"] = f"{args.get('columns', args.get('rows'))},{args.get('rows', args.get('columns'))}"
    if "imageQuality" in args:
        mapped["quality"] = args["imageQuality"]
    try:
        frame = int(args.get("frameNumber", "1"))
    except ValueError:
        raise HubError("bad_request", "'frameNumber' is an integer") from None
    if frame < 1 or frame > max(inst.number_of_frames, 1):
        raise HubError("unknown_resource", f"the instance has {inst.number_of_frames} frame(s)")
    media = "image/png" if content_type == "image/png" else "image/jpeg"
    return _image(inst, frame, mapped, media=media)
