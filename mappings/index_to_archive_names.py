"""Index main tags -> member names of Orthanc's ZIP archives and DICOMDIR media (Orthanc 1.10).

Rules copied from Orthanc 1.10 ``ArchiveJob.cpp`` (``ArchiveIndexVisitor``, ``MediaIndexVisitor``) and
``HierarchicalZipWriter.cpp``:

* folders: patient ``"PatientID PatientName"``, study ``"AccessionNumber StudyDescription"``, series
  ``"Modality SeriesDescription"``; non-ASCII and control characters dropped, surrounding spaces
  stripped, ``"Unknown Patient|Study|Series"`` when that leaves nothing;
* files: two upper-cased letters of the modality and a six-digit counter restarting in each series
  (``CT000000.dcm``; one letter + seven digits, or eight digits, for shorter modalities);
* every name then keeps only ASCII letters, digits, ``.``, ``_`` and single spaces (``^`` is a space),
  and a name already used in the same folder gets ``-2``, ``-3``, ...;
* media (DICOMDIR, PS3.10 8.5 file ids): ``IMAGES/IM0``, ``IMAGES/IM1``, ... in archive order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Tags = Mapping[str, str]
SeriesEntry = tuple[Tags, int]  # series main tags, number of files in the series folder
StudyEntry = tuple[Tags, Sequence[SeriesEntry]]
PatientEntry = tuple[Tags, Sequence[StudyEntry]]

MEDIA_FOLDER = "IMAGES"
_SPACES = " \t\n\v\f\r"  # C isspace()


def to_ascii(value: str) -> str:
    """Orthanc ``Toolbox::ConvertToAscii``: keep printable ASCII (drops bytes >= 128 and controls)."""
    return "".join(c for c in value if 32 <= ord(c) < 127)


def keep_alphanumeric(name: str) -> str:
    """Orthanc ``HierarchicalZipWriter::Index::KeepAlphanumeric``: ASCII letters, digits, ``.``, ``_``;
    ``^`` and white space become one space; the result is stripped."""
    out: list[str] = []
    last_space = False
    for c in name:
        if c == "^":
            c = " "
        if ord(c) >= 128:
            continue
        if c in _SPACES:
            if not last_space:
                last_space = True
                out.append(" ")
        elif c.isascii() and (c.isalnum() or c in "._"):
            out.append(c)
            last_space = False
    return "".join(out).strip(_SPACES)


def folder_name(level: str, tags: Tags) -> str:
    """The folder name Orthanc asks for at ``level`` (``Patient``, ``Study``, ``Series``), before
    :func:`keep_alphanumeric`."""
    get = lambda kw: tags.get(kw) or ""  # noqa: E731
    if level == "Patient":
        path = f"{get('PatientID')} {get('PatientName')}"
    elif level == "Study":
        path = f"{get('AccessionNumber')} {get('StudyDescription')}"
    elif level == "Series":
        path = f"{get('Modality')} {get('SeriesDescription')}"
    else:
        raise ValueError(f"no folder at level {level!r}")
    path = to_ascii(path).strip(_SPACES)
    return path or f"Unknown {level}"


def instance_file_name(modality: str, counter: int) -> str:
    """``CT000000.dcm``: Orthanc's ``%c%c%06d.dcm`` on the bytes of the (UTF-8) modality."""
    raw = modality.encode("utf-8")
    if not raw:
        return f"{counter:08d}.dcm"
    if len(raw) == 1:
        return f"{_upper(raw[0])}{counter:07d}.dcm"
    return f"{_upper(raw[0])}{_upper(raw[1])}{counter:06d}.dcm"


def _upper(byte: int) -> str:
    # C toupper() on a byte; a byte >= 128 is dropped by keep_alphanumeric afterwards anyway
    return chr(byte).upper() if byte < 128 else "\x80"


class _Folder:
    """One directory level of ``HierarchicalZipWriter::Index``: names already used in it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.used: dict[str, int] = {}

    def unique(self, raw: str) -> str:
        name = keep_alphanumeric(raw)
        count = self.used.get(name)
        if count is None:
            self.used[name] = 1
            return name
        self.used[name] = count + 1
        return f"{name}-{count + 1}"


def index_to_archive_names(patients: Sequence[PatientEntry]) -> list[str]:
    """ZIP member names of an archive, in the order of ``patients`` (each with its studies, each
    with its series and their file counts), as Orthanc's ``/archive`` and ``/tools/create-archive``
    name them. No directory entries: a folder only appears in the paths of its files."""
    names: list[str] = []
    root = _Folder("")
    for patient_tags, studies in patients:
        patient = _Folder(root.unique(folder_name("Patient", patient_tags)))
        for study_tags, series_list in studies:
            study = _Folder(patient.unique(folder_name("Study", study_tags)))
            for series_tags, count in series_list:
                series = _Folder(study.unique(folder_name("Series", series_tags)))
                prefix = f"{patient.name}/{study.name}/{series.name}/"
                modality = series_tags.get("Modality") or ""
                names.extend(prefix + series.unique(instance_file_name(modality, i)) for i in range(count))
    return names


def index_to_media_names(count: int) -> list[str]:
    """ZIP member names of the files of a DICOMDIR media: ``IMAGES/IM0`` ... (Orthanc
    ``MediaIndexVisitor``: file ids of at most 8 characters, PS3.10 8.2)."""
    return [f"{MEDIA_FOLDER}/IM{i}" for i in range(count)]


def media_file_id(name: str) -> list[str]:
    """The Referenced File ID (0004,1500) components of a media member name (``IMAGES\\IM0``)."""
    return name.split("/")
