"""Original-mode ACKs (mapping-reference §1.7): AA, AE with ERR (v2.5) / ERR-1 + MSA-3 (v2.3.1), AR."""

from __future__ import annotations

from datetime import datetime

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from mappings.hl7_ack import ack_code_for, ack_for, ack_for_error
from mappings.hl7_message import Hl7ParseError, parse_hl7
from mappings.hl7_to_order import MappingPolicy, hl7_to_mapped
from tests.hl7_samples import samples_dir

SAMPLES = samples_dir()
NOW = datetime(2025, 3, 14, 8, 15, 3)


def raw(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def segs(ack: bytes, codec: str = "latin-1") -> list[str]:
    return ack.decode(codec).rstrip("\r").split("\r")


def reject(data: bytes, policy: MappingPolicy | None = None) -> Hl7ParseError:
    with pytest.raises(Hl7ParseError) as info:
        hl7_to_mapped(parse_hl7(data), policy or MappingPolicy())
    return info.value


def test_aa_v231_matches_reference_example():
    msg = parse_hl7(raw("01_orm_o01_nw_ct_v231.hl7"))
    ack = ack_for(msg.header, "AA", control_id="HUBACK0001", now=NOW)
    assert segs(ack) == ["MSH|^~\\&|HUB|PACS|RIS|RADIOLOGY|20250314081503||ACK^O01^ACK|HUBACK0001|P|2.3.1||||||8859/1",
                         "MSA|AA|RIS00012345"]
    assert parse_hl7(ack).header.message_code == "ACK^O01"


def test_ae_v251_missing_study_uid_matches_reference_example():
    data = raw("04_omi_o23_nw_mr_two_sps_v251.hl7").replace(b"|2.25.200233365037459004953088623702178552356|", b"||")
    err = reject(data, MappingPolicy(study_uid="reject"))
    ack = ack_for_error(err, control_id="HUBACK0002", now=NOW)
    lines = segs(ack, "utf-8")
    assert lines[0] == ("MSH|^~\\&|HUB|PACS|RIS_B|IMAGING_CENTER|20250314081503||ACK^O23^ACK|HUBACK0002|P|2.5.1"
                        "||||||UNICODE UTF-8")
    assert lines[1] == "MSA|AE|RISB-000731"
    assert lines[2] == "ERR||IPC^1^3|101^Required field missing^HL70357|E||||Study Instance UID missing"
    # the ACK is itself a valid v2.5.1 ACK for hl7apy's strict parser
    strict = parse_message(ack.decode("utf-8"), validation_level=VALIDATION_LEVEL.STRICT)
    strict.validate()


def test_ae_v231_missing_pid3_uses_err1_and_msa3():
    data = raw("01_orm_o01_nw_ct_v231.hl7").replace(
        b"PID|1||4711001^^^HOSP_A&2.999.1.1&ISO^MR~K123456789^^^NATID&2.999.9.1&ISO^NI|", b"PID|1|||")
    err = reject(data)
    assert ack_code_for(err) == "AE"
    lines = segs(ack_for_error(err, control_id="A1", now=NOW))
    assert lines[1].startswith("MSA|AE|RIS00012345|")
    assert lines[2] == "ERR|PID^1^3^101&Required field missing&HL70357"


def test_ar_unknown_trigger_and_version():
    err = reject(raw("01_orm_o01_nw_ct_v231.hl7").replace(b"ORM^O01", b"ORM^O99"))
    assert (ack_code_for(err), err.code) == ("AR", "201")
    lines = segs(ack_for_error(err, control_id="A2", now=NOW))
    assert lines[0].split("|")[8] == "ACK^O99^ACK" and lines[1].startswith("MSA|AR|RIS00012345")
    with pytest.raises(Hl7ParseError) as info:
        parse_hl7(raw("04_omi_o23_nw_mr_two_sps_v251.hl7").replace(b"|2.5.1|", b"|2.2|"))
    lines = segs(ack_for_error(info.value, control_id="A3", now=NOW), "utf-8")
    assert lines[0].split("|")[11] == "2.2"  # answered in the sender's version: legacy MSA-3 + ERR-1
    assert lines[1] == "MSA|AR|RISB-000731|unsupported HL7 version"
    assert lines[2] == "ERR|MSH^1^12^203&Unsupported version id&HL70357"
    with pytest.raises(Hl7ParseError) as info:
        parse_hl7(raw("04_omi_o23_nw_mr_two_sps_v251.hl7").replace(b"|2.5.1|", b"|9.9|"))
    lines = segs(ack_for_error(info.value, control_id="A3", now=NOW), "utf-8")
    assert lines[2].startswith("ERR||MSH^1^12|203^Unsupported version id^HL70357|E")


@pytest.mark.parametrize("data", [b"", b"garbage\r\x00\xff", b"MSH|^|bad\r", b"PID|1||123\r"])
def test_ar_for_unparsable(data):
    with pytest.raises(Hl7ParseError) as info:
        parse_hl7(data)
    err = info.value
    assert ack_code_for(err) == "AR"
    ack = ack_for_error(err, control_id="A4", now=NOW, local_application="HUB", local_facility="PACS")
    lines = segs(ack, "ascii")
    assert lines[0] == "MSH|^~\\&|HUB|PACS|||20250314081503||ACK|A4|P|2.5.1"
    assert lines[1] == "MSA|AR|"
    assert lines[2].split("|")[3].startswith(err.code + "^")


def test_ack_escapes_delimiters_and_keeps_charset():
    msg = parse_hl7(raw("01_orm_o01_nw_ct_v231.hl7").replace(b"|2.3.1|", b"|2.5|"))
    ack = ack_for(msg.header, "AE", err_code="102", location="ORC^1^7^4", text="bad|date^ä", control_id="A5",
                  now=NOW)
    lines = segs(ack)
    assert lines[2] == "ERR||ORC^1^7^4|102^Data type error^HL70357|E||||bad\\F\\date\\S\\ä"
    assert "ä".encode("latin-1") in ack
    with pytest.raises(ValueError):
        ack_for(msg.header, "CA", control_id="x")
