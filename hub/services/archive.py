"""ZIP archives and DICOMDIR media of stored resources (Orthanc 1.10 ``/archive``, ``/media``,
``/tools/create-archive``, ``/tools/create-media``), streamed as they are written.

Which instances, in which order (Orthanc ``ArchiveJob::ArchiveIndex``): every requested resource is
placed in a patient/study/series tree; a requested patient, study or series takes all its instances;
requested instances are added one by one, in request order (twice if asked twice). Patients, studies
and series are visited in the order of their Orthanc ids, the instances of a series in arrival order.
Member names follow ``mappings.index_to_archive_names``.

The ZIP (PKWARE APPNOTE 6.3.10) is produced chunk by chunk: nothing but one file at a time (and the
central directory, ~100 bytes per file) is held in memory, and nothing is written to disk. Orthanc
deflates every file and reaches ~13 MB/s; DICOM pixel data barely compresses (noisy CT: 1.8:1), so
files are *stored* by default (``deflate=True`` compresses them, at zlib level 1). A file of up to
16 MiB is read whole, so that its CRC-32 and sizes are in its local header; a larger one is streamed
with a data descriptor (general purpose flag bit 3). ZIP64 records are written only where a size, an
offset or the number of files needs them (APPNOTE 4.5.3, 4.4.1.4).
"""

from __future__ import annotations

import logging
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from hub.errors import HubError
from hub.services.media import DicomDirBuilder
from hub.store.archive import ArchiveRepository, ArchiveRow
from hub.store.blobs import BlobStore
from mappings.index_to_archive_names import (
    PatientEntry,
    index_to_archive_names,
    index_to_media_names,
    media_file_id,
)

log = logging.getLogger(__name__)

CHUNK = 1 << 20
BUFFER_MAX = 16 << 20  # files up to this size are read whole (CRC-32 known before their header)
U32, U16 = 0xFFFFFFFF, 0xFFFF
COMMENT = b"Created by rishub"
# zlib level when deflating: on noisy CT pixel data level 1 gives 1.77:1 at ~60 MB/s, level 6 (Orthanc's)
# 1.80:1 at ~9 MB/s.
DEFLATE_LEVEL = 1


