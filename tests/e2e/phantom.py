"""Recognising the synthetic CT phantom (tests/synthetic.py: a water cylinder of radius 0.45 x width with a
bone rod at a third of the width, air around) in a screenshot of a viewer, at its own window
(W 400 / L 40): water (0 HU) is mid-grey, bone (700 HU) white, air (-1024 HU) black."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WATER = (70, 150)  # grey levels of 0 HU at W 400 / L 40 (nominally 102), allowing for the viewer's LUT
BONE = 220  # 700 HU is above the window: white
AIR = 30  # -1024 HU is below it: black
ROD_OFFSET = (1 / 2 - 1 / 3) / 0.45  # rod centre left of the cylinder's centre, in cylinder radii (0.37)


@dataclass(frozen=True)
class Phantom:
    """What was measured; ``problem`` is empty when the picture is the phantom."""

    problem: str
    water: float = 0.0  # fractions of the viewport's pixels
    bone: float = 0.0
    air: float = 0.0
    radius: float = 0.0  # of the cylinder, in screen pixels
    rod: tuple[float, float] = (0.0, 0.0)  # rod centre relative to the cylinder's, in radii (x right, y down)


def find_phantom(rgb: np.ndarray) -> Phantom:
    """Look for the phantom in ``rgb`` (a viewport's pixels): a large grey disk, roughly round, with a
    white disk inside it on the horizontal through its centre, left of the centre by 0.37 radii."""
    grey = rgb.astype(np.float32).mean(axis=2)
    neutral = np.ptp(rgb.astype(np.int16), axis=2) < 24  # grey levels only: not the blue UI around
    water = (grey >= WATER[0]) & (grey <= WATER[1]) & neutral
    bone = (grey >= BONE) & neutral
    air = grey <= AIR
    total = grey.size
    fractions = {k: round(float(v.sum()) / total, 4) for k, v in (("water", water), ("bone", bone), ("air", air))}
    if fractions["water"] < 0.15:
        return Phantom(f"no grey cylinder: {fractions}", **fractions)
    ys, xs = np.nonzero(water)
    top, bottom = np.percentile(ys, [0.5, 99.5])
    left, right = np.percentile(xs, [0.5, 99.5])
    cy, cx = (top + bottom) / 2, (left + right) / 2
    radius = float((bottom - top) + (right - left)) / 4
    if abs((bottom - top) - (right - left)) > 0.08 * (right - left):
        return Phantom(f"grey region not round: {bottom - top:.0f} x {right - left:.0f}", **fractions)
    yy, xx = np.mgrid[0:grey.shape[0], 0:grey.shape[1]]
    box = (water | bone)[int(top):int(bottom) + 1, int(left):int(right) + 1].mean()
    if not 0.72 < box < 0.85:  # a disk fills pi/4 of its bounding square
        return Phantom(f"grey region not a disk: fills {box:.2f} of its bounding box", **fractions)
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 < (0.95 * radius) ** 2
    filled = (water | bone)[inside].mean()
    if filled < 0.9:
        return Phantom(f"grey disk not filled: {filled:.2f} of it grey or white", **fractions, radius=radius)
    rod = bone & inside
    if rod.sum() < 0.005 * inside.sum():
        return Phantom("no white rod inside the cylinder", **fractions, radius=radius)
    ry, rx = np.nonzero(rod)
    offset = (round(float(rx.mean() - cx) / radius, 3), round(float(ry.mean() - cy) / radius, 3))
    if not (abs(offset[0] + ROD_OFFSET) < 0.08 and abs(offset[1]) < 0.08):
        return Phantom(f"rod at {offset[0]:+.2f}, {offset[1]:+.2f} radii, expected {-ROD_OFFSET:+.2f}, 0",
                       **fractions, radius=radius, rod=offset)
    if fractions["air"] < 0.05:
        return Phantom("no air around the cylinder", **fractions, radius=radius, rod=offset)
    return Phantom("", **fractions, radius=radius, rod=offset)
