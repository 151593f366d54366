"""C-STORE SCU (PS3.4 B.2, PS3.7 9.1.1): send Part 10 files unchanged, many per association.

Each file's header is read without its pixels (pydicom ``stop_before_pixels``). Per SOP class we
propose one presentation context per transfer syntax the files are in, plus Explicit and Implicit VR
Little Endian (PS3.5 10.1, 10.2), each context with a single transfer syntax so that the SCP's choice
is never ambiguous (PS3.8 9.3.2.2); more than 128 contexts spill over to further associations.
When the remote accepted the file's own syntax, the data set is streamed from the file as it is
(pynetdicom's chunked send, switched on for that call and that thread only); otherwise an
uncompressed file is decoded and re-encoded in an accepted uncompressed syntax; a compressed file
whose syntax was refused is reported, not transcoded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pynetdicom.association as _association_module
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import _config
from pynetdicom.association import Association
from pynetdicom.dsutils import split_dataset
from pynetdicom.presentation import PresentationContext, build_context

from hub.services.remote import OutgoingFile, RemoteError, StoreItem, StoreReport, is_success, is_warning
from hub.settings import Modality

MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context ids are odd numbers 1-255
FALLBACK = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
CONVERTIBLE = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian}


# --------------------------------------------------------------------------- chunked send, per call


class _ConfigView:
    """Stands in for ``pynetdicom._config`` inside ``pynetdicom.association``: reads go to the real
    module, except ``STORE_SEND_CHUNKED_DATASET`` while :func:`chunked_send` holds it on in the
    current thread. So a raw send never flips the flag for another thread's association."""

    def __init__(self, module: Any) -> None:
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_local", threading.local())

    def __getattr__(self, name: str) -> Any:
        if name == "STORE_SEND_CHUNKED_DATASET" and getattr(self._local, "on", False):
            return True
        return getattr(self._module, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._module, name, value)


_install_lock = threading.Lock()


def _view() -> _ConfigView:
    with _install_lock:
        current = _association_module._config
        if not isinstance(current, _ConfigView):
            current = _ConfigView(_config)
            _association_module._config = current  # type: ignore[assignment]
        return current


@contextmanager
def chunked_send() -> Iterator[None]:
    """``send_c_store(path)`` streams the file's data set bytes as they are (only in this thread)."""
    local = _view()._local
    before = getattr(local, "on", False)
    local.on = True
    try:
        yield
    finally:
        local.on = before


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class Probe:
    file: OutgoingFile
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    meta_matches: bool  # File Meta SOP UIDs equal the data set's (the raw send uses the former)
    size: int
    index: int  # position in the caller's list