class ZipStream:
    """A ZIP file written as a sequence of byte chunks to an unseekable output."""

    def __init__(self, *, deflate: bool = False, level: int = DEFLATE_LEVEL, comment: bytes = COMMENT) -> None:
        self.deflate = deflate
        self.level = level
        self.comment = comment
        self.offset = 0
        self.size_in = 0  # bytes of the files before compression
        self._central: list[bytes] = []
        t = time.localtime()
        self._dos_date = max(t.tm_year - 1980, 0) << 9 | t.tm_mon << 5 | t.tm_mday
        self._dos_time = t.tm_hour << 11 | t.tm_min << 5 | t.tm_sec // 2

    @property
    def count(self) -> int:
        return len(self._central)

    def _compress(self, payload: bytes) -> bytes:
        comp = zlib.compressobj(self.level, zlib.DEFLATED, -15)
        return comp.compress(payload) + comp.flush()

    def add(self, name: str, src: BinaryIO, size: int) -> Iterator[bytes]:
        """Add a file read from ``src`` (``size``: its expected length, from the index)."""
        if size <= BUFFER_MAX:
            yield from self.add_bytes(name, src.read())
            return
        yield from self._add_streamed(name, src, size)

    def add_bytes(self, name: str, payload: bytes) -> Iterator[bytes]:
        """Add a file held in memory: CRC-32 and sizes go in its local header."""
        crc = zlib.crc32(payload)
        data = self._compress(payload) if self.deflate else payload
        method = 8 if self.deflate else 0
        raw = name.encode("utf-8")
        offset = self.offset
        header = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, _name_flags(raw), method, self._dos_time,
                             self._dos_date, crc, len(data), len(payload), len(raw), 0) + raw
        self._record(raw, 0, method, crc, len(data), len(payload), offset)
        self.offset += len(header) + len(data)
        self.size_in += len(payload)
        yield header
        if data:
            yield data

    def _add_streamed(self, name: str, src: BinaryIO, size: int) -> Iterator[bytes]:
        method = 8 if self.deflate else 0
        zip64 = size >= U32 - (U32 >> 6)  # room for a deflate stream slightly larger than its input
        raw = name.encode("utf-8")
        flags = _name_flags(raw) | 0x08
        extra = struct.pack("<HHQQ", 1, 16, 0, 0) if zip64 else b""
        sizes = U32 if zip64 else 0
        header = struct.pack("<IHHHHHIIIHH", 0x04034B50, 45 if zip64 else 20, flags, method, self._dos_time,
                             self._dos_date, 0, sizes, sizes, len(raw), len(extra)) + raw + extra
        offset = self.offset
        yield header
        crc = usize = csize = 0
        comp = zlib.compressobj(self.level, zlib.DEFLATED, -15) if self.deflate else None
        while chunk := src.read(CHUNK):
            crc = zlib.crc32(chunk, crc)
            usize += len(chunk)
            out = comp.compress(chunk) if comp else chunk
            if out:
                csize += len(out)
                yield out
        if comp:
            tail = comp.flush()
            csize += len(tail)
            yield tail
        if zip64:
            descriptor = struct.pack("<IIQQ", 0x08074B50, crc, csize, usize)
        else:
            descriptor = struct.pack("<IIII", 0x08074B50, crc, csize, usize)
        yield descriptor
        self._record(raw, flags, method, crc, csize, usize, offset)
        self.offset += len(header) + csize + len(descriptor)
        self.size_in += usize

    def _record(self, raw: bytes, flags: int, method: int, crc: int, csize: int, usize: int, offset: int) -> None:
        """The central directory header of one file (ZIP64 extra only for the fields that need it)."""
        extra_fields = [v for v in (usize, csize, offset) if v >= U32]
        n = len(extra_fields)
        extra = struct.pack(f"<HH{n}Q", 1, 8 * n, *extra_fields) if n else b""
        version = 45 if extra_fields else 20
        self._central.append(
            struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, version, version, flags | _name_flags(raw), method,
                        self._dos_time, self._dos_date, crc, min(csize, U32), min(usize, U32), len(raw),
                        len(extra), 0, 0, 0, 0, min(offset, U32)) + raw + extra
        )

    def close(self) -> Iterator[bytes]:
        """The central directory and its end records (ZIP64 ones when needed)."""
        directory = b"".join(self._central)
        start, size, count = self.offset, len(directory), len(self._central)
        tail = b""
        if count >= U16 or size >= U32 or start >= U32:
            zip64_end = start + size
            tail += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, size, start)
            tail += struct.pack("<IIQI", 0x07064B50, 0, zip64_end, 1)
        tail += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(count, U16), min(count, U16), min(size, U32),
                            min(start, U32), len(self.comment)) + self.comment
        self.offset += size + len(tail)
        yield directory + tail


def _name_flags(raw: bytes) -> int:
    return 0x800 if not raw.isascii() else 0  # bit 11: name in UTF-8


@dataclass(frozen=True)
class ArchiveEntry:
    name: str
    row: ArchiveRow


@dataclass(frozen=True)
class ArchivePlan:
    """The files of one archive or media, named and in order."""

    entries: list[ArchiveEntry]

    @property
    def uncompressed_size(self) -> int:
        return sum(e.row.file_size for e in self.entries)


class _Expand:
    """A requested patient/study/series: all of its instances (Orthanc's node "marked for expansion")."""

    __slots__ = ("rows",)

    def __init__(self, rows: list[ArchiveRow]) -> None:
        self.rows = rows


