"""The pixel check of the OHIF test (tests/e2e/phantom.py) recognises the synthetic CT phantom drawn at its
window, and rejects a blank viewport, a mirrored image and a uniform grey square."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.e2e.phantom import find_phantom
from tests.synthetic import ct_slice


def rendered(size: int = 300, pad: int = 60) -> np.ndarray:
    """The phantom as a viewer shows it: HU through W 400 / L 40 to grey, scaled up, on black."""
    ds = ct_slice(0, rows=128, cols=128, seed="phantom-check")
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    grey = np.clip((hu - (40 - 200)) / 400 * 255, 0, 255).astype(np.uint8)
    img = np.asarray(Image.fromarray(grey).resize((size, size), Image.NEAREST))
    out = np.zeros((size + 2 * pad, size + 2 * pad * 2, 3), np.uint8)  # a wide viewport, image centred
    out[pad:pad + size, 2 * pad:2 * pad + size] = img[..., None]
    return out


def test_recognises_the_phantom() -> None:
    found = find_phantom(rendered())
    assert not found.problem, found
    assert abs(found.rod[0] + 0.37) < 0.05 and abs(found.rod[1]) < 0.05


def test_rejects_what_is_not_the_phantom() -> None:
    assert find_phantom(np.zeros((400, 600, 3), np.uint8)).problem.startswith("no grey cylinder")
    assert find_phantom(rendered()[:, ::-1]).problem.startswith("rod at")
    square = np.zeros((400, 600, 3), np.uint8)
    square[50:350, 150:450] = 102
    assert find_phantom(square).problem.startswith("grey region not a disk")
    no_rod = rendered()
    no_rod[no_rod > 200] = 102
    assert find_phantom(no_rod).problem == "no white rod inside the cylinder"
