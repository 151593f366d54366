"""Where the project's shared HL7 acceptance samples are (``shared/samples/hl7``, beside the checkout;
not copied into the repository). ``RISHUB_HL7_SAMPLES`` names the folder explicitly; otherwise the
checkout's parents and the workspace's ``/work/shared`` are searched. Without them the tests that
need them are skipped with that reason, never failed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIRST = "01_orm_o01_nw_ct_v231.hl7"


def find() -> Path | None:
    env = os.environ.get("RISHUB_HL7_SAMPLES")
    root = Path(__file__).resolve().parents[1]
    candidates = [Path(env)] if env else []
    candidates += [p / "shared" / "samples" / "hl7" for p in (root, *root.parents)]
    candidates.append(Path("/work/shared/samples/hl7"))
    return next((c for c in candidates if (c / FIRST).is_file()), None)


def samples_dir() -> Path:
    """The folder, or a module-level skip naming what is missing."""
    found = find()
    if found is None:
        pytest.skip("the shared HL7 samples (shared/samples/hl7) are not next to this checkout; "
                    "set RISHUB_HL7_SAMPLES", allow_module_level=True)
    return found


def sample_files() -> list[Path]:
    """Every sample, or none when the folder is missing (parametrized tests then have no cases)."""
    found = find()
    return sorted(found.glob("*.hl7")) if found else []
