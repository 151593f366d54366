"""DICOMDIR of a media ZIP (PS3.10 8, PS3.3 Annex F; General Purpose CD-R profile of PS3.11), built
with pydicom's :class:`~pydicom.fileset.FileSet` from the header of each file as it is streamed.

Records as Orthanc 1.10 writes them (``DicomDirWriter.cpp``, after DCMTK's ``DicomDirInterface``):
PATIENT (PatientID, PatientName), STUDY (StudyDate and StudyTime, falling back to the series,
acquisition and content ones and then to the current UTC time; StudyDescription, StudyInstanceUID,
StudyID, AccessionNumber), SERIES (Modality, SeriesInstanceUID, SeriesNumber; SeriesDescription in an
*extended* DICOMDIR), IMAGE (InstanceNumber and the Referenced File ID / SOP Class / SOP Instance /
Transfer Syntax) for every instance, with the Specific Character Set of the instance on each record.
Type 1 and 2 attributes are written (empty when the instance lacks them), type 1C ones only when the
instance has a value, the type 3 SeriesDescription when the instance has the element. Values are
copied with their character set (Orthanc reduces them to ASCII).
"""

from __future__ import annotations

import io
import warnings
from datetime import UTC, datetime
from typing import BinaryIO

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomFileLike
from pydicom.fileset import FileSet, RecordNode

from hub.errors import HubError

FILE_SET_ID = "RISHUB_MEDIA"

# (keyword, attribute type in the record): 1 always, 2 always (maybe empty), 1C if valued, 3 if present
PATIENT = (("PatientID", "1C"), ("PatientName", "2"))
STUDY = (("StudyDescription", "2"), ("StudyInstanceUID", "1"), ("StudyID", "1C"), ("AccessionNumber", "2"))
SERIES = (("Modality", "1"), ("SeriesInstanceUID", "1"), ("SeriesNumber", "1C"))
IMAGE = (("InstanceNumber", "1"),)
DATE_FALLBACK = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
TIME_FALLBACK = ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime")


def _copy(record: Dataset, ds: Dataset, keyword: str, kind: str) -> None:
    present = keyword in ds
    valued = present and not ds[keyword].is_empty
    if kind == "1C" and not valued or kind == "3" and not present:
        return
    if present:
        elem = ds[keyword]
        record.add(DataElement(elem.tag, elem.VR, elem.value))
    else:
        record.add_new(keyword, dictionary_VR(keyword), None)


def _first(ds: Dataset, keywords: tuple[str, ...], default: str) -> str:
    """Orthanc takes the first of these elements that exists (even empty), else ``default``."""
    for kw in keywords:
        if kw in ds:
            return str(ds[kw].value or "")
    return default


class DicomDirBuilder:
    """Collects one directory record per instance; :meth:`encode` gives the DICOMDIR file.

    Records are shared as in Orthanc: one PATIENT per PatientID, one STUDY per StudyInstanceUID, one
    SERIES per SeriesInstanceUID, one IMAGE per SOPInstanceUID (a repeated instance is listed once).
    The record tree is the FileSet's; it is filled directly (``FileSet.add_custom`` would stage a copy
    of each instance and search the whole set on every addition).
    """

    def __init__(self, *, extended: bool = False, file_set_id: str = FILE_SET_ID) -> None:
        self.extended = extended
        self.fs = FileSet()
        self.fs.ID = file_set_id
        self._now = datetime.now(UTC)
        self._nodes: dict[tuple[str, str], RecordNode] = {}

    def __len__(self) -> int:
        return sum(1 for level, _ in self._nodes if level == "IMAGE")

    def _record(self, kind: str, ds: Dataset, fields: tuple[tuple[str, str], ...]) -> Dataset:
        record = Dataset()
        record.DirectoryRecordType = kind
        for keyword, attr_type in fields:
            _copy(record, ds, keyword, attr_type)
        charset = ds.get("SpecificCharacterSet", None)
        if charset:
            record.SpecificCharacterSet = charset
        return record

    def _study(self, ds: Dataset) -> Dataset:
        study = self._record("STUDY", ds, STUDY)
        study.StudyDate = _first(ds, DATE_FALLBACK, self._now.strftime("%Y%m%d"))
        study.StudyTime = _first(ds, TIME_FALLBACK, self._now.strftime("%H%M%S"))
        return study

    def _patient(self, ds: Dataset) -> Dataset:
        patient = self._record("PATIENT", ds, PATIENT)
        if "PatientID" not in patient:  # pydicom keys patient records on it (Orthanc: an empty id)
            patient.PatientID = ""
        return patient

    def add(self, f: BinaryIO, file_id: list[str]) -> bool:
        """Add the instance whose Part 10 file is ``f`` under the Referenced File ID ``file_id``;
        False when that instance is already listed."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = dcmread(f, stop_before_pixels=True)
            uids = (str(ds.PatientID) if "PatientID" in ds else "", str(ds.StudyInstanceUID),
                    str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
            sop_class, transfer_syntax = str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)
        except (InvalidDicomError, AttributeError, KeyError, ValueError, EOFError, TypeError) as exc:
            raise HubError("bad_file_format", f"cannot read the stored file: {type(exc).__name__}") from None
        if ("IMAGE", uids[3]) in self._nodes:
            return False
        image = self._record("IMAGE", ds, IMAGE)
        image.ReferencedFileID = file_id
        image.ReferencedSOPClassUIDInFile = sop_class
        image.ReferencedSOPInstanceUIDInFile = uids[3]
        image.ReferencedTransferSyntaxUIDInFile = transfer_syntax
        child = self._nodes[("IMAGE", uids[3])] = RecordNode(image)
        series_fields = SERIES + ((("SeriesDescription", "3"),) if self.extended else ())
        makers = (
            ("SERIES", uids[2], lambda: self._record("SERIES", ds, series_fields)),
            ("STUDY", uids[1], lambda: self._study(ds)),
            ("PATIENT", uids[0], lambda: self._patient(ds)),
        )
        for kind, uid, make in makers:
            parent = self._nodes.get((kind, uid))
            if parent is not None:
                child.parent = parent
                return True
            parent = self._nodes[(kind, uid)] = RecordNode(make())
            child.parent = parent
            child = parent
        child.parent = self.fs._tree  # noqa: SLF001 - the FileSet's record tree
        return True

    def encode(self) -> bytes:
        """The DICOMDIR file (Explicit VR Little Endian, record offsets filled in)."""
        buf = io.BytesIO()
        fp = DicomFileLike(buf)
        # FileSet.write() would also copy the instances to its own PTxxxxxx/... layout; only the
        # DICOMDIR is wanted here, with the file ids of the ZIP.
        self.fs._write_dicomdir(fp)  # noqa: SLF001
        return buf.getvalue()
