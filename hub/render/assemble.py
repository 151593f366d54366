"""A series as a volume: geometry planned from the instances' DICOM JSON, slices decoded in the background.

* :func:`plan_volume` checks and sorts the slices without opening a file (PS3.3 C.7.6.2.1.1 Image Plane
  Module; C.7.6.16.2 Multi-frame Functional Groups for Enhanced CT/MR, one slice per frame).
* :func:`read_frame` (from :mod:`hub.render.frames`) reads one frame's stored values.
* :func:`new_volume`, :func:`fill_slice`, :func:`load` and :class:`Loader` fill the volume, the requested
  slices first, so that a slice is served as soon as it is decoded.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hub.render.frames import read_frame
from hub.render.volume import Volume

__all__ = ["REASONS", "Loader", "NotAVolume", "VolumePlan", "fill_slice", "frame_reader", "load", "new_volume",
           "plan_volume", "read_frame"]

REASONS = ("single-image", "mixed-orientation", "mixed-size", "mixed-spacing", "mixed-frame-of-reference",
           "missing-geometry", "gantry-tilt", "gap", "duplicate-position", "multi-frame-geometry", "color")
SHARED, PER_FRAME = "52009229", "52009230"  # (5200,9229) / (5200,9230) functional groups sequences
IPP, IOP, PIXEL_SPACING = "00200032", "00200037", "00280030"
POSITION_SQ, ORIENTATION_SQ, MEASURES_SQ = "00209113", "00209116", "00289110"
RESCALE_SQ, VOI_SQ = "00289145", "00289132"  # Pixel Value Transformation, Frame VOI LUT
SLOPE, INTERCEPT, CENTER, WIDTH, EXPLANATION = "00281053", "00281052", "00281050", "00281051", "00281055"
POSITION_TOL = 0.01  # mm
INT16 = (-32768, 32767)

Reader = Callable[[int], np.ndarray]


class NotAVolume(Exception):
    """The series cannot be assembled into a regular volume; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class VolumePlan:
    """The volume a series makes; slice ``k`` is frame ``frames[k]`` (1-based) of ``metas[instances[k]]``."""

    shape: tuple[int, int, int]  # (nz, ny, nx)
    origin: np.ndarray
    row_dir: np.ndarray
    col_dir: np.ndarray
    normal: np.ndarray
    spacing: np.ndarray  # (sx, sy, sz) mm
    instances: np.ndarray  # (nz,) int
    frames: np.ndarray  # (nz,) int, 1-based
    slopes: np.ndarray  # (nz,) float
    intercepts: np.ndarray  # (nz,) float
    dtype: np.dtype
    monochrome1: bool = False
    window: tuple[float, float] | None = None
    windows: tuple[tuple[float, float, str], ...] = ()
    clip: bool = False  # int16 although the declared ranges exceed it: values saturate at the int16 limits

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


def _values(d: dict | None, tag: str) -> list | None:
    elem = d.get(tag) if d else None
    return elem.get("Value") if isinstance(elem, dict) else None


def _first(d: dict | None, tag: str, default: object) -> object:
    values = _values(d, tag)
    return values[0] if values and values[0] is not None else default


def _raw(d: dict | None, tag: str, n: int) -> list:
    """The first ``n`` values as stored (numbers or strings), or ``n`` Nones (NaN once converted)."""
    values = _values(d, tag)
    return values[:n] if values and len(values) >= n else [None] * n


def _item(d: dict | None, tag: str) -> dict | None:
    values = _values(d, tag)
    return values[0] if values and isinstance(values[0], dict) else None


def _windows(d: dict | None) -> tuple[tuple[float, float, str], ...]:
    """VOI LUT presets (PS3.3 C.11.2): every (center, width) pair with its explanation."""
    try:
        centers = [float(v) for v in _values(d, CENTER) or []]
        widths = [float(v) for v in _values(d, WIDTH) or []]
    except (TypeError, ValueError):
        return ()
    texts = [str(t or "") for t in _values(d, EXPLANATION) or []]
    pairs = zip(centers, widths, strict=False)
    return tuple((c, w, texts[i] if i < len(texts) else "") for i, (c, w) in enumerate(pairs) if w > 0)


