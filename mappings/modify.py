"""Orthanc ``/modify`` bodies -> :class:`Modification`, and a modification applied to a pydicom data set.

Semantics of Orthanc 1.10 ``DicomModification`` (``ParseModifyRequest`` and ``Apply``):

* ``Remove``/``Replace``/``Keep`` name tags by keyword, ``gggg,eeee``, ``gggg-eeee`` or ``ggggeeee``, or
  by a path into sequences (``Seq[0].Tag``, ``Seq[*].Tag``, dcmodify syntax). Remove, then Replace,
  then Keep: a later operation on a tag cancels an earlier one.
* PatientID and the Study/Series/SOP Instance UIDs may only be named at the top level with
  ``"Force": true``; removing one is refused even then.
* Apply order: private tags, clearings, removals, replacements (inserted when absent), new UIDs for
  the level and the levels below it, then (anonymization only) the relationships pass over nested
  sequences, then the sequence paths.
* UIDs are mapped through an :class:`IdentifierMap`, so every instance of one operation gets the same
  new StudyInstanceUID for the same old one, and references (ReferencedSOPInstanceUID, ...) follow.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from mappings.modify_values import (  # noqa: F401 - re-exported for the service and the tests
    BAD_FILE_FORMAT,
    BAD_PARAMETER_TYPE,
    BAD_REQUEST,
    CHARSET,
    DATABASE_KEYS,
    LEVELS,
    OUT_OF_RANGE,
    PATIENT_ID,
    PATIENT_NAME,
    PIXEL_DATA,
    REF_SOP_UID,
    RT_FRAME_OF_REF_SEQ,
    RT_REF_STUDY_SEQ,
    SERIES_UID,
    SOP_UID,
    STUDY_UID,
    TEXT_VRS,
    UID_LEVELS,
    UNKNOWN_TAG,
    ModifyError,
    TagPath,
    empty_value,
    format_tag,
    make_element,
    new_element,
    parse_path,
    parse_tag,
    set_text,
    text_of,
    vr_for,
)


class IdentifierMap:
    """Orthanc ``MapDicomIdentifier``: one new identifier per (level, original value) for a whole
    operation. Patients get a UUID (as Orthanc's generator), other levels a new UID."""

    def __init__(self, new_uid: Callable[[], str] = generate_uid,
                 new_patient_id: Callable[[], str] = lambda: str(uuid.uuid4())) -> None:
        self._map: dict[tuple[str, str], str] = {}
        self._new_uid = new_uid
        self._new_patient_id = new_patient_id

    def map(self, level: str, original: str) -> str:
        key = (level, original.strip())
        if key not in self._map:
            self._map[key] = self._new_patient_id() if level == "Patient" else str(self._new_uid())
        return self._map[key]

    def register(self, level: str, original: str, mapped: str) -> None:
        self._map.setdefault((level, original.strip()), mapped)


@dataclass
class Modification:
    """What to do to every instance (Orthanc ``DicomModification``)."""

    level: str = "Instance"
    is_anonymization: bool = False
    removals: set[int] = field(default_factory=set)
    clearings: set[int] = field(default_factory=set)
    uids: set[int] = field(default_factory=set)
    ranges: list[tuple[int, int, int, int]] = field(default_factory=list)  # groups lo-hi, elements lo-hi
    replacements: dict[int, Any] = field(default_factory=dict)
    keep: set[int] = field(default_factory=set)
    remove_private_tags: bool = False
    private_tags_to_keep: set[int] = field(default_factory=set)
    private_creator: str = ""
    keep_paths: list[TagPath] = field(default_factory=list)
    remove_paths: list[TagPath] = field(default_factory=list)
    path_replacements: list[tuple[TagPath, Any]] = field(default_factory=list)
    profile_method: str | None = None  # DeidentificationMethod the profile set (dropped once the profile is altered)

    # ------------------------------------------------------------------ Orthanc's set operations
    def mark_not_profile(self) -> None:
        """``MarkNotOrthancAnonymization``: an altered profile no longer claims DeidentificationMethod."""
        if self.profile_method is not None and self.replacements.get(0x00120063) == self.profile_method:
            del self.replacements[0x00120063]

    def keep_tag(self, tag: int) -> None:
        self.keep.add(tag)
        for s in (self.removals, self.clearings, self.uids):
            s.discard(tag)
        self.replacements.pop(tag, None)
        if tag >> 16 & 1:
            self.private_tags_to_keep.add(tag)
        self.mark_not_profile()

    def remove_tag(self, tag: int) -> None:
        self.removals.add(tag)
        for s in (self.clearings, self.uids, self.private_tags_to_keep):
            s.discard(tag)
        self.replacements.pop(tag, None)
        self.mark_not_profile()

    def replace_tag(self, tag: int, value: Any, *, safe: bool = False) -> None:
        for s in (self.clearings, self.removals, self.uids, self.private_tags_to_keep):
            s.discard(tag)
        self.replacements[tag] = value
        if not safe:
            self.mark_not_profile()

    def set_remove_private(self, remove: bool) -> None:
        self.remove_private_tags = remove
        if not remove:
            self.mark_not_profile()

    def keep_path(self, path: TagPath) -> None:
        if not path.prefix:
            self.keep_tag(path.tag)
        self.keep_paths.append(path)
        self.mark_not_profile()

    def remove_path(self, path: TagPath) -> None:
        if path.prefix:
            self.remove_paths.append(path)
            self.mark_not_profile()
        else:
            self.remove_tag(path.tag)

    def replace_path(self, path: TagPath, value: Any) -> None:
        if path.prefix:
            self.path_replacements.append((path, value))
            self.mark_not_profile()
        else:
            self.replace_tag(path.tag, value)

    def is_removed(self, tag: int) -> bool:
        group, element = tag >> 16, tag & 0xFFFF
        return tag in self.removals or any(g0 <= group <= g1 and e0 <= element <= e1 for g0, g1, e0, e1 in self.ranges)

    def is_kept_in_sequence(self, parents: tuple[tuple[int, int], ...], tag: int) -> bool:
        """``DicomPath::IsMatch`` against the Keep paths: the path itself or anything under it."""
        for p in self.keep_paths:
            n = len(p.prefix)
            if len(parents) < n or any(parents[i][0] != p.prefix[i][0] or (p.prefix[i][1] is not None
                                       and parents[i][1] != p.prefix[i][1]) for i in range(n)):
                continue
            if (tag if len(parents) == n else parents[n][0]) == p.tag:
                return True
        return False


# ---------------------------------------------------------------------- parsing a request body


def read_bool(body: dict[str, Any], name: str, default: bool) -> bool:
    """Orthanc ``GetBooleanValue`` of the modification fields."""
    if name not in body:
        return default
    if not isinstance(body[name], bool):
        raise ModifyError(BAD_FILE_FORMAT, f'Member "{name}" should be a Boolean value')
    return body[name]


def parse_operations(mod: Modification, body: dict[str, Any], force: bool) -> None:
    """``Remove``, ``Replace`` then ``Keep`` (that order: a later operation wins), then ``PrivateCreator``."""
    for op in ("Remove", "Replace", "Keep"):
        if op not in body:
            continue
        value = body[op]
        if op == "Replace":
            if not isinstance(value, dict):
                raise ModifyError(BAD_REQUEST)
            for name in sorted(value):  # Orthanc walks the JSON members in name order
                path = _checked_path(name, "replaced", force)
                mod.replace_path(path, value[name])
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ModifyError(BAD_REQUEST)
        for name in value:
            path = _checked_path(name, "kept" if op == "Keep" else "removed", force)
            (mod.keep_path if op == "Keep" else mod.remove_path)(path)
    if "PrivateCreator" in body:
        if not isinstance(body["PrivateCreator"], str):
            raise ModifyError(BAD_FILE_FORMAT, "String value expected in field: PrivateCreator")
        mod.private_creator = body["PrivateCreator"]


def _checked_path(name: str, verb: str, force: bool) -> TagPath:
    path = parse_path(name)
    if not path.prefix and not force and path.tag in DATABASE_KEYS:
        raise ModifyError(BAD_REQUEST,
                          f'Marking tag "{name}" as to be {verb} requires the "Force" option to be set to true')
    return path


def detect_level(mod: Modification) -> str:
    """``DetectModifyLevel`` of ``/instances/{id}/modify``: the highest identifier replaced."""
    for tag, level in ((PATIENT_ID, "Patient"), (STUDY_UID, "Study"), (SERIES_UID, "Series")):
        if tag in mod.replacements:
            return level
    return "Instance"


def body_to_modification(body: Any, level: str | None) -> Modification:
    """A ``/{level}/{id}/modify`` body; ``level`` None for ``/instances/{id}/modify``."""
    if not isinstance(body, dict):
        raise ModifyError(BAD_FILE_FORMAT)
    mod = Modification()
    force = read_bool(body, "Force", False)
    if read_bool(body, "RemovePrivateTags", False):
        mod.set_remove_private(True)
    parse_operations(mod, body, force)
    mod.level = level or detect_level(mod)
    return mod


def check_modification(mod: Modification) -> None:
    """The checks Orthanc 1.10 makes when it applies a modification (so after the resource is known),
    plus the replacement values, checked once here so that no instance fails half-way."""
    if any(mod.is_removed(t) for t in DATABASE_KEYS):
        raise ModifyError(BAD_REQUEST)  # "It is forbidden to remove one of the main Dicom identifiers"
    new_patient = PATIENT_ID in mod.replacements or PATIENT_ID in mod.uids
    what = {"Patient": "a patient", "Study": "a study", "Series": "a series", "Instance": "an instance"}[mod.level]
    if mod.level == "Patient" and not new_patient:
        raise ModifyError(BAD_REQUEST, "When modifying a patient, her PatientID is required to be modified")
    parents = [(PATIENT_ID, "PatientID"), (STUDY_UID, "StudyInstanceUID"), (SERIES_UID, "SeriesInstanceUID")]
    for tag, name in parents[: LEVELS.index(mod.level)]:
        if tag in mod.replacements or (tag == PATIENT_ID and new_patient):
            raise ModifyError(BAD_REQUEST, f"When modifying {what}, the parent {name} cannot be manually modified")
    probe = Dataset()
    for tag, value in mod.replacements.items():
        make_element(tag, value, probe, mod.private_creator)
    for path, value in mod.path_replacements:
        make_element(path.tag, value, probe, mod.private_creator)


# ---------------------------------------------------------------------- applying


Relationships = Callable[[Dataset, "Modification", IdentifierMap, tuple[tuple[int, int], ...]], None]


def dataset_to_modified(ds: Dataset, mod: Modification, ids: IdentifierMap,
                        relationships: Relationships | None = None) -> Dataset:
    """Apply ``mod`` to ``ds`` in place (Orthanc ``DicomModification::Apply``); returns ``ds``.

    ``relationships`` is the anonymization pass over nested sequences (mappings.anonymize)."""
    if relationships is not None:  # (1) references to a replaced UID follow the replacement
        for tag, level in UID_LEVELS:
            if isinstance(mod.replacements.get(tag), str):
                ids.register(level, text_of(ds, tag), mod.replacements[tag])
    if mod.remove_private_tags:  # (2) top-level private tags (and their creators)
        for elem in list(ds):
            if elem.tag.is_private and int(elem.tag) not in mod.private_tags_to_keep:
                del ds[elem.tag]
    for tag in mod.clearings:  # (3) emptied (an element of the dictionary's VR), only where present
        if tag in ds and tag & 0xFFFF:
            vr = vr_for(tag, Dataset(), "")
            ds[tag] = new_element(tag, vr if vr != "UN" else str(ds[tag].VR), empty_value(vr))
    for tag in mod.removals:  # (4)
        if tag in ds:
            del ds[tag]
    for tag, value in mod.replacements.items():  # (5) inserted when absent
        ds[tag] = make_element(tag, value, ds, mod.private_creator)
        _ensure_charset(ds, ds[tag])
    depth = LEVELS.index(mod.level)  # (6) new identifiers for the level and below
    kept = {STUDY_UID: STUDY_UID in mod.keep, SERIES_UID: SERIES_UID in mod.keep, SOP_UID: SOP_UID in mod.keep}
    for tag, level in UID_LEVELS:
        if depth <= LEVELS.index(level) and tag not in mod.replacements and not kept[tag]:
            set_text(ds, tag, "UI", ids.map(level, text_of(ds, tag)))
    if relationships is not None:  # (7)
        relationships(ds, mod, ids, ())
    for path in mod.remove_paths:  # (8) paths into sequences
        for item in _items(ds, path.prefix):
            if path.tag in item:
                del item[path.tag]
    for path, value in mod.path_replacements:
        for item in _items(ds, path.prefix):
            item[path.tag] = make_element(path.tag, value, item, mod.private_creator)
    return ds


def _items(ds: Dataset, prefix: tuple[tuple[int, int | None], ...]) -> Iterator[Dataset]:
    current = [ds]
    for seq_tag, index in prefix:
        found: list[Dataset] = []
        for item in current:
            elem = item.get(seq_tag)
            if elem is not None and elem.VR == "SQ" and elem.value is not None:
                found.extend(elem.value if index is None else elem.value[index : index + 1])
        current = found
    yield from current


def _ensure_charset(ds: Dataset, elem: DataElement) -> None:
    """Non-ASCII text written into a data set without a Specific Character Set gets one."""
    value = "" if elem.value is None else str(elem.value)
    if elem.VR in TEXT_VRS and not value.isascii() and CHARSET not in ds:
        try:
            value.encode("latin-1")
            ds.SpecificCharacterSet = "ISO_IR 100"
        except UnicodeEncodeError:
            ds.SpecificCharacterSet = "ISO_IR 192"
