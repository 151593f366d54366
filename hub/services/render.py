"""The render service: MPR and MIP images of a stored series for the reporting module.

A series becomes a volume once (geometry from the index's DICOM JSON, pixels decoded slice by slice in
the background, :mod:`hub.render.assemble`) and is kept in an LRU cache bounded by bytes, keyed by the
series and its last change. A request waits only for the slices its plane touches, so the first axial
slice of a series not yet cached is served as soon as that slice is decoded. Planes are sampled by the
OpenGL backend where a hardware context exists, else by the CPU backend (numpy/numba); then windowed
(PS3.3 C.11.2.1.2) and encoded."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hub.errors import HubError
from hub.render import cpu, views, window
from hub.render.assemble import Loader, NotAVolume, frame_reader, new_volume, plan_volume
from hub.render.cache import Cached, VolumeCache
from hub.render.cpu import CpuBackend
from hub.render.plane import Backend, Plane
from hub.render.volume import Volume
from hub.settings import RenderSettings
from hub.store.blobs import BlobStore
from hub.store.render import RenderRepository

log = logging.getLogger(__name__)

VIEWS = tuple(v for v in views.VIEWS if v != "projection")  # /mpr planes; the projection is /mip
MODES = views.MODES
FORMATS = tuple(window.FORMATS)
PRESETS = tuple(window.PRESETS)
# Pixels with no sample inside the volume: below every window, so black (white for MONOCHROME1), whatever
# the load state (int16 keeps it exactly).
OUTSIDE = -32768.0


class NotAVolumeError(HubError):
    """422: the series cannot be rendered as a volume; ``reason`` is :class:`NotAVolume`'s code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__("not_a_volume", message)
        self.reason = reason