class ArchiveService:
    def __init__(self, repo: ArchiveRepository, blobs: BlobStore, *, deflate: bool = False,
                 level: int = DEFLATE_LEVEL) -> None:
        self.repo = repo
        self.blobs = blobs
        self.deflate = deflate
        self.level = level

    # ------------------------------------------------------------------ what goes in
    def plan(self, resource_ids: Sequence[str], *, media: bool = False) -> ArchivePlan:
        """Resolve Orthanc ids of any level; ``HubError('unknown_resource')`` when one is unknown."""
        found = self.repo.levels(resource_ids)
        missing = [rid for rid in resource_ids if rid not in found]
        if missing:
            raise HubError("unknown_resource", "Unknown resource")
        by_level: dict[str, list[int]] = {}
        for level, pk in found.values():
            by_level.setdefault(level, []).append(pk)
        depth = {"Patient": 0, "Study": 1, "Series": 2, "Instance": 3}
        rows_of: dict[str, list[ArchiveRow]] = {}
        for level, pks in by_level.items():
            for row in self.repo.instances(level, pks):
                rows_of.setdefault(row[depth[level]], []).append(row)
        root: dict[str, Any] = {}
        for rid in resource_ids:
            rows = rows_of.get(rid)
            if rows:  # a resource deleted since the look-up has nothing left to add
                _add(root, rows[0][: depth[found[rid][0]] + 1], rows)
        tree, ordered = _walk(root)
        names = index_to_media_names(len(ordered)) if media else index_to_archive_names(tree)
        return ArchivePlan([ArchiveEntry(n, r) for n, r in zip(names, ordered, strict=True)])

    # ------------------------------------------------------------------ streams
    def _files(self, plan: ArchivePlan) -> Iterator[tuple[ArchiveEntry, BinaryIO]]:
        """Open each blob in turn; one deleted since the plan was made is left out, as Orthanc does."""
        for entry in plan.entries:
            try:
                f = self.blobs.open(entry.row.blob_key)
            except FileNotFoundError:
                log.warning("instance %s was deleted while its archive was written: left out", entry.row.instance_id)
                continue
            with f:
                yield entry, f

    def stream_archive(self, plan: ArchivePlan) -> Iterator[bytes]:
        """The ZIP of ``plan``, chunk by chunk."""
        zs = ZipStream(deflate=self.deflate, level=self.level)
        started = time.perf_counter()
        for entry, f in self._files(plan):
            yield from zs.add(entry.name, f, entry.row.file_size)
        yield from zs.close()
        self._log("archive", zs, started)

    def stream_media(self, plan: ArchivePlan, *, extended: bool = False) -> Iterator[bytes]:
        """The ZIP of ``plan`` with a DICOMDIR (PS3.10, General Purpose CD-R profile of PS3.11) last."""
        zs = ZipStream(deflate=self.deflate, level=self.level)
        dicomdir = DicomDirBuilder(extended=extended)
        started = time.perf_counter()
        for entry, f in self._files(plan):
            try:
                dicomdir.add(f, media_file_id(entry.name))
            except HubError as exc:
                log.warning("instance %s left out of the media: %s", entry.row.instance_id, exc.message)
                continue
            f.seek(0)
            yield from zs.add(entry.name, f, entry.row.file_size)
        yield from zs.add_bytes("DICOMDIR", dicomdir.encode())
        yield from zs.close()
        self._log("media", zs, started)

    def _log(self, kind: str, zs: ZipStream, started: float) -> None:
        seconds = time.perf_counter() - started
        log.info("%s: %d files, %.1f MB in %.2f s (%.0f MB/s)", kind, zs.count, zs.size_in / 1e6, seconds,
                 zs.size_in / 1e6 / seconds if seconds > 0 else 0.0)


def _add(root: dict[str, Any], chain: tuple[str, ...], rows: list[ArchiveRow]) -> None:
    """Orthanc ``ArchiveIndex::Add``: place one requested resource (its id chain from the patient)."""
    node: Any = root
    for depth, key in enumerate(chain):
        if depth == 3:  # an instance, added as asked
            node.append(rows[0])
            return
        if depth == len(chain) - 1:  # the requested patient/study/series: all of it
            node[key] = _Expand(rows)
            return
        child = node.get(key)
        if isinstance(child, _Expand):
            return  # already all of it
        if child is None:
            child = [] if depth == 2 else {}
            node[key] = child
        node = child


def _grouped(rows: list[ArchiveRow], depth: int) -> Any:
    """All instances of an expanded node as the same nested structure (series level: a list)."""
    if depth == 3:
        return rows
    out: dict[str, list[ArchiveRow]] = {}
    for row in rows:
        out.setdefault(row[depth], []).append(row)
    return {key: _grouped(group, depth + 1) for key, group in out.items()}


def _walk(root: dict[str, Any]) -> tuple[list[PatientEntry], list[ArchiveRow]]:
    """Visit the tree in Orthanc's order: folders as (tags, children) and the rows in file order."""
    ordered: list[ArchiveRow] = []

    def resolve(node: Any, depth: int) -> Any:
        return _grouped(node.rows, depth) if isinstance(node, _Expand) else node

    patients: list[PatientEntry] = []
    for pid in sorted(root):
        studies_node = resolve(root[pid], 1)
        studies = []
        for sid in sorted(studies_node):
            series_node = resolve(studies_node[sid], 2)
            series = []
            for seid in sorted(series_node):
                rows = resolve(series_node[seid], 3)
                if rows:
                    modality, description = rows[0].series_tags
                    series.append(({"Modality": modality or "", "SeriesDescription": description or ""}, len(rows)))
                    ordered.extend(rows)
            if series:
                accession, description = ordered[-1].study_tags
                studies.append(({"AccessionNumber": accession or "", "StudyDescription": description or ""}, series))
        if studies:
            patient_id, name = ordered[-1].patient_tags
            patients.append(({"PatientID": patient_id or "", "PatientName": name or ""}, studies))
    return patients, ordered
