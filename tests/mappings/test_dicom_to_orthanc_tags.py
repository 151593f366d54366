"""Golden tests for pydicom Dataset -> Orthanc tags JSON (the rules Orthanc 1.10 applies; the contract
tests compare whole files with a real Orthanc)."""

from __future__ import annotations

import io
import struct

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from mappings.dicom_to_orthanc_tags import (
    TagDictionary,
    dataset_to_orthanc_tags,
    element_value_bytes,
    file_meta_to_orthanc_header,
    parse_tag,
    shorten,
    simplify,
)

DCMTK_TEXT = "\n".join([
    "# comment",
    "(0008,0005)\tCS\tSpecificCharacterSet\t1-n\tDICOM",
    "(0008,0016)\tUI\tSOPClassUID\t1\tDICOM",
    "(0008,0018)\tUI\tSOPInstanceUID\t1\tDICOM",
    "(0008,1030)\tLO\tStudyDescription\t1\tDICOM",
    "(0008,1140)\tSQ\tReferencedImageSequence\t1\tDICOM",
    "(0008,1150)\tUI\tReferencedSOPClassUID\t1\tDICOM",
    "(0010,0010)\tPN\tPatientName\t1\tDICOM",
    "(0010,0020)\tLO\tPatientID\t1\tDICOM",
    "(0010,0021)\tLO\tIssuerOfPatientID\t1\tDICOM",
    "(0010,1000)\tLO\tRETIRED_OtherPatientIDs\t1-n\tDICOM/retired",
    "(0018,9305)\tFD\tRevolutionTime\t1\tDICOM",
    "(0018,9306)\tFL\tSingleCollimationWidth\t1\tDICOM",
    "(0020,9165)\tAT\tDimensionIndexPointer\t1\tDICOM",
    "(0028,0010)\tUS\tRows\t1\tDICOM",
    "(0028,0120)\txs\tPixelPaddingValue\t1\tDICOM",
    "(6000-60FF,0010)\tUS\tOverlayRows\t1\tDICOM",
    "(7FE0,0010)\tox\tPixelData\t1\tDICOM",
    '(0019,"GEMS_ACQU_01",02)\tSL\tNumberOfCellsInDetector\t1\tPrivateTag',
    '(0019,"GEMS_ACQU_01",14)\tSS\tEnd NumberForBaseline\t1\tPrivateTag',
])
NAMES = TagDictionary.from_dcmtk([DCMTK_TEXT])


