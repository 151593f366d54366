"""parse_hl7: framing, separators, encoding characters, charsets, escapes, null vs empty, errors (table 0357)."""

from __future__ import annotations

import pytest

from mappings.hl7_charsets import charset_for_dicom, charset_for_msh18, dicom_to_msh18, msh18_to_dicom
from mappings.hl7_message import Delimiters, Hl7ParseError, escape, parse_hl7, peek_header, unescape
from tests.hl7_samples import samples_dir

SAMPLES = samples_dir()
ADT = b"MSH|^~\\&|ADT|HOSP|HUB|PACS|20250314120001||ADT^A08|C1|P|2.5.1\rPID|1||123^^^HOSP||DOE^JOHN\r"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def test_sample_01_header_and_latin1():
    msg = parse_hl7(sample("01_orm_o01_nw_ct_v231.hl7"))
    h = msg.header
    assert (h.sending_application, h.sending_facility, h.receiving_application, h.receiving_facility) == (
        "RIS", "RADIOLOGY", "HUB", "PACS")
    assert (h.message_type, h.trigger_event, h.message_structure) == ("ORM", "O01", "")
    assert (h.control_id, h.processing_id, h.version, h.charset) == ("RIS00012345", "P", "2.3.1", "8859/1")
    assert msg.dicom_charset == "ISO_IR 100"
    assert [s.name for s in msg.segments] == ["MSH", "PID", "PV1", "ORC", "OBR", "ZDS"]
    pid = msg.first("PID")
    assert pid.get(5, 1) == "MÜLLER" and pid.get(5, 2) == "JÖRG"
    assert pid.get(3, 4, 2, r=2) == "2.999.9.1"
    assert pid.repetition_count(3) == 2
    assert pid.location(3, 1) == "PID^1^3^1"
    assert msg.hl7apy is not None and msg.hl7apy.msh.msh_10.value == "RIS00012345"


def test_sample_04_utf8_and_structure():
    msg = parse_hl7(sample("04_omi_o23_nw_mr_two_sps_v251.hl7"))
    assert msg.header.message_structure == "OMI_O23"
    assert msg.dicom_charset == "ISO_IR 192"
    assert msg.first("PID").get(5, 1) == "ŁUKASZEWSKA"
    assert [s.seq for s in msg.all("IPC")] == [1, 2]


def test_mllp_bytes_and_lf_only_separators():
    msg = parse_hl7(b"\x0b" + ADT.replace(b"\r", b"\n") + b"\x1c\r")
    assert [s.name for s in msg.segments] == ["MSH", "PID"]
    assert msg.first("PID").get(3, 1) == "123"


def test_crlf_separators():
    msg = parse_hl7(ADT.replace(b"\r", b"\r\n"))
    assert [s.name for s in msg.segments] == ["MSH", "PID"]


def test_lf_inside_segment_is_data_when_cr_present():
    raw = ADT + b"OBX|1|TX|X^Y||line one\nline two||||||F\r"
    msg = parse_hl7(raw.replace(b"ADT^A08", b"ORU^R01"))
    assert msg.first("OBX").get(5) == "line one\nline two"


def test_five_encoding_characters_and_custom_delimiters():
    msg = parse_hl7(ADT.replace(b"^~\\&", b"^~\\&#").replace(b"2.5.1", b"2.7"))
    assert msg.delimiters.truncation == "#"
    assert msg.first("PID").get(5, 2) == "JOHN"
    other = ADT.replace(b"|", b"!").replace(b"^~\\&", b"$*%@")
    msg = parse_hl7(other.replace(b"DOE^JOHN", b"DOE$JOHN").replace(b"123^^^HOSP", b"123$$$HOSP"))
    assert msg.delimiters == Delimiters("!", "$", "*", "%", "@", "")
    assert msg.first("PID").get(5, 2) == "JOHN" and msg.first("PID").get(3, 4) == "HOSP"


def test_escapes_and_null():
    raw = ADT.replace(b"DOE^JOHN", b"O\\F\\B\\S\\R\\T\\S\\R\\R\\E\\X\\X41\\\\.br\\Z^\"\"") + b"NTE|1||\\H\\bold\\N\\\r"
    msg = parse_hl7(raw)
    pid = msg.first("PID")
    assert pid.get(5, 1) == "O|B^R&S~R\\XA\nZ"
    assert pid.get(5, 2) == "" and pid.is_null(5, 2) and not pid.is_null(5, 3)
    assert not pid.is_null(5, 1)
    assert msg.first("NTE").get(3) == "bold"


def test_unescape_edge_cases():
    d = Delimiters()
    assert unescape("a\\b", d) == "a\\b"  # unterminated escape kept literally
    assert unescape("\\XC3A4\\", d, "utf-8") == "ä"
    assert unescape("x\\.sp2\\y", d) == "x\n\ny"
    assert unescape("\\Q\\", d) == "\\Q\\"
    assert unescape(escape("a|b^c&d~e\\f\ng", d), d) == "a|b^c&d~e\\f\ng"


