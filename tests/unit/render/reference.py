"""An independent float64 sampler of the :class:`hub.render.plane.Plane` contract, the reference of the CPU
and GL backend tests: a sample is inside within [0, n - 1] per axis (give or take 1e-3, as the kernels),
nearest rounds half up, trilinear otherwise; then max, min or mean over the inside samples, ``fill``
where none is inside."""

from __future__ import annotations

import numpy as np

from hub.render.plane import Plane


def reference(data: np.ndarray, plane: Plane, fill: float) -> np.ndarray:
    """Independent float64 sampler of the Plane contract (trilinear / nearest half up, then reduce)."""
    nz, ny, nx = data.shape
    size = np.array([nx, ny, nz], float)
    r, c = np.mgrid[0:plane.height, 0:plane.width].astype(float)
    ks = np.arange(plane.samples) - (plane.samples - 1) / 2
    q = (plane.origin + c[..., None] * plane.u + r[..., None] * plane.v)[None] + ks[:, None, None, None] * plane.w
    inside = np.all((q >= -1e-3) & (q <= size - 1 + 1e-3), axis=-1)
    vol = data.astype(np.float64)
    if plane.interpolation == "nearest":
        i = np.clip(np.floor(q + 0.5), 0, size - 1).astype(int)
        vals = vol[i[..., 2], i[..., 1], i[..., 0]]
    else:
        p = np.clip(q, 0, size - 1)
        a = np.minimum(np.floor(p), np.maximum(size - 2, 0)).astype(int)
        t = p - a
        b = np.minimum(a + 1, (size - 1).astype(int))
        vals = np.zeros(q.shape[:-1])
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    wgt = ((t[..., 0] if dx else 1 - t[..., 0]) * (t[..., 1] if dy else 1 - t[..., 1])
                           * (t[..., 2] if dz else 1 - t[..., 2]))
                    vals += wgt * vol[(b if dz else a)[..., 2], (b if dy else a)[..., 1], (b if dx else a)[..., 0]]
    hits = inside.sum(axis=0)
    if plane.mode == "minip" and plane.samples > 1:
        out = np.where(inside, vals, np.inf).min(axis=0)
    elif plane.mode == "avg" and plane.samples > 1:
        out = np.where(inside, vals, 0).sum(axis=0) / np.maximum(hits, 1)
    else:
        out = np.where(inside, vals, -np.inf).max(axis=0)
    return np.where(hits > 0, out, fill)