def roundtrip(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> Dataset:
    """Write ``ds`` as a Part 10 file and read it back (raw elements, as the service sees them)."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    buf.seek(0)
    return dcmread(buf)


def raw_explicit(elements: list[tuple[int, str, bytes]]) -> Dataset:
    """A Part 10 file whose data set is exactly ``elements`` (explicit VR little endian), as some
    modalities write them (pydicom would rewrite a UN with a known VR)."""
    buf = io.BytesIO()
    empty = roundtrip(Dataset())
    empty.save_as(buf, enforce_file_format=True)
    for tag, vr, value in sorted(elements):
        head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
        if vr in ("OB", "OW", "UN", "SQ", "UT"):
            head += struct.pack("<HI", 0, len(value))
        else:
            head += struct.pack("<H", len(value))
        buf.write(head + value)
    buf.seek(0)
    return dcmread(buf)


def test_dcmtk_dictionary_entries_ranges_private_and_blanks():
    assert NAMES.name(0x00100010, None) == "PatientName"
    assert NAMES.name(0x60020010, None) == "OverlayRows"  # repeating group
    assert NAMES.name(0x00191002, "GEMS_ACQU_01") == "NumberOfCellsInDetector"
    assert NAMES.name(0x00191114, "GEMS_ACQU_01") == "EndNumberForBaseline"  # block 0x11, blanks stripped
    assert NAMES.name(0x00190011, None) == "PrivateCreator"
    assert NAMES.name(0x00191002, "OTHER") == "Unknown Tag & Data"
    assert NAMES.name(0x00100000, None) == "GenericGroupLength"
    assert NAMES.name(0x00101000, None) == "OtherPatientIDs"  # Orthanc's patch over RETIRED_


def test_pydicom_fallback_names():
    fallback = TagDictionary()
    assert fallback.name(0x00100010, None) == "PatientName"
    assert fallback.name(0x00080001, None) == "RETIRED_LengthToEnd"
    assert fallback.name(0x00091001, "GEMS_IDEN_01") == "FullFidelity"


def test_strings_numbers_binary_and_lengths():
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jürgen"
    ds.add_new(0x00100020, "LO", "ID1  ")
    ds.SOPInstanceUID = "1.2.3"
    ds.add_new(0x00081030, "LO", "x" * 257)
    ds.add_new(0x00180050, "DS", "")
    ds.add_new(0x00280010, "US", b"")
    ds.add_new(0x00209165, "AT", [0x00100010, 0x00200013])
    ds.add_new(0x00189305, "FD", [1.1, 2.0e-7])
    ds.add_new(0x00189306, "FL", [0.1])
    ds.add_new(0x00280120, "SS", -2000)
    ds.add_new(0x00291010, "OB", b"\1\2")
    ds.BitsAllocated = 8
    ds.add_new(0x7FE00010, "OB", b"\0\0")
    ds.add_new(0xFFFCFFFC, "OB", b"\0\0")
    full = dataset_to_orthanc_tags(roundtrip(ds), NAMES)
    assert full["0010,0010"] == {"Name": "PatientName", "Type": "String", "Value": "Müller^Jürgen"}
    assert full["0010,0020"]["Value"] == "ID1"  # trailing padding dropped
    assert full["0008,0018"]["Value"] == "1.2.3"
    assert full["0008,1030"] == {"Name": "StudyDescription", "Type": "TooLong", "Value": None}
    assert full["0018,0050"]["Value"] == "" and full["0018,0050"]["Type"] == "String"
    assert full["0028,0010"] == {"Name": "Rows", "Type": "Null", "Value": None}
    assert full["0020,9165"]["Value"] == "0010,0010"  # first value only
    assert full["0018,9305"]["Value"] == "1.1000000000000001\\1.9999999999999999e-07"
    assert full["0018,9306"]["Value"] == "0.10000000149011612"  # a float, written as a double
    assert full["0028,0120"]["Value"] == "-2000"
    assert full["0029,1010"]["Type"] == "Null"
    assert full["7fe0,0010"] == {"Name": "PixelData", "Type": "Null", "Value": None}
    assert "fffc,fffc" not in full  # nothing after the pixel data
    kept = dataset_to_orthanc_tags(roundtrip(ds), NAMES, ignore_length=frozenset({0x00081030}))
    assert kept["0008,1030"]["Value"] == "x" * 257
    assert list(full) == sorted(full)


def test_sequences_private_creators_and_un():
    ds = Dataset()
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2"
    ds.ReferencedImageSequence = Sequence([item, Dataset()])
    ds.add_new(0x00081115, "SQ", Sequence([]))
    ds.private_block(0x0019, "GEMS_ACQU_01", create=True).add_new(0x02, "SL", 912)
    ds.private_block(0x0029, "ACME", create=True).add_new(0x01, "LO", "acme")
    full = dataset_to_orthanc_tags(roundtrip(ds), NAMES)
    assert full["0008,1140"] == {"Name": "ReferencedImageSequence", "Type": "Sequence", "Value": [
        {"0008,1150": {"Name": "ReferencedSOPClassUID", "Type": "String", "Value": "1.2"}}, {}]}
    assert full["0008,1115"]["Value"] == []
    assert full["0019,1002"] == {"Name": "NumberOfCellsInDetector", "PrivateCreator": "GEMS_ACQU_01",
                                 "Type": "String", "Value": "912"}
    assert full["0029,1001"]["PrivateCreator"] == "ACME" and full["0029,1001"]["Name"] == "Unknown Tag & Data"
    assert full["0019,0010"] == {"Name": "PrivateCreator", "Type": "String", "Value": "GEMS_ACQU_01"}
    simple = simplify(full)
    assert simple["ReferencedImageSequence"] == [{"ReferencedSOPClassUID": "1.2"}, {}]
    assert list(simple) == sorted(simple)
    assert shorten(full)["0008,1140"] == [{"0008,1150": "1.2"}, {}]


def test_un_elements_read_through_the_dictionary():
    """DICOM CP 246: a UN value whose dictionary VR is a string is that string, padding spaces
    kept and one NUL dropped; private ones only when ASCII; others are binary."""
    ds = raw_explicit([(0x00100020, "UN", b"id1 "), (0x00100021, "UN", b"Iss\0"), (0x00190010, "LO", b"GEMS_ACQU_01"),
                       (0x00191002, "UN", b"912 "), (0x00191014, "UN", b"\1\0"), (0x00290010, "LO", b"ACME"),
                       (0x00291001, "UN", b"abcd")])
    full = dataset_to_orthanc_tags(ds, NAMES)
    assert full["0010,0020"]["Value"] == "id1 "
    assert full["0010,0021"]["Value"] == "Iss"
    assert full["0019,1002"]["Type"] == "Null"  # SL in the dictionary: binary
    assert full["0029,1001"]["Type"] == "Null"  # unknown private tag
    assert element_value_bytes(ds, 0x00100020, NAMES) == b"id1 "


def test_implicit_vr_private_tag_takes_the_dictionary_vr():
    ds = Dataset()
    ds.private_block(0x0019, "GEMS_ACQU_01", create=True).add_new(0x02, "SL", 912)
    ds.private_block(0x0029, "ACME", create=True).add_new(0x01, "LO", "acme")
    full = dataset_to_orthanc_tags(roundtrip(ds, ImplicitVRLittleEndian), NAMES)
    assert full["0019,1002"]["Value"] == "912"
    assert full["0029,1001"]["Type"] == "Null"  # unknown to the dictionary: binary


def test_simplify_last_tag_wins_and_nulls():
    full = {"0021,1015": {"Name": "Unknown", "Type": "String", "Value": "a"},
            "0021,1016": {"Name": "Unknown", "Type": "String", "Value": "b"},
            "0043,1028": {"Name": "Binary", "Type": "Null", "Value": None},
            "0018,1020": {"Name": "SoftwareVersions", "Type": "TooLong", "Value": None}}
    assert simplify(full) == {"Binary": None, "SoftwareVersions": None, "Unknown": "b"}
    assert shorten(full)["0018,1020"] is None


def test_charsets():
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "王^小明"
    assert dataset_to_orthanc_tags(roundtrip(ds), NAMES)["0010,0010"]["Value"] == "王^小明"
    latin = Dataset()
    latin.add_new(0x00100010, "PN", "Caf\xe9".encode("latin-1"))
    assert dataset_to_orthanc_tags(roundtrip(latin), NAMES)["0010,0010"]["Value"] == "Café"  # Latin-1 default
    jis = Dataset()
    jis.SpecificCharacterSet = ["ISO 2022 IR 13", "ISO 2022 IR 87"]
    jis.add_new(0x00081030, "LO", "A\\B")
    out = dataset_to_orthanc_tags(roundtrip(jis), NAMES)
    assert out["0008,1030"]["Value"] == "A\u00a5B"  # Orthanc's Shift-JIS view of the backslash
    assert out["0008,0005"]["Value"] == "ISO 2022 IR 13\u00a5ISO 2022 IR 87"


def test_header_keeps_group_length_and_drops_binary():
    ds = roundtrip(Dataset())
    header = file_meta_to_orthanc_header(ds.file_meta, TagDictionary())
    assert header["0002,0000"]["Name"] == "FileMetaInformationGroupLength"
    assert "0002,0001" not in header  # OB: no binary with DicomToJsonFlags_None
    assert header["0002,0010"]["Value"] == ExplicitVRLittleEndian


def test_element_value_bytes_as_dcmtk_holds_them():
    ds = Dataset()
    ds.Rows = 128
    ds.PatientName = "ABC"
    big = roundtrip(ds, ExplicitVRBigEndian)
    assert element_value_bytes(big, 0x00280010, NAMES) == b"\x80\x00"  # swapped to little endian
    assert element_value_bytes(big, 0x00100010, NAMES) == b"ABC "  # padding kept


@pytest.mark.parametrize("text,tag", [("0010,0010", 0x00100010), ("0010-0010", 0x00100010), ("00100010", 0x00100010),
                                      ("7fe0-0010", 0x7FE00010), ("PatientName", 0x00100010), ("xyz", None),
                                      ("0010-00", None)])
def test_parse_tag(text, tag):
    assert parse_tag(text) == tag
