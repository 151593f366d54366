"""``rishub import``: walk paths recursively and store every file through the ingest path, in parallel.

Non-DICOM, truncated or incomplete files are *rejected* (counted and listed, not fatal); a failure
of the archive itself (disk full, database down) is a *failure* and makes the command exit non-zero.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from hub.domain.archive import StoreOutcome
from hub.domain.origin import Origin
from hub.errors import HubError
from hub.services.ingest import IngestService

REJECT_CODES = {"bad_file_format", "missing_attribute", "invalid_attribute", "duplicate_instance",
                "sop_class_not_supported"}


@dataclass
class ImportReport:
    files: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    rejections: list[tuple[str, str]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    yield Path(root) / name
        else:
            yield path


def _one(ingest: IngestService, origin: Origin, path: Path) -> tuple[str, str, int]:
    """Returns (kind, reason, size) with kind in stored|duplicate|rejected|failed."""
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        return "rejected", f"unreadable: {exc.strerror or exc}", 0
    if path.name.upper() == "DICOMDIR":
        return "rejected", "DICOMDIR (media directory, not an instance)", 0
    try:
        result = ingest.store(origin, path)
    except HubError as exc:
        kind = "rejected" if exc.code in REJECT_CODES else "failed"
        return kind, exc.message, 0
    except Exception as exc:  # pragma: no cover - reported, never swallowed
        return "failed", f"{type(exc).__name__}: {exc}", 0
    kind = "duplicate" if result.outcome is StoreOutcome.DUPLICATE else "stored"
    return kind, "", result.size


def import_paths(
    ingest: IngestService,
    paths: Iterable[str | os.PathLike[str]],
    *,
    workers: int = 0,
    progress: bool = True,
    user: str = "",
) -> ImportReport:
    started = time.perf_counter()
    files = list(iter_files(paths))
    report = ImportReport(files=len(files))
    origin = Origin("import", user=user)
    workers = workers or 2 * (os.cpu_count() or 1)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="file", file=sys.stderr, dynamic_ncols=True)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="import") as pool:
            for path, (kind, reason, size) in zip(files, pool.map(lambda p: _one(ingest, origin, p), files),
                                                  strict=True):
                if kind == "stored":
                    report.stored += 1
                    report.bytes += size
                elif kind == "duplicate":
                    report.duplicates += 1
                elif kind == "rejected":
                    report.rejected += 1
                    report.rejections.append((str(path), reason))
                else:
                    report.failed += 1
                    report.failures.append((str(path), reason))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    report.seconds = time.perf_counter() - started
    return report