def _slices(i: int, meta: dict) -> list[tuple]:
    """(instance, frame, position, orientation, pixel spacing, slope, intercept, VOI LUT item) per frame,
    values as stored in the JSON (converted to numbers in bulk by :func:`plan_volume`)."""
    try:
        frames = int(_first(meta, "00280008", 1))  # type: ignore[call-overload]
    except ValueError:
        raise NotAVolume("multi-frame-geometry", "invalid Number of Frames") from None
    slope0 = _first(meta, SLOPE, None)
    slope0 = _first(meta, "3004000E", 1.0) if slope0 is None else slope0  # RT Dose Grid Scaling
    intercept0 = _first(meta, INTERCEPT, 0.0)
    shared, per_frame = _item(meta, SHARED), _values(meta, PER_FRAME)
    if shared is None and per_frame is None:
        ipp, iop, ps = _raw(meta, IPP, 3), _raw(meta, IOP, 6), _raw(meta, PIXEL_SPACING, 2)
        if frames <= 1:
            return [(i, 1, ipp, iop, ps, slope0, intercept0, meta)]
        offsets = _values(meta, "3004000C")  # Grid Frame Offset Vector (PS3.3 C.8.8.3.2)
        if not offsets or len(offsets) < frames or None in ipp or None in iop:
            raise NotAVolume("multi-frame-geometry", "a multi-frame instance has no per-frame geometry")
        o = np.array(iop, dtype=float)
        d = np.array(offsets[:frames], dtype=float)
        if d[0] != 0:  # the absolute form: the first offset is the first frame's z (PS3.3 C.8.8.3.2)
            d = d - d[0]
        at = np.array(ipp, dtype=float) + np.outer(d, np.cross(o[:3], o[3:]))
        return [(i, f + 1, list(at[f]), iop, ps, slope0, intercept0, meta) for f in range(frames)]
    if per_frame is not None and len(per_frame) < frames:
        raise NotAVolume("multi-frame-geometry", "the per-frame functional groups do not cover every frame")
    out = []
    for f in range(frames):
        pf = per_frame[f] if per_frame is not None and isinstance(per_frame[f], dict) else None

        def macro(tag: str, pf: dict | None = pf) -> dict | None:
            return _item(pf, tag) or _item(shared, tag)

        rescale, voi = macro(RESCALE_SQ), macro(VOI_SQ)
        out.append((i, f + 1, _raw(macro(POSITION_SQ), IPP, 3), _raw(macro(ORIENTATION_SQ), IOP, 6),
                    _raw(macro(MEASURES_SQ), PIXEL_SPACING, 2), _first(rescale, SLOPE, slope0),
                    _first(rescale, INTERCEPT, intercept0), voi if voi is not None else meta))
    return out


def _pixel_key(meta: dict) -> tuple:
    return tuple(_first(meta, tag, None) for tag in ("00280002", "00280010", "00280011", "00280100", "00280101",
                                                     "00280103", "00280106", "00280107", "00200052"))


def _stored_range(key: tuple) -> tuple[float, float]:
    """Range of the stored values (PS3.3 C.7.6.3.1): Bits Stored and Pixel Representation, narrowed by
    Smallest/Largest Image Pixel Value when given."""
    bits = int(key[4] or key[3] or 16)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if key[5] == 1 else (0, 2**bits - 1)
    smallest, largest = key[6], key[7]
    lo = max(lo, float(smallest)) if smallest is not None else lo
    return lo, min(hi, float(largest)) if largest is not None else hi