@dataclass(frozen=True)
class RenderRequest:
    view: str  # axial | coronal | sagittal | oblique | mip (full volume at a view angle)
    position: float | None = None  # mm along the view's axis (patient coordinates); None: the centre
    point: tuple[float, ...] | None = None  # oblique: a point of the plane (patient mm)
    normal: tuple[float, ...] | None = None  # oblique: the plane's normal (patient)
    angles: tuple[float, ...] | None = None  # oblique: rotations (degrees) of the axial plane about x, y, z
    up: tuple[float, ...] | None = None  # oblique: the patient direction shown towards the top
    thickness: float = 0.0  # slab thickness in mm; 0: a thin MPR
    mode: str = "mip"
    azimuth: float = 0.0  # mip: rotation about the patient's head-foot axis (degrees)
    elevation: float = 0.0
    width: int | None = None  # output limits in pixels; the physical aspect ratio is kept
    height: int | None = None
    fast: bool = False  # nearest-neighbour sampling (while interacting)
    window: tuple[float, ...] | None = None  # (center, width)
    preset: str | None = None  # a named preset, "dicom" or "dicom:N" (the series' own presets)
    format: str = "jpeg"
    q: int = 90  # JPEG/WebP quality

    def canonical(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Rendered:
    etag: str
    data: bytes | None  # None: the client's copy (``unless``) is current
    view: views.View | None
    final: bool  # False: the default window came from a volume still loading; do not cache


class RenderService:
    def __init__(self, repository: RenderRepository, blobs: BlobStore, settings: RenderSettings) -> None:
        self.repository = repository
        self.blobs = blobs
        self.settings = settings
        self.cache = VolumeCache(settings.cache_mb << 20)
        self.cpu = CpuBackend()
        self._gl: Backend | None = None
        self._gl_tried = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ backends

    def backend(self) -> Backend:
        """The configured backend: ``gl`` when asked (or, for ``auto``, when a hardware context exists),
        else the CPU; a GL backend that cannot be made falls back to the CPU with a warning."""
        if self.settings.backend == "cpu":
            return self.cpu
        with self._lock:
            if not self._gl_tried:
                self._gl_tried = True
                self._gl = _make_gl(self.settings.backend == "gl")
        return self._gl or self.cpu

    def warm_up(self) -> None:
        """Load (or, the first time on a machine, compile) the CPU kernels and probe for GL, so that the
        first request does not pay for it; ``rishub serve`` runs it in the background at start."""
        try:
            cpu.warm()
            log.info("render: %s backend ready", self.backend().name)
        except Exception:  # noqa: BLE001 - the first request will try again and report
            log.exception("render: warm-up failed")

    def close(self) -> None:
        """Stop background loads and release the GL context."""
        self.cache.clear()
        if self._gl is not None and hasattr(self._gl, "close"):
            self._gl.close()

    # ------------------------------------------------------------------ volumes

    def _stamp(self, ref: str) -> tuple[str, str]:
        found = self.repository.stamp(ref)
        if found is None:
            raise HubError("unknown_resource", f"unknown series: {ref}")
        return found

    def volume(self, ref: str) -> tuple[str, str, Cached]:
        """(series id, stamp, cached volume), starting the load when the series is not cached."""
        public_id, stamp = self._stamp(ref)
        return public_id, stamp, self._cached(public_id, stamp)

    def _cached(self, public_id: str, stamp: str) -> Cached:
        def start() -> tuple[Volume, Loader]:
            series = self.repository.series(public_id)
            if series is None:
                raise HubError("unknown_resource", f"unknown series: {public_id}")
            try:
                plan = plan_volume([json.loads(i.metadata_json) for i in series.instances])
            except NotAVolume as exc:
                raise NotAVolumeError(exc.reason, str(exc)) from None
            vol = new_volume(plan)
            paths = [self.blobs.path(i.blob_key) for i in series.instances]
            return vol, Loader(vol, plan, frame_reader(plan, paths))

        return self.cache.get_or_start((public_id, stamp), start)

    def info(self, ref: str) -> dict[str, Any]:
        public_id, _, cached = self.volume(ref)
        vol = cached.volume
        nz, ny, nx = vol.shape
        value_range = vol.value_range()
        return {
            "Series": public_id,
            "Dimensions": [nx, ny, nz],
            "Spacing": [round(float(s), 6) for s in vol.spacing],
            "Origin": [round(float(v), 6) for v in vol.origin],
            "Orientation": [round(float(v), 6) for v in (*vol.row_dir, *vol.col_dir)],
            "Normal": [round(float(v), 6) for v in vol.normal],
            "Extent": [round(float(n * s), 3) for n, s in zip((nx, ny, nz), vol.spacing, strict=True)],
            "ValueRange": list(value_range) if value_range else None,
            "DataType": str(vol.data.dtype),
            "Monochrome1": vol.monochrome1,
            "Windows": [{"Center": c, "Width": w, "Explanation": e} for c, w, e in vol.windows],
            "Presets": {name: {"Center": c, "Width": w} for name, (c, w) in window.PRESETS.items()},
            "Loaded": round(float(vol.ready.mean()), 4),
            "Complete": vol.complete,
            "Error": vol.error,
            "Backend": self.backend().name,
        }

    # ------------------------------------------------------------------ images

    def image(self, ref: str, req: RenderRequest, unless: Collection[str] = ()) -> Rendered:
        """The encoded image, its view (labels, pixel size, patient geometry), its ETag (the series' stamp
        and the request) and whether it is final: an image of a volume still loading whose window comes
        from what is decoded so far may change, so it must not be cached under the ETag. When the ETag is
        in ``unless`` nothing is rendered (304). A load cancelled meanwhile (the series changed, or the
        volume was evicted) is started again once, then the client is asked to retry (503)."""
        for attempt in range(2):
            public_id, stamp = self._stamp(ref)
            etag = hashlib.sha1(f"{public_id}|{stamp}|{req.canonical()}".encode()).hexdigest()
            if etag in unless:
                return Rendered(etag, None, None, True)
            cached = self._cached(public_id, stamp)
            vol = cached.volume
            view = self.view(vol, req)
            if not vol.ready[view.slices].all():
                cached.loader.prioritise(range(*view.slices.indices(vol.shape[0])))
                vol.wait_for(view.slices, self.settings.wait_seconds)
                if not vol.ready[view.slices].all():
                    if vol.error == "cancelled" and attempt == 0:
                        continue
                    if vol.error and vol.error != "cancelled":
                        raise NotAVolumeError("undecodable", f"the series could not be decoded: {vol.error}")
                    raise HubError("busy", "the series is still loading or changed meanwhile; try again")
            final = vol.complete or req.window is not None or bool(req.preset) or (
                vol.window is not None and vol.window[1] >= 1)
            values = self.sample(vol, view.plane)
            center, width = self.windowing(vol, req)
            image = window.apply(values, center, width, vol.monochrome1)
            return Rendered(etag, window.encode(image, req.format, quality=req.q), view, final)
        raise AssertionError("unreachable")

    def view(self, vol: Volume, req: RenderRequest) -> views.View:
        limit = self.settings.max_size
        try:
            return views.plan(vol, views.ViewRequest(
                view="projection" if req.view == "mip" else req.view, position=req.position, point=req.point,
                normal=req.normal, angles=req.angles, up=req.up, azimuth=req.azimuth, elevation=req.elevation,
                thickness=req.thickness, mode=req.mode, width=min(req.width or 512, limit),
                height=min(req.height or 512, limit), interpolation="nearest" if req.fast else "linear"))
        except ValueError as exc:
            raise HubError("bad_request", str(exc)) from None

    def sample(self, vol: Volume, plane: Plane) -> np.ndarray:
        """Values on the plane; a volume still loading is sampled on the CPU (GL textures are uploaded
        whole), and a GL failure (texture too large, out of memory) falls back to the CPU."""
        backend = self.backend() if vol.complete else self.cpu
        fill = OUTSIDE
        if backend is not self.cpu:
            try:
                return backend.render(vol.data, plane, fill)
            except Exception as exc:  # noqa: BLE001 - GlUnavailable or a GL error: the CPU still answers
                log.warning("GL render failed (%s); rendering on the CPU", exc)
        return self.cpu.render(vol.data, plane, fill)

    @staticmethod
    def windowing(vol: Volume, req: RenderRequest) -> tuple[float, float]:
        """Explicit center/width, a named preset, one of the series' own presets (``dicom:N``), else the
        series' default or the decoded value range (:func:`hub.render.window.resolve`)."""
        if req.preset and req.preset.startswith("dicom"):
            number = req.preset.split(":", 1)[1] if ":" in req.preset else "0"
            if not number.isdecimal() or not number.isascii():
                raise HubError("bad_request", "'preset' dicom:N takes a preset number N from 0")
            index = int(number)
            if not vol.windows:
                raise HubError("bad_request", "the series has no window presets of its own")
            if not 0 <= index < len(vol.windows):
                raise HubError("bad_request", f"the series has {len(vol.windows)} window preset(s): dicom:0..")
            c, w, _ = vol.windows[index]
            return c, w
        center, width = req.window if req.window is not None else (None, None)
        try:
            return window.resolve(vol, center, width, req.preset or None)
        except ValueError as exc:
            raise HubError("bad_request", str(exc)) from None


def _make_gl(forced: bool) -> Backend | None:
    try:
        from hub.render import gl
    except ImportError as exc:  # PyOpenGL missing
        (log.warning if forced else log.info)("render: no OpenGL backend (%s); using the CPU", exc)
        return None
    if not gl.available():
        (log.warning if forced else log.info)("render: no GL context (%s); using the CPU", gl.unavailable_reason())
        return None
    backend = gl.GlBackend()
    if backend.software and not forced:
        log.info("render: GL context is software (%s); the CPU backend is faster here", backend.description)
        backend.close()
        return None
    log.info("render: OpenGL backend on %s", backend.description)
    return backend
