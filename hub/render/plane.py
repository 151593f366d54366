"""What a backend samples: an output grid of pixels (a plane) and, for slabs, samples along a direction.

Everything is in voxel index coordinates ``(x, y, z)`` (see :mod:`hub.render.volume`): the output pixel
``(row r, column c)`` of sample ``k`` is at ``origin + c*u + r*v + (k - (samples-1)/2)*w``. Backends
(:mod:`hub.render.cpu`, :mod:`hub.render.gl`) take a :class:`Plane` and return the reduced modality
values; views (:mod:`hub.render.views`) turn a reporting request into a :class:`Plane`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

Mode = Literal["mip", "minip", "avg"]
Interpolation = Literal["linear", "nearest"]


@dataclass(frozen=True)
class Plane:
    origin: np.ndarray  # (3,) float voxel coords of output pixel (0, 0), centre sample
    u: np.ndarray  # (3,) voxel step per output column
    v: np.ndarray  # (3,) voxel step per output row
    width: int
    height: int
    w: np.ndarray  # (3,) voxel step between slab samples (unused when samples == 1)
    samples: int = 1  # 1: a thin MPR; n > 1: a slab reduced by ``mode``
    mode: Mode = "mip"
    interpolation: Interpolation = "linear"


class Backend(Protocol):
    """Samples a volume on a plane. Samples outside the volume are ignored; a pixel with no sample
    inside gets ``fill``. Returns ``(height, width)`` modality values (float32, or the volume's dtype
    where no interpolation happened)."""

    name: str

    def render(self, data: np.ndarray, plane: Plane, fill: float) -> np.ndarray: ...