def plan_volume(metas: Sequence[dict], *, saturate: bool = True) -> VolumePlan:
    """Check and sort the slices of a series from its DICOM JSON (PS3.18 F.2); raise :class:`NotAVolume`.

    With ``saturate`` (the default) an integral rescale always gives int16, values beyond its limits (padding,
    mostly) saturating; without it the volume is int16 only when every declared stored range (Bits Stored,
    Pixel Representation, Smallest/Largest Image Pixel Value) rescaled fits int16. Else it is float32."""
    rows = [s for i, meta in enumerate(metas) for s in _slices(i, meta)]
    if len(rows) < 2:
        raise NotAVolume("single-image", "the series has a single image")
    keys = [_pixel_key(m) for m in metas]
    if any(int(k[0] or 1) != 1 for k in keys):
        raise NotAVolume("color", "colour images are not a volume of modality values")
    sizes = {(int(k[1] or 0), int(k[2] or 0)) for k in keys}
    if len(sizes) > 1:
        raise NotAVolume("mixed-size", f"images of different sizes: {sorted(sizes)}")
    ny, nx = sizes.pop()
    if ny <= 0 or nx <= 0:
        raise NotAVolume("missing-geometry", "Rows or Columns missing")
    if len({k[8] for k in keys if k[8]}) > 1:
        raise NotAVolume("mixed-frame-of-reference", "the images have different frames of reference")
    try:
        ipp = np.array([r[2] for r in rows], dtype=float)
        iop = np.array([r[3] for r in rows], dtype=float)
        ps = np.array([r[4] for r in rows], dtype=float)
        slopes = np.array([r[5] for r in rows], dtype=float)
        intercepts = np.array([r[6] for r in rows], dtype=float)
    except (TypeError, ValueError):
        raise NotAVolume("missing-geometry", "unreadable geometry or rescale values") from None
    if np.isnan(ipp).any() or np.isnan(iop).any() or np.isnan(ps).any():
        raise NotAVolume("missing-geometry", "ImagePositionPatient, ImageOrientationPatient or PixelSpacing missing")
    row_dir, col_dir = iop[0, :3], iop[0, 3:]
    if np.abs(iop - iop[0]).max() > 1e-3:
        raise NotAVolume("mixed-orientation", "the images have different orientations")
    norms = np.linalg.norm(row_dir), np.linalg.norm(col_dir)
    if min(norms) < 0.5 or abs(row_dir @ col_dir) > 1e-3 * norms[0] * norms[1] or ps[0].min() <= 0:
        raise NotAVolume("missing-geometry", "invalid ImageOrientationPatient or PixelSpacing")
    if np.abs(ps - ps[0]).max() > 1e-3 * ps[0].max():
        raise NotAVolume("mixed-spacing", "the images have different pixel spacings")
    row_dir, col_dir = row_dir / norms[0], col_dir / norms[1]
    normal = np.cross(row_dir, col_dir)
    dist = ipp @ normal
    order = np.argsort(dist, kind="stable")
    dist, ipp = dist[order], ipp[order]
    steps = np.diff(dist)
    if steps.min() <= POSITION_TOL:
        raise NotAVolume("duplicate-position", "several images at the same position")
    if steps.max() - steps.min() > max(POSITION_TOL, 0.01 * steps.min()):
        raise NotAVolume("gap", f"slice spacing varies from {steps.min():.3g} to {steps.max():.3g} mm")
    offsets = ipp - ipp[0]
    drift = np.linalg.norm(offsets - np.outer(offsets @ normal, normal), axis=1).max()
    if drift > max(POSITION_TOL, 0.1 * ps[0].min()):
        angle = np.degrees(np.arctan2(drift, dist[-1] - dist[0]))
        raise NotAVolume("gantry-tilt", f"slices are offset in-plane along the stack (about {angle:.2g} degrees)")
    instances = np.array([r[0] for r in rows])[order]
    slopes, intercepts = slopes[order], intercepts[order]
    ranges = {key: _stored_range(key) for key in set(keys)}
    stored = np.array([ranges[keys[i]] for i in instances])
    scaled = stored * slopes[:, None] + intercepts[:, None]
    integral = np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts))
    fits = integral and scaled.min() >= INT16[0] and scaled.max() <= INT16[1]
    clip = bool(saturate and integral and not fits)
    photometric = str(_first(metas[0], "00280004", "")).strip().upper()
    windows = _windows(rows[order[0]][7])
    return VolumePlan(
        shape=(len(rows), ny, nx), origin=ipp[0].copy(), row_dir=row_dir, col_dir=col_dir, normal=normal,
        spacing=np.array([ps[0][1], ps[0][0], (dist[-1] - dist[0]) / (len(rows) - 1)]), instances=instances,
        frames=np.array([r[1] for r in rows])[order], slopes=slopes, intercepts=intercepts,
        dtype=np.dtype(np.int16 if fits or clip else np.float32), monochrome1=photometric == "MONOCHROME1",
        window=windows[0][:2] if windows else None, windows=windows, clip=clip)


def new_volume(plan: VolumePlan) -> Volume:
    """An empty volume (nothing decoded yet) with the plan's geometry."""
    return Volume(data=np.empty(plan.shape, dtype=plan.dtype), origin=plan.origin, row_dir=plan.row_dir,
                  col_dir=plan.col_dir, normal=plan.normal, spacing=plan.spacing, monochrome1=plan.monochrome1,
                  window=plan.window, windows=plan.windows, ready=np.zeros(plan.shape[0], dtype=bool))