def probe(file: OutgoingFile, index: int = 0) -> Probe | StoreItem:
    """The header facts of one file, or a failed :class:`StoreItem` when it is no DICOM file."""
    try:
        ds = pydicom.dcmread(file.path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
        size = os.path.getsize(file.path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one failed item
        return StoreItem(file.label, file.sop_instance_uid, None, error=f"not a readable DICOM file ({exc})"[:200])
    meta = ds.file_meta
    sop_class = str(ds.get("SOPClassUID", "") or meta.get("MediaStorageSOPClassUID", "") or "")
    sop_uid = str(ds.get("SOPInstanceUID", "") or meta.get("MediaStorageSOPInstanceUID", "") or "")
    syntax = str(meta.get("TransferSyntaxUID", "") or "")
    if not (sop_class and sop_uid and syntax):
        return StoreItem(file.label, sop_uid, None, error="missing SOP Class/Instance UID or Transfer Syntax UID")
    matches = (str(meta.get("MediaStorageSOPClassUID", "")) == sop_class
               and str(meta.get("MediaStorageSOPInstanceUID", "")) == sop_uid)
    return Probe(file, sop_class, sop_uid, syntax, matches, size, index)


def batches(probes: list[Probe]) -> Iterator[tuple[list[Probe], list[tuple[str, str]]]]:
    """Files in order, cut whenever their (SOP class, transfer syntax) contexts would pass 128."""
    batch: list[Probe] = []
    pairs: dict[tuple[str, str], None] = {}
    for p in probes:
        syntaxes = [p.transfer_syntax_uid, *map(str, FALLBACK)]
        wanted = dict.fromkeys((p.sop_class_uid, ts) for ts in syntaxes)
        if batch and len(pairs | wanted) > MAX_CONTEXTS:
            yield batch, list(pairs)
            batch, pairs = [], {}
        batch.append(p)
        pairs.update(wanted)
    if batch:
        yield batch, list(pairs)


def contexts_for(pairs: list[tuple[str, str]]) -> list[PresentationContext]:
    return [build_context(sop_class, [syntax]) for sop_class, syntax in pairs]


# --------------------------------------------------------------------------- sending


def send_files(client: Any, modality: Modality, files: Sequence[OutgoingFile]) -> StoreReport:
    """Send ``files`` to ``modality``; ``client`` is the :class:`~interfaces.dimse.scu.PynetdicomClient`.

    Raises :class:`RemoteError` only when the first association cannot be opened (nothing sent);
    later failures are per-file items of the report.
    """
    started = time.monotonic()
    report = StoreReport()
    results: list[StoreItem | None] = [None] * len(files)
    probes: list[Probe] = []
    for index, file in enumerate(files):
        found = probe(file, index)
        if isinstance(found, StoreItem):
            results[index] = found
        else:
            probes.append(found)
    attempted = False
    for batch, pairs in batches(probes):
        try:
            with client.associate(modality, contexts_for(pairs)) as assoc:
                attempted = True
                for n, p in enumerate(batch):
                    item = results[p.index] = _send_one(assoc, p, n % 65535 + 1)
                    report.bytes += p.size if item.ok else 0
        except RemoteError as exc:
            if not attempted:
                raise
            for p in batch:
                if results[p.index] is None:
                    results[p.index] = StoreItem(p.file.label, p.sop_instance_uid, None, error=str(exc))
    report.items = [item for item in results if item is not None]
    report.seconds = time.monotonic() - started
    return report


def _send_one(assoc: Association, p: Probe, msg_id: int) -> StoreItem:
    """One C-STORE request; ``msg_id`` counts up within the association (PS3.7 9.3.1.1)."""
    label, uid = p.file.label, p.sop_instance_uid
    if not assoc.is_established:
        return StoreItem(label, uid, None, error="not sent: the association was lost")
    accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
    exact = (p.sop_class_uid, p.transfer_syntax_uid) in accepted
    try:
        if exact and p.meta_matches:
            with _even(p) as path, chunked_send():
                status = assoc.send_c_store(path, msg_id=msg_id)
            syntax, unchanged = p.transfer_syntax_uid, True
        elif exact or (UID(p.transfer_syntax_uid) in CONVERTIBLE and _uncompressed_accepted(accepted, p)):
            ds = pydicom.dcmread(p.file.path)
            status = assoc.send_c_store(ds, msg_id=msg_id)
            syntax, unchanged = _used_syntax(assoc, p, exact), False
        else:
            return StoreItem(label, uid, None, error=(
                f"the remote accepts no context for {_name(p.sop_class_uid)} in {_name(p.transfer_syntax_uid)} "
                "(not transcoded)"
            ))
    except (ValueError, AttributeError, OSError) as exc:
        return StoreItem(label, uid, None, error=f"not sent: {exc}"[:300])
    if "Status" not in status:
        why = "association lost" if not assoc.is_established else "no response (timeout)"
        return StoreItem(label, uid, None, syntax, unchanged, error=why)
    code = int(status.Status)
    comment = str(status.get("ErrorComment", "") or "").strip()
    error = "" if is_success(code) else (f"status 0x{code:04X}" + (f" ({comment})" if comment else ""))
    if is_warning(code):
        error = "warning " + error
    return StoreItem(label, uid, code, syntax, unchanged, error)


@contextmanager
def _even(p: Probe) -> Iterator[Path]:
    """The file to stream. A deflated data set of odd length gets the trailing NULL byte PS3.5 A.5
    asks for (DCMTK refuses an odd fragment, PS3.8 9.3.5.1) in a temporary copy; else the file."""
    path = Path(p.file.path)
    if p.transfer_syntax_uid != DeflatedExplicitVRLittleEndian or (p.size - split_dataset(path)[1]) % 2 == 0:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="rishub-scu-") as tmp:
        padded = Path(tmp) / path.name
        shutil.copyfile(path, padded)
        with padded.open("ab") as f:
            f.write(b"\0")
        yield padded


def _uncompressed_accepted(accepted: set[tuple[str, str]], p: Probe) -> bool:
    return any(sop == p.sop_class_uid and UID(ts) in CONVERTIBLE for sop, ts in accepted)


def _used_syntax(assoc: Association, p: Probe, exact: bool) -> str:
    if exact:
        return p.transfer_syntax_uid
    for cx in assoc.accepted_contexts:
        if cx.abstract_syntax == p.sop_class_uid and UID(cx.transfer_syntax[0]) in CONVERTIBLE:
            return str(cx.transfer_syntax[0])
    return ""


def _name(uid: str) -> str:
    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else uid