def test_z_segments_and_version_drift_tq1_in_v23():
    raw = (b"MSH|^~\\&|RIS|R|HUB|P|2025||ORM^O01|C2|P|2.3\rPID|1||1\rORC|NW\rTQ1|1||||||20250101\r"
           b"OBR|1\rZDS|1.2.3^100^Application^DICOM\rZXX|anything\r")
    msg = parse_hl7(raw)
    assert [s.name for s in msg.segments][-3:] == ["OBR", "ZDS", "ZXX"]


@pytest.mark.parametrize("charset, codec, dicom", [("UTF-8", "utf-8", "ISO_IR 192"),
                                                     ("ISO-8859-1", "iso8859-1", "ISO_IR 100"),
                                                     ("8859/2", "iso8859-2", "ISO_IR 101"),
                                                     ("UNICODE UTF-8", "utf-8", "ISO_IR 192")])
def test_charset_aliases(charset, codec, dicom):
    text = ADT.decode("latin-1").replace("2.5.1", "2.5.1||||||" + charset).replace("DOE", "ŻÓŁW" if
                                                                                      codec != "iso8859-1" else "DÖE")
    if codec == "iso8859-2":
        text = text.replace("ŻÓŁW", "ŻÓ")
    msg = parse_hl7(text.encode(codec))
    assert msg.header.codec == codec and msg.dicom_charset == dicom
    assert msg.first("PID").get(5, 1) in ("ŻÓŁW", "DÖE", "ŻÓ")


def test_default_charset_used_when_msh18_empty():
    raw = ADT.replace(b"DOE", "MÜLLER".encode("cp1252"))
    assert parse_hl7(raw).first("PID").get(5, 1) == "MÜLLER"
    assert parse_hl7(raw).dicom_charset == "ISO_IR 100"
    utf = ADT.replace(b"DOE", "MÜLLER".encode())
    msg = parse_hl7(utf, default_charset="utf-8")
    assert msg.first("PID").get(5, 1) == "MÜLLER" and msg.dicom_charset == "ISO_IR 192"


def test_charset_table():
    assert msh18_to_dicom("8859/1") == "ISO_IR 100"
    assert dicom_to_msh18("ISO_IR 192") == "UNICODE UTF-8"
    assert dicom_to_msh18("") == ""
    assert charset_for_dicom("ISO 2022 IR 87").msh18 == "ISO IR87"
    assert charset_for_msh18("GB 18030-2000").dicom == "GB18030"
    assert charset_for_msh18("KLINGON") is None


@pytest.mark.parametrize("raw, code, location", [
    (b"", "100", "MSH^1"),
    (b"\x00\xff\xfe garbage", "100", "MSH^1"),
    (b"PID|1||123\r", "100", "MSH^1"),
    (b"MSH|^~|A|B\rPID|1\r", "102", "MSH^1^2"),
    (b"MSH|^^\\&|A|B\rPID|1\r", "102", "MSH^1^2"),
    (b"MSHA^~\\&|A|B\r", "102", "MSH^1^1"),
    (ADT.replace(b"2.5.1", b"2.1"), "203", "MSH^1^12"),
    (ADT.replace(b"2.5.1", b"3.0"), "203", "MSH^1^12"),
    (ADT.replace(b"|C1|", b"||"), "101", "MSH^1^10"),
    (ADT.replace(b"ADT^A08", b""), "101", "MSH^1^9"),
    (ADT.replace(b"2.5.1", b"2.5.1||||||KLINGON"), "103", "MSH^1^18"),
    (ADT.replace(b"2.5.1", b"2.5.1||||||UTF-8").replace(b"DOE", b"\xff\xfe"), "102", "MSH^1^18"),
    (ADT + b"p!d|1\r", "100", ""),
    (ADT + b"XYZ|1\r", "100", "XYZ^1"),
    (ADT + ADT, "100", "MSH^2"),
])
def test_parse_errors(raw, code, location):
    with pytest.raises(Hl7ParseError) as info:
        parse_hl7(raw)
    assert (info.value.code, info.value.location) == (code, location)
    if code in ("101", "103", "203"):
        assert info.value.header is not None and info.value.header.control_id in ("C1", "")


def test_error_messages_carry_no_values():
    with pytest.raises(Hl7ParseError) as info:
        parse_hl7(ADT.replace(b"2.5.1", b"2.5.1||||||UTF-8").replace(b"DOE", b"\xff"))
    assert "DOE" not in str(info.value) and "123" not in str(info.value)


def test_peek_header_best_effort():
    assert peek_header(b"junk") is None
    hdr = peek_header(b"\x0bMSH|^~\\&|A|B|C|D|x||ORM^O01|ID9|P|9.9\rgarbage")
    assert hdr is not None and hdr.control_id == "ID9" and hdr.sending_application == "A"