def fill_slice(volume: Volume, plan: VolumePlan, k: int, stored: np.ndarray) -> None:
    """Write slice ``k`` as modality values (PS3.3 C.11.1.1.2: slope * stored + intercept) and mark it ready."""
    if stored.shape != volume.shape[1:]:
        raise ValueError(f"slice {k} is {stored.shape}, the volume expects {volume.shape[1:]}")
    out = volume.data[k]
    slope, intercept = plan.slopes[k], plan.intercepts[k]
    if out.dtype == np.int16:
        if plan.clip:
            np.clip(stored.astype(np.int64) * int(slope) + int(intercept), *INT16, out=out, casting="unsafe")
        elif slope == 1 and intercept == 0:
            np.copyto(out, stored, casting="unsafe")
        else:
            np.copyto(out, stored.astype(np.int32) * int(slope) + int(intercept), casting="unsafe")
    else:
        np.multiply(stored, np.float32(slope), out=out, casting="unsafe")
        out += np.float32(intercept)
    volume.mark_ready(k)


def frame_reader(plan: VolumePlan, paths: Sequence[Path]) -> Reader:
    """The reader of :func:`load`: slice ``k`` from ``paths`` (indexed like the plan's ``metas``)."""
    return lambda k: read_frame(paths[int(plan.instances[k])], int(plan.frames[k]))


def load(volume: Volume, plan: VolumePlan, reader: Reader, order: Iterable[int] | None = None) -> None:
    """Decode every slice not yet ready, ``order`` first; on an error the volume fails and it is raised."""
    Loader(volume, plan, reader, order).run()


class Loader:
    """Fills a volume in background threads; :meth:`prioritise` puts slices at the head of the queue."""

    def __init__(self, volume: Volume, plan: VolumePlan, reader: Reader, order: Iterable[int] | None = None,
                 *, workers: int = 1) -> None:
        self.volume, self.plan, self.reader = volume, plan, reader
        nz = volume.shape[0]
        first = [int(k) for k in order] if order is not None else []
        seen = set(first)
        self._queue: deque[int] = deque(first + [k for k in range(nz) if k not in seen])
        self._urgent: deque[int] = deque()
        self._taken = volume.ready.copy()
        self._lock = threading.Lock()
        self._workers = max(1, workers)
        self._threads: list[threading.Thread] = []
        self._running = 0
        self._cancelled = False
        self._finished = threading.Event()

    def start(self) -> Loader:
        """Start the background threads (once); returns ``self``."""
        with self._lock:
            if self._threads:
                return self
            self._threads = [threading.Thread(target=self._work, name=f"volume-loader-{i}", daemon=True)
                             for i in range(self._workers)]
            self._running = len(self._threads)
        for thread in self._threads:
            thread.start()
        return self

    def prioritise(self, slices: int | Iterable[int]) -> None:
        """Decode these slices next (the latest request first), before the rest of the queue."""
        ks = [int(slices)] if isinstance(slices, int | np.integer) else [int(k) for k in slices]
        with self._lock:
            self._urgent.extendleft(k for k in reversed(ks) if not self._taken[k])

    def cancel(self) -> None:
        """Stop after the slices being decoded; an incomplete volume fails with ``cancelled``."""
        with self._lock:
            self._cancelled = True
        if not self._threads and not self.volume.complete:
            self.volume.fail("cancelled")
            self._finished.set()

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def progress(self) -> float:
        return float(self.volume.ready.mean()) if self.volume.ready.size else 1.0

    def join(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    def run(self) -> None:
        """Decode in the calling thread until every slice is ready; re-raise a decoding error."""
        k = None
        try:
            while (k := self._next()) is not None:
                fill_slice(self.volume, self.plan, k, self.reader(k))
        except Exception as exc:
            self._fail(k, exc)
            raise
        finally:
            if not self._threads:
                self._finished.set()

    def _next(self) -> int | None:
        with self._lock:
            if self._cancelled or self.volume.error is not None:
                return None
            for queue in (self._urgent, self._queue):
                while queue:
                    k = queue.popleft()
                    if not self._taken[k]:
                        self._taken[k] = True
                        return k
            return None

    def _fail(self, k: int | None, exc: Exception) -> None:
        with self._lock:
            self._cancelled = True
        self.volume.fail(f"slice {k}: {type(exc).__name__}: {exc}")

    def _work(self) -> None:
        try:
            self.run()
        except Exception:  # noqa: BLE001, S110 - recorded in volume.error by run()
            pass
        finally:
            with self._lock:
                self._running -= 1
                last = self._running == 0
            if last:
                if self._cancelled and not self.volume.complete and self.volume.error is None:
                    self.volume.fail("cancelled")
                self._finished.set()
