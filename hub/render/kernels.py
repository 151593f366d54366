"""numba kernels of the CPU render backend (:mod:`hub.render.cpu`).

The volume is passed flat (``data.reshape(-1)`` of the C-contiguous ``(nz, ny, nx)`` array) with its sizes
``n = (nx, ny, nz)`` and element strides ``s = (1, nx, nx*ny)``; vectors are voxel coordinates ``(x, y, z)``.
The output pixel ``(r, c)`` of sample ``k`` is at ``origin + c*u + r*v + (k - (samples-1)/2)*w``
(:class:`hub.render.plane.Plane`). Samples outside the volume (beyond the first/last voxel centres) are
skipped; a pixel with no sample inside gets ``fill``. Nearest rounds half up. Indices are computed from
the strides and read through unsigned offsets (no negative-index wraparound code in the loops).

* :func:`render_thin`: one sample per pixel (an MPR), trilinear or nearest, parallel over rows.
* :func:`render_slab`: a slab, each pixel's ray sampled trilinearly (or nearest) and reduced in one pass.
* :func:`render_separable`: u, v and w along voxel axes but off the grid along one or two of them (a
  sagittal view of thicker slices): two or four reads per sample, the weights computed once per axis.
* :func:`reduce_x`: an axis-aligned slab reduced along the contiguous x axis (a sagittal slab of an
  axial acquisition), where numpy's short strided reductions are slow.

Slab kernels work on 32x32-pixel tiles (neighbouring rays share cache lines) and keep max, min and sum
side by side (cheaper than a branch on the mode per sample). Compiled with ``cache=True`` (on disk);
:func:`warm` compiles them for int16 and float32 volumes so that no request pays the compilation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

MIP, MINIP, AVG = 0, 1, 2
MODES = {"mip": MIP, "minip": MINIP, "avg": AVG}
EPS = 1e-3  # voxels: a sample this close outside the first/last voxel centre still counts as inside
TILE = 32  # output pixels per tile side in the slab kernels
PREFETCH_ROWS = 16  # rows read ahead on strided walks (hardware prefetchers stop at 4 KiB pages: 4 rows)


@intrinsic
def _prefetch(typingctx: object, arr: types.Array, index: types.Integer) -> tuple:
    """``llvm.prefetch`` (read, keep in all cache levels) of ``arr[index]``; never faults."""
    sig = types.void(arr, index)

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        array = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, array, [args[1]], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def _clip(base: float, step: float, n: int, c0: int, c1: int) -> tuple[int, int]:
    """Narrow the index range [c0, c1) to the c where ``0 <= base + c*step <= n - 1`` (within EPS)."""
    hi_lim = n - 1 + EPS
    if abs(step) < 1e-12:
        if base < -EPS or base > hi_lim:
            return c0, c0
        return c0, c1
    a = (-EPS - base) / step
    b = (hi_lim - base) / step
    lo = min(max(c0, int(math.ceil(min(a, b)))), c1)  # never past c1: callers fill [0, c0) and [c1, end)
    hi = max(lo, min(c1, int(math.floor(max(a, b))) + 1))
    return lo, hi


@njit(cache=True, fastmath=True, inline="always")
def _lerp_axis(x: float, n: int) -> tuple[int, int, np.float32]:
    """Lower voxel index, offset to the upper one (0 on a 1-voxel axis) and weight for ``x`` in [0, n-1]."""
    i = max(min(int(x), n - 2), 0)
    return i, (1 if n > 1 else 0), np.float32(min(max(x - i, 0.0), 1.0))  # clamped like the GL backend


@njit(cache=True, fastmath=True, inline="always")
def _trilinear(flat: np.ndarray, n: np.ndarray, s: np.ndarray, x: float, y: float, z: float) -> np.float32:
    x0, dx, fx = _lerp_axis(x, n[0])
    y0, dy, fy = _lerp_axis(y, n[1])
    z0, dz, fz = _lerp_axis(z, n[2])
    i = x0 * s[0] + y0 * s[1] + z0 * s[2]
    ox, oy, oz = dx * s[0], dy * s[1], dz * s[2]
    a = np.float32(flat[np.uint64(i)])
    c00 = a + fx * (np.float32(flat[np.uint64(i + ox)]) - a)
    a = np.float32(flat[np.uint64(i + oy)])
    c01 = a + fx * (np.float32(flat[np.uint64(i + oy + ox)]) - a)
    i += oz
    a = np.float32(flat[np.uint64(i)])
    c10 = a + fx * (np.float32(flat[np.uint64(i + ox)]) - a)
    a = np.float32(flat[np.uint64(i + oy)])
    c11 = a + fx * (np.float32(flat[np.uint64(i + oy + ox)]) - a)
    p0 = c00 + fy * (c01 - c00)
    p1 = c10 + fy * (c11 - c10)
    return p0 + fz * (p1 - p0)


@njit(cache=True, fastmath=True, inline="always")
def _nearest(flat: np.ndarray, n: np.ndarray, s: np.ndarray, x: float, y: float, z: float) -> np.float32:
    i = min(int(x + 0.5), n[0] - 1) * s[0] + min(int(y + 0.5), n[1] - 1) * s[1] + min(int(z + 0.5), n[2] - 1) * s[2]
    return np.float32(flat[np.uint64(i)])


@njit(cache=True, fastmath=True, inline="always")
def _lerp(flat: np.ndarray, i: int, hi: int, f: float) -> np.float32:
    """``flat[i]`` interpolated toward ``flat[i + hi]`` by ``f``."""
    a = np.float32(flat[np.uint64(i)])
    return a + np.float32(f) * (np.float32(flat[np.uint64(i + hi)]) - a)


@njit(cache=True, inline="always")
def _init(mode: int) -> np.float32:
    return np.float32(-np.inf) if mode == MIP else (np.float32(np.inf) if mode == MINIP else np.float32(0.0))


@njit(cache=True, inline="always")
def _result(mode: int, amax: np.float32, amin: np.float32, asum: np.float32, count: int) -> np.float32:
    if mode == MIP:
        return amax
    if mode == MINIP:
        return amin
    return np.float32(asum / count)


@njit(parallel=True, cache=True, fastmath=True)
def render_thin(flat: np.ndarray, n: np.ndarray, s: np.ndarray, origin: np.ndarray, u: np.ndarray, v: np.ndarray,
                nearest: bool, fill: float, out: np.ndarray) -> None:
    """A thin MPR: ``out[r, c]`` = the volume at ``origin + c*u + r*v``."""
    height, width = out.shape
    for r in prange(height):
        bx = origin[0] + r * v[0]
        by = origin[1] + r * v[1]
        bz = origin[2] + r * v[2]
        c0, c1 = _clip(bx, u[0], n[0], 0, width)
        c0, c1 = _clip(by, u[1], n[1], c0, c1)
        c0, c1 = _clip(bz, u[2], n[2], c0, c1)
        for c in range(c0):
            out[r, c] = fill
        for c in range(c1, width):
            out[r, c] = fill
        if nearest:
            for c in range(c0, c1):
                out[r, c] = _nearest(flat, n, s, bx + c * u[0], by + c * u[1], bz + c * u[2])
        else:
            for c in range(c0, c1):
                out[r, c] = _trilinear(flat, n, s, bx + c * u[0], by + c * u[1], bz + c * u[2])


@njit(parallel=True, cache=True, fastmath=True)
def render_slab(flat: np.ndarray, n: np.ndarray, s: np.ndarray, origin: np.ndarray, u: np.ndarray, v: np.ndarray,
                w: np.ndarray, samples: int, mode: int, nearest: bool, fill: float, out: np.ndarray) -> None:
    """A slab along any direction ``w``: each pixel's ray sampled trilinearly (or nearest) and reduced."""
    height, width = out.shape
    half = (samples - 1) * 0.5
    nth = (height + TILE - 1) // TILE
    ntw = (width + TILE - 1) // TILE
    for tile in prange(nth * ntw):
        r0 = (tile // ntw) * TILE
        cc0 = (tile % ntw) * TILE
        for r in range(r0, min(r0 + TILE, height)):
            for c in range(cc0, min(cc0 + TILE, width)):
                px = origin[0] + c * u[0] + r * v[0] - half * w[0]
                py = origin[1] + c * u[1] + r * v[1] - half * w[1]
                pz = origin[2] + c * u[2] + r * v[2] - half * w[2]
                k0, k1 = _clip(px, w[0], n[0], 0, samples)
                k0, k1 = _clip(py, w[1], n[1], k0, k1)
                k0, k1 = _clip(pz, w[2], n[2], k0, k1)
                if k1 <= k0:
                    out[r, c] = fill
                    continue
                amax = np.float32(-np.inf)
                amin = np.float32(np.inf)
                asum = np.float32(0.0)
                for k in range(k0, k1):
                    if nearest:
                        val = _nearest(flat, n, s, px + k * w[0], py + k * w[1], pz + k * w[2])
                    else:
                        val = _trilinear(flat, n, s, px + k * w[0], py + k * w[1], pz + k * w[2])
                    amax = max(amax, val)
                    amin = min(amin, val)
                    asum += val
                out[r, c] = _result(mode, amax, amin, asum, k1 - k0)


@njit(parallel=True, cache=True, fastmath=True)
def reduce_x(flat: np.ndarray, s: np.ndarray, z0: int, zstep: int, y0: int, ystep: int, x0: int, xstep: int,
             count: int, mode: int, out: np.ndarray) -> None:
    """An axis-aligned slab along x: ``out[i, j]`` = max/min/mean over ``k < count`` of the voxel
    ``(x0 + k*xstep, y0 + j*ystep, z0 + i*zstep)``. ``out`` has the data's dtype for MIP/MinIP, float32
    for the mean. Each row's samples are contiguous when ``xstep == 1``: a vectorised reduction. Rows are
    1 KiB apart, so the rows ahead are prefetched by hand (3x faster than leaving it to the hardware)."""
    n0, n1 = out.shape
    step = xstep * s[0]
    last = (count - 1) * step
    for i in prange(n0):
        for j in range(n1):
            base = (z0 + i * zstep) * s[2] + (y0 + j * ystep) * s[1] + x0 * s[0]
            if j + PREFETCH_ROWS < n1:  # the row PREFETCH_ROWS ahead: both ends of its samples
                ahead = base + PREFETCH_ROWS * ystep * s[1]
                _prefetch(flat, np.uint64(ahead))
                _prefetch(flat, np.uint64(ahead + last))
            if mode == AVG:
                acc = 0.0
                for k in range(count):
                    acc += flat[np.uint64(base + k * step)]
                out[i, j] = acc / count
            elif mode == MIP:
                m = flat[np.uint64(base)]
                if step == 1:
                    for k in range(1, count):
                        v = flat[np.uint64(base + k)]
                        m = v if v > m else m
                else:
                    for k in range(1, count):
                        v = flat[np.uint64(base + k * step)]
                        m = v if v > m else m
                out[i, j] = m
            else:
                m = flat[np.uint64(base)]
                if step == 1:
                    for k in range(1, count):
                        v = flat[np.uint64(base + k)]
                        m = v if v < m else m
                else:
                    for k in range(1, count):
                        v = flat[np.uint64(base + k * step)]
                        m = v if v < m else m
                out[i, j] = m


@njit(cache=True, fastmath=True, inline="always")
def _bilerp(flat: np.ndarray, i: int, ha: int, fa: float, hb: int, fb: float) -> np.float32:
    """``flat[i]`` interpolated toward ``flat[i + ha]`` by ``fa``, then toward ``i + hb`` by ``fb``."""
    a = _lerp(flat, i, ha, fa)
    if hb == 0:
        return a
    return a + np.float32(fb) * (_lerp(flat, i + hb, ha, fa) - a)


@njit(parallel=True, cache=True, fastmath=True)
def render_separable(flat: np.ndarray, offs_r: np.ndarray, fa_r: np.ndarray, fb_r: np.ndarray, offs_c: np.ndarray,
                     fa_c: np.ndarray, fb_c: np.ndarray, offs_k: np.ndarray, fa_k: np.ndarray, fb_k: np.ndarray,
                     ha: int, hb: int, k_inner: bool, mode: int, out: np.ndarray) -> None:
    """A plane whose u, v and w each run along one voxel axis (distinct axes), off the voxel grid along at
    most two of them: a sagittal or coronal view of a volume whose slices are thicker than its pixels, a
    slice between two acquired ones. Sample ``(r, c, k)`` starts at element ``offs_r[r] + offs_c[c] +
    offs_k[k]``, is interpolated toward the element ``ha`` further with weight ``fa_r[r] + fa_c[c] +
    fa_k[k]`` and toward ``hb`` with the ``fb`` weights (one array of each set is non-zero; ``ha``/``hb`` = 0
    when not needed): 2 or 4 reads. Only inside rows, columns and samples are passed; ``k_inner`` when
    ``offs_k`` walks the contiguous axis."""
    height, width = out.shape
    count = len(offs_k)
    for r in prange(height):
        base_r = offs_r[r]
        if k_inner:
            for c in range(width):
                base = base_r + offs_c[c]
                fa = fa_r[r] + fa_c[c]
                fb = fb_r[r] + fb_c[c]
                if c + PREFETCH_ROWS < width:  # columns may be 1 KiB apart (a sagittal view)
                    ahead = base_r + offs_c[c + PREFETCH_ROWS]
                    _prefetch(flat, np.uint64(ahead + offs_k[0]))
                    _prefetch(flat, np.uint64(ahead + offs_k[count - 1] + ha + hb))
                amax = np.float32(-np.inf)
                amin = np.float32(np.inf)
                asum = np.float32(0.0)
                for k in range(count):
                    val = _bilerp(flat, base + offs_k[k], ha, fa + fa_k[k], hb, fb + fb_k[k])
                    amax = max(amax, val)
                    amin = min(amin, val)
                    asum += val
                out[r, c] = _result(mode, amax, amin, asum, count)
        else:
            acc = np.empty(width, np.float32)
            acc[:] = _init(mode)
            for k in range(count):
                base = base_r + offs_k[k]
                fa = fa_r[r] + fa_k[k]
                fb = fb_r[r] + fb_k[k]
                if mode == MIP:
                    for c in range(width):
                        acc[c] = max(acc[c], _bilerp(flat, base + offs_c[c], ha, fa + fa_c[c], hb, fb + fb_c[c]))
                elif mode == MINIP:
                    for c in range(width):
                        acc[c] = min(acc[c], _bilerp(flat, base + offs_c[c], ha, fa + fa_c[c], hb, fb + fb_c[c]))
                else:
                    for c in range(width):
                        acc[c] += _bilerp(flat, base + offs_c[c], ha, fa + fa_c[c], hb, fb + fb_c[c])
            for c in range(width):
                out[r, c] = acc[c] / count if mode == AVG else acc[c]


def warm() -> None:
    """Compile (or load from the on-disk cache) every kernel for int16 and float32 volumes."""
    p = np.array([0.5, 0.5, 0.5])
    n = np.array([3, 3, 3], np.int64)
    s = np.array([1, 3, 9], np.int64)
    for dtype in (np.int16, np.float32):
        data = np.zeros((3, 3, 3), dtype)
        flat = data.reshape(-1)
        out = np.zeros((2, 2), np.float32)
        render_thin(flat, n, s, p, p, p, False, 0.0, out)
        render_slab(flat, n, s, p, p, p, p, 3, MIP, False, 0.0, out)
        offs, frac = np.zeros(2, np.int64), np.zeros(2, np.float32)
        for k_inner in (False, True):
            for dst in (out, out[:, 1:]):
                render_separable(flat, offs, frac, frac, offs, frac, frac, offs, frac, frac, 9, 3, k_inner, MIP, dst)
        reduce_x(flat, s, 0, 1, 0, 1, 1, 1, 2, MIP, np.zeros((3, 3), dtype))
        reduce_x(flat, s, 0, 1, 0, 1, 1, 1, 2, AVG, np.zeros((3, 3), np.float32))
