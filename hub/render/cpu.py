"""The CPU render backend: numpy slicing for planes on the voxel grid, numba kernels for the rest.

* Axis-aligned fast path: when ``u``, ``v`` (and ``w`` for a slab) each step a whole number of voxels
  along distinct voxel axes from a voxel centre, the image is a slice of the array (a view: no copy, the
  volume's dtype) or a numpy reduction of a sub-block, split across :data:`THREADS` threads (numpy
  releases the GIL) so that both cores read memory. Reductions along the contiguous x axis (a sagittal
  slab of an axial acquisition) go to a numba loop instead: numpy's short strided reductions are slow.
* Planes along the voxel axes but off the grid along one or two axes (a sagittal view of slices thicker
  than the pixels, a slice between two acquired ones): a numba loop with two or four reads per sample.
* Anything else: the fused numba kernels of :mod:`hub.render.kernels` (interpolation and slab reduction
  in one pass, parallel over the output), float32.

numba's default thread pool does not take concurrent launches from several threads, so kernel calls are
serialised by a lock; each one already uses every core.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from hub.render import kernels
from hub.render.plane import Plane

THREADS = 2
_KERNEL_LOCK = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def warm() -> None:
    """Compile or load the numba kernels now, so that the first request does not wait for them."""
    with _KERNEL_LOCK:
        kernels.warm()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(THREADS, thread_name_prefix="render")
        return _pool


class CpuBackend:
    """:class:`hub.render.plane.Backend` on the CPU."""

    name = "cpu"

    def render(self, data: np.ndarray, plane: Plane, fill: float) -> np.ndarray:
        if data.ndim != 3:
            raise ValueError("the volume must be 3-D (z, y, x)")
        fast = _grid_steps(plane)
        if fast is not None:
            return _render_grid(data, plane, fill, *fast)
        if data.flags.c_contiguous:
            separable = _separable(data, plane, fill)
            if separable is not None:
                return separable
        return _render_kernel(data, plane, fill)


def _grid_steps(plane: Plane) -> tuple[list[int], list[int], np.ndarray] | None:
    """(voxel axes, integer steps, first sample index) of u, v (and w) when the plane lies on the grid."""
    vectors = [plane.u, plane.v] + ([plane.w] if plane.samples > 1 else [])
    axes, steps = [], []
    for vec in vectors:
        nonzero = np.flatnonzero(np.abs(vec) > 1e-9)
        if len(nonzero) != 1:
            return None
        step = float(vec[nonzero[0]])
        if abs(step - round(step)) > 1e-6 or round(step) == 0:
            return None
        axes.append(int(nonzero[0]))
        steps.append(round(step))
    if len(set(axes)) != len(axes):
        return None
    first = np.asarray(plane.origin, float) - (plane.samples - 1) / 2 * np.asarray(plane.w, float)
    if plane.samples == 1:
        first = np.asarray(plane.origin, float)
    if np.abs(first - np.round(first)).max() > 1e-6:
        return None
    return axes, steps, np.round(first).astype(np.int64)


def _valid(start: int, step: int, count: int, n: int) -> tuple[int, int]:
    """The [i0, i1) of i in range(count) with 0 <= start + i*step < n."""
    if step > 0:
        i0, i1 = (-start + step - 1) // step if start < 0 else 0, (n - 1 - start) // step + 1
    else:
        i0 = (start - (n - 1) + (-step) - 1) // (-step) if start > n - 1 else 0
        i1 = start // (-step) + 1 if start >= 0 else 0
    return max(i0, 0), max(min(i1, count), max(i0, 0))


def _index(start: int, step: int, i0: int, i1: int) -> slice:
    first, last = start + i0 * step, start + (i1 - 1) * step
    stop = last + (1 if step > 0 else -1)
    return slice(first, stop if stop >= 0 else None, step)


def _render_grid(data: np.ndarray, plane: Plane, fill: float, axes: list[int], steps: list[int],
                 first: np.ndarray) -> np.ndarray:
    shape_xyz = data.shape[::-1]
    counts = [plane.width, plane.height] + ([plane.samples] if plane.samples > 1 else [])
    ranges = [_valid(int(first[a]), s, cnt, shape_xyz[a]) for a, s, cnt in zip(axes, steps, counts, strict=True)]
    index: list[slice | int] = [slice(None)] * 3  # in data order (z, y, x)
    for a, s, (i0, i1) in zip(axes, steps, ranges, strict=True):
        index[2 - a] = _index(int(first[a]), s, i0, i1)
    if plane.samples == 1:
        (rest,) = set(range(3)) - set(axes)
        if not 0 <= first[rest] < shape_xyz[rest]:
            return np.full((plane.height, plane.width), fill, np.float32)
        index[2 - rest] = int(first[rest])
    (c0, c1), (r0, r1) = ranges[0], ranges[1]
    if c1 <= c0 or r1 <= r0 or (plane.samples > 1 and ranges[2][1] <= ranges[2][0]):
        return np.full((plane.height, plane.width), fill, np.float32)
    if plane.samples == 1:
        block = data[tuple(index)]
        image = block if axes[1] > axes[0] else block.T  # data order puts the higher voxel axis first
        image = image.view()
        image.flags.writeable = False
    else:
        image = _reduce_block(data, tuple(index), 2 - axes[2], plane.mode)  # type: ignore[arg-type]
        if axes[1] < axes[0]:
            image = image.T
    if (c0, c1, r0, r1) == (0, plane.width, 0, plane.height):
        return image
    out_dtype = data.dtype if image.dtype == data.dtype and _fits(fill, data.dtype) else np.float32
    out = np.full((plane.height, plane.width), fill, out_dtype)
    out[r0:r1, c0:c1] = image
    return out


def _fits(value: float, dtype: np.dtype) -> bool:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(value).is_integer() and info.min <= value <= info.max
    return True


def _reduce_block(data: np.ndarray, index: tuple[slice, slice, slice], axis: int, mode: str) -> np.ndarray:
    """Reduce ``data[index]`` along ``axis`` (data order); the result in the order of the two other axes.
    Along z the slices are split between the threads (each reads contiguous memory) and the partial
    results combined; along y the threads split z; along x a numba loop reads each row's samples."""
    block = data[index]
    count = block.shape[axis]
    out_dtype = np.float32 if mode == "avg" else data.dtype
    if axis == 2 and data.flags.c_contiguous:
        nz, ny, nx = data.shape
        rz, ry, rx = (range(*sl.indices(n)) for sl, n in zip(index, data.shape, strict=True))
        out = np.empty((len(rz), len(ry)), out_dtype)
        with _KERNEL_LOCK:
            kernels.reduce_x(data.reshape(-1), np.array([1, nx, nx * ny], np.int64), rz.start, rz.step, ry.start,
                             ry.step, min(rx), abs(rx.step), len(rx), kernels.MODES[mode], out)
        return out
    acc_dtype = np.float32 if count * 32768 < 2**24 else np.float64
    split = 0 if axis != 0 else 1 if count < THREADS else 0  # the data axis the threads divide
    bounds = [block.shape[split] * i // THREADS for i in range(THREADS + 1)]
    parts: list[np.ndarray | None] = [None] * THREADS

    def part(i: int) -> None:
        sub = block[bounds[i]:bounds[i + 1]] if split == 0 else block[:, bounds[i]:bounds[i + 1]]
        if mode == "mip":
            parts[i] = np.max(sub, axis=axis)
        elif mode == "minip":
            parts[i] = np.min(sub, axis=axis)
        else:
            parts[i] = np.sum(sub, axis=axis, dtype=acc_dtype)

    if block.size < 1 << 20:
        parts = [None]
        bounds = [0, block.shape[split]]
        part(0)
    else:
        for future in [_executor().submit(part, i) for i in range(THREADS)]:
            future.result()
    if split == axis:  # partial reductions of the same pixels
        combine = {"mip": np.maximum, "minip": np.minimum}.get(mode, np.add)
        out = parts[0]
        for p in parts[1:]:
            combine(out, p, out=out)
    else:
        out = np.concatenate(parts, axis=0)
    if mode == "avg":
        out = (out / count).astype(np.float32)
    return out


def _separable(data: np.ndarray, plane: Plane, fill: float) -> np.ndarray | None:
    """:func:`hub.render.kernels.render_separable` when u, v (and w) run along distinct voxel axes and the
    samples leave the voxel grid along at most two of them (any number for nearest); else None."""
    shape_xyz = data.shape[::-1]
    strides = (1, shape_xyz[0], shape_xyz[0] * shape_xyz[1])
    half = (plane.samples - 1) / 2
    dims = [(plane.u, plane.origin, plane.width), (plane.v, plane.origin, plane.height)]
    if plane.samples > 1:
        dims.append((plane.w, np.asarray(plane.origin) - half * np.asarray(plane.w), plane.samples))
    axes = []
    for vec, _, _ in dims:
        nonzero = np.flatnonzero(np.abs(vec) > 1e-9)
        if len(nonzero) != 1:
            return None
        axes.append(int(nonzero[0]))
    if len(set(axes)) != len(axes):
        return None
    if plane.samples == 1:  # the thin plane's own axis: one "sample" at the origin
        (rest,) = set(range(3)) - set(axes)
        axes.append(rest)
        dims.append((np.zeros(3), plane.origin, 1))
    nearest = plane.interpolation == "nearest"
    tables, steps = [], []  # steps: the element offsets toward the upper neighbour on off-grid axes
    for a, (vec, start, count) in zip(axes, dims, strict=True):
        pos = float(start[a]) + np.arange(count) * float(vec[a])
        inside = np.flatnonzero((pos >= -kernels.EPS) & (pos <= shape_xyz[a] - 1 + kernels.EPS))
        frac = np.zeros(count, np.float32)
        if nearest:
            lo = np.clip(np.floor(pos + 0.5), 0, shape_xyz[a] - 1)
        elif np.abs(pos - np.round(pos)).max() > 1e-6:
            lo = np.clip(np.floor(pos), 0, max(shape_xyz[a] - 2, 0))
            frac = np.clip(pos - lo, 0, 1).astype(np.float32)
            steps.append(strides[a] if shape_xyz[a] > 1 else 0)
        else:
            lo = np.clip(np.round(pos), 0, shape_xyz[a] - 1)
        first, last = (int(inside[0]), int(inside[-1]) + 1) if len(inside) else (0, 0)
        tables.append((np.ascontiguousarray((lo[first:last] * strides[a]).astype(np.int64)),
                       np.ascontiguousarray(frac[first:last]), len(steps) if frac.any() else 0, first, last))
    if len(steps) > 2:
        return None
    out = np.full((plane.height, plane.width), fill, np.float32)
    (c0, c1), (r0, r1), (k0, k1) = ((t[3], t[4]) for t in tables)
    if c1 > c0 and r1 > r0 and k1 > k0:
        args = []
        for offs, frac, which, _, _ in (tables[1], tables[0], tables[2]):  # rows, columns, samples
            zero = np.zeros(len(offs), np.float32)
            args += [offs, frac if which == 1 else zero, frac if which == 2 else zero]
        ha, hb = (steps + [0, 0])[:2]
        with _KERNEL_LOCK:
            kernels.render_separable(data.reshape(-1), *args, ha, hb, plane.samples > 1 and axes[2] == 0,
                                     kernels.MODES[plane.mode], out[r0:r1, c0:c1])
    return out


def _render_kernel(data: np.ndarray, plane: Plane, fill: float) -> np.ndarray:
    nz, ny, nx = data.shape
    flat = (data if data.flags.c_contiguous else np.ascontiguousarray(data)).reshape(-1)
    n = np.array([nx, ny, nz], np.int64)
    s = np.array([1, nx, nx * ny], np.int64)
    vec = [np.ascontiguousarray(x, dtype=np.float64) for x in (plane.origin, plane.u, plane.v, plane.w)]
    out = np.empty((plane.height, plane.width), np.float32)
    nearest = plane.interpolation == "nearest"
    fill = float(fill)
    with _KERNEL_LOCK:
        if plane.samples == 1:
            kernels.render_thin(flat, n, s, vec[0], vec[1], vec[2], nearest, fill, out)
            return out
        kernels.render_slab(flat, n, s, vec[0], vec[1], vec[2], vec[3], int(plane.samples),
                            kernels.MODES[plane.mode], nearest, fill, out)
    return out
