"""Golden tests of hl7_to_mapped on the acceptance samples (mapping-reference §5) plus bad input."""

from __future__ import annotations

from datetime import datetime

import pytest

from hub.domain.orders import OrderAction, StepStatus
from mappings.hl7_message import Hl7ParseError, parse_hl7
from mappings.hl7_to_order import MappingPolicy, hl7_to_mapped
from mappings.hl7_values import value_of
from tests.hl7_samples import samples_dir

SAMPLES = samples_dir()
STUDY_01 = "2.25.192717855085157701099642667497404171930"
STUDY_04 = "2.25.200233365037459004953088623702178552356"
# PS3.4 Table K.6-1 return keys of type 1/2 (request/visit/patient-medical level and SPS level)
MWL_REQUEST_KEYS = {"0020000D", "00401001", "00321060", "00321064", "00081110", "00401003", "00401004",
                    "00080050", "00321032", "00080090", "00380010", "00380300", "00380500", "00102000",
                    "001021C0", "00101030", "00102110", "00380050", "00403001", "00081120"}
MWL_STEP_KEYS = {"00400001", "00400002", "00400003", "00080060", "00400006", "00400007", "00400008", "00400009",
                 "00400010", "00400011", "00400012", "00321070", "00400020"}
MWL_PATIENT_KEYS = {"00100010", "00100020", "00100030", "00100040"}


def raw(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def mapped(data: bytes, policy: MappingPolicy | None = None, now: datetime | None = None):
    return hl7_to_mapped(parse_hl7(data), policy or MappingPolicy(), now=now)


def code(attrs: dict, tag: str) -> tuple:
    item = attrs[tag]["Value"][0]
    return value_of(item, "00080100"), value_of(item, "00080102"), value_of(item, "00080104")


def assert_mwl_complete(order) -> None:
    assert MWL_REQUEST_KEYS <= set(order.attrs)
    assert MWL_PATIENT_KEYS <= set(order.attrs) | set(order.patient.attrs)
    for step in order.steps:
        assert MWL_STEP_KEYS <= set(step.attrs)


def test_sample_01_new_order():
    result = mapped(raw("01_orm_o01_nw_ct_v231.hl7"))
    assert result.message_type == "ORM^O01" and len(result.orders) == 1
    o = result.orders[0]
    assert (o.action, o.control, o.order_status) == (OrderAction.CREATE, "NW", "SC")
    assert o.patient.identity.patient_id == "4711001" and o.patient.identity.issuer == "HOSP_A"
    assert o.patient.identity.universal_id == "2.999.1.1" and o.patient.identity.id_type == "MR"
    p = o.patient.attrs
    assert value_of(p, "00100010") == "MÜLLER^JÖRG^PETER^DR.^PHD"
    assert value_of(p, "00100020") == "4711001" and value_of(p, "00100021") == "HOSP_A"
    assert value_of(p, "00100030") == "19670523" and value_of(p, "00100040") == "M"
    others = [(value_of(i, "00100020"), value_of(i, "00100021")) for i in p["00101002"]["Value"]]
    assert others == [("4711001", "HOSP_A"), ("K123456789", "NATID")]
    assert value_of(p["00100024"]["Value"][0], "00400032") == "2.999.1.1"
    assert (o.study_uid, o.accession_number, o.requested_procedure_id) == (STUDY_01, "ACC20250314001", "RP0001")
    assert (o.placer_order, o.filler_order) == ("PLC-556677", "FIL-889900")
    assert o.specific_character_set == "ISO_IR 100" and o.reason == ""
    a = o.attrs
    assert value_of(a, "0020000D") == STUDY_01
    assert value_of(a, "00321060") == "CT Thorax native"
    assert code(a, "00321064") == ("CT-THX-N", "99RIS", "CT Thorax native")
    assert value_of(a, "00401002") == "Cough and fever for more than 7 days"
    assert value_of(a, "00401003") == "ROUTINE" and value_of(a, "00401004") == "WALK"
    assert value_of(a, "00321032") == "WEBER^KLAUS^^DR." and value_of(a, "00080090") == "SCHMIDT^ANNA^^DR."
    assert value_of(a, "00080080") == "General Hospital A" and code(a, "00080082") == (
        "HOSP_A", "99LOCAL", "General Hospital A")
    assert value_of(a, "00081040") == "Radiology North"
    assert value_of(a, "00380010") == "V00098765" and value_of(a, "00380016") == "O"
    assert value_of(a, "00102000") == "Suspected pneumonia; fever 39 C"
    assert value_of(a["00400026"]["Value"][0], "00400031") == "EHR"
    assert a["00081110"] == {"vr": "SQ"} and a["00101030"] == {"vr": "DS"}
    assert (len(o.steps)) == 1
    s = o.steps[0]
    assert (s.sps_id, s.status, s.modality, s.station_aet) == ("SPS0001", StepStatus.SCHEDULED, "CT", "CTSCANNER1")
    assert (s.start_date, s.start_time) == ("20250314", "093000")
    assert value_of(s.attrs, "00400006") == "KELLER^TOM"
    assert value_of(s.attrs, "00400007") == "Chest low-dose protocol"
    assert code(s.attrs, "00400008") == ("CTCH_LD", "99RIS", "Chest low-dose protocol")
    assert value_of(s.attrs, "00400020") == "SCHEDULED"
    assert s.attrs["00400010"] == {"vr": "SH"} and s.attrs["00400011"] == {"vr": "SH"}
    assert "00080201" not in a
    assert_mwl_complete(o)


def test_sample_02_cancel_same_keys():
    o = mapped(raw("02_orm_o01_ca_ct_v231.hl7")).orders[0]
    assert (o.action, o.control, o.order_status) == (OrderAction.CANCEL, "CA", "CA")
    assert (o.study_uid, o.steps[0].sps_id) == (STUDY_01, "SPS0001")
    assert o.steps[0].status == StepStatus.CANCELED
    assert o.reason == "Patient declined examination"
    assert_mwl_complete(o)


def test_sample_03_reschedule():
    o = mapped(raw("03_orm_o01_xo_reschedule_ct_v231.hl7")).orders[0]
    assert (o.action, o.steps[0].status) == (OrderAction.UPDATE, StepStatus.SCHEDULED)
    s = o.steps[0]
    assert (o.study_uid, s.sps_id, s.start_time, s.station_aet) == (STUDY_01, "SPS0001", "113000", "CTSCANNER2")
    assert value_of(s.attrs, "00400006") == "BRAUN^EVA"


def test_sample_04_omi_two_steps():
    result = mapped(raw("04_omi_o23_nw_mr_two_sps_v251.hl7"))
    assert result.message_type == "OMI^O23" and len(result.orders) == 1
    o = result.orders[0]
    assert (o.action, o.study_uid, o.accession_number, o.requested_procedure_id) == (
        OrderAction.CREATE, STUDY_04, "ACC-MR-000731", "RP-000731")
    assert o.specific_character_set == "ISO_IR 192"
    assert value_of(o.patient.attrs, "00100010") == "ŁUKASZEWSKA^ZOFIA"
    assert value_of(o.patient.attrs, "00101040").startswith("ul. Żurawia 4")
    a = o.attrs
    assert value_of(a, "00401003") == "STAT"
    issuer = a["00080051"]["Value"][0]
    assert (value_of(issuer, "00400031"), value_of(issuer, "00400032"), value_of(issuer, "00400033")) == (
        "RIS_B", "2.999.2.2", "ISO")
    assert value_of(a, "00101030") == 64 and value_of(a, "00101020") == 1.68
    assert value_of(a, "00080201") == "+0100"
    assert value_of(a, "00401400") == "Use 16-channel knee coil"
    assert value_of(a, "00321060") == "MR knee right w/o contrast"
    assert value_of(a, "00401002") == "Suspected meniscal tear right knee"
    assert [s.sps_id for s in o.steps] == ["SPS-000731-1", "SPS-000731-2"]
    for s, proto in zip(o.steps, [("KNEE_PDFS", "99RIS", "Knee PD fat-sat"),
                                  ("KNEE_T2MAP", "99RIS", "Knee T2 mapping")], strict=True):
        assert (s.modality, s.station_aet, s.start_date, s.start_time) == ("MR", "MRSCANNER2", "20250315", "133000")
        assert code(s.attrs, "00400008") == proto and value_of(s.attrs, "00400007") == proto[2]
        assert value_of(s.attrs, "00400010") == "MR_ROOM2" and value_of(s.attrs, "00400011") == "R2"
    assert_mwl_complete(o)


def test_sample_05_adt_update():
    result = mapped(raw("05_adt_a08_update_v231.hl7"))
    u = result.patient_update
    assert result.orders == [] and u.event == "A08" and u.prior is None
    assert u.patient.identity.patient_id == "4711001"
    assert value_of(u.patient.attrs, "00100030") == "19670325"
    assert value_of(u.patient.attrs, "00102154") == "030-5550199"
    assert u.patient.cleared == ()


def test_sample_07_report():
    r = mapped(raw("07_oru_r01_final_report_ct_v251.hl7")).report
    assert (r.study_uid, r.accession_number, r.result_status) == (STUDY_01, "ACC20250314001", "F")
    assert r.text == ("Patchy consolidation in the right lower lobe.\nNo pleural effusion.\n"
                      "Right lower lobe pneumonia & follow-up CT in 6 weeks advised.")
    assert r.observation_time == "20250314160955"
    assert value_of(r.attrs, "00081060") == "HOFFMANN^LENA^^DR."
    assert r.patient.identity.patient_id == "4711001"


def test_adt_a40_merge_and_errors():
    base = raw("05_adt_a08_update_v231.hl7").replace(b"ADT^A08", b"ADT^A40")
    u = mapped(base + b"MRG|4711999^^^HOSP_A\r").patient_update
    assert u.event == "A40" and u.prior.patient_id == "4711999" and u.prior.issuer == "HOSP_A"
    with pytest.raises(Hl7ParseError) as info:
        mapped(base)
    assert (info.value.code, info.value.location) == ("101", "MRG^1^1")
    with pytest.raises(Hl7ParseError) as info:
        mapped(base + b"MRG|4711001^^^HOSP_A\r")
    assert info.value.code == "205"


def test_adt_null_clears_and_primary_issuer():
    data = raw("05_adt_a08_update_v231.hl7").replace(b"|19670325|", b'|""|')
    u = mapped(data, MappingPolicy(primary_issuer="NATID", other_patient_ids="other")).patient_update
    assert u.patient.attrs["00100030"] == {"vr": "DA"} and u.patient.cleared == ("00100030",)
    assert u.patient.identity.patient_id == "K123456789"
    assert [value_of(i, "00100020") for i in u.patient.attrs["00101002"]["Value"]] == ["4711001"]


def sample01_with(old: bytes, new: bytes) -> bytes:
    data = raw("01_orm_o01_nw_ct_v231.hl7")
    assert old in data
    return data.replace(old, new)


@pytest.mark.parametrize("control, status, action, step_status", [
    (b"NW", b"SC", OrderAction.CREATE, StepStatus.SCHEDULED), (b"NW", b"", OrderAction.CREATE, StepStatus.SCHEDULED),
    (b"XO", b"SC", OrderAction.UPDATE, StepStatus.SCHEDULED), (b"SC", b"SC", OrderAction.UPDATE, StepStatus.SCHEDULED),
    (b"XO", b"CM", OrderAction.STATUS, StepStatus.COMPLETED), (b"SC", b"CM", OrderAction.STATUS, StepStatus.COMPLETED),
    (b"SC", b"A", OrderAction.STATUS, StepStatus.COMPLETED), (b"SC", b"IP", OrderAction.STATUS, StepStatus.STARTED),
    (b"CA", b"", OrderAction.CANCEL, StepStatus.CANCELED), (b"CA", b"CA", OrderAction.CANCEL, StepStatus.CANCELED),
    (b"OC", b"CA", OrderAction.CANCEL, StepStatus.CANCELED),
    (b"DC", b"CA", OrderAction.DISCONTINUE, StepStatus.DISCONTINUED),
    (b"OD", b"DC", OrderAction.DISCONTINUE, StepStatus.DISCONTINUED),
])
def test_order_control_table(control, status, action, step_status):
    o = mapped(sample01_with(b"ORC|NW|PLC-556677^EHR|FIL-889900^RIS||SC|",
                             b"ORC|" + control + b"|PLC-556677^EHR|FIL-889900^RIS||" + status + b"|")).orders[0]
    assert (o.action, o.steps[0].status) == (action, step_status)


@pytest.mark.parametrize("control, status", [(b"XO", b"IP"), (b"SC", b""), (b"HD", b"SC"), (b"ZZ", b"SC")])
def test_order_control_rejected(control, status):
    with pytest.raises(Hl7ParseError) as info:
        mapped(sample01_with(b"ORC|NW|PLC-556677^EHR|FIL-889900^RIS||SC|",
                             b"ORC|" + control + b"|PLC-556677^EHR|FIL-889900^RIS||" + status + b"|"))
    assert (info.value.code, info.value.location) == ("103", "ORC^1^1")


def test_two_orc_groups_give_two_orders():
    data = raw("01_orm_o01_nw_ct_v231.hl7")
    orc_at = data.index(b"ORC|")
    group = data[orc_at:].replace(b"RP0001", b"RP0002").replace(b"SPS0001", b"SPS0002").replace(
        b"ACC20250314001", b"ACC20250314002").replace(STUDY_01.encode(), b"1.2.3.4")
    orders = mapped(data + group).orders
    assert [(o.requested_procedure_id, o.steps[0].sps_id, o.study_uid) for o in orders] == [
        ("RP0001", "SPS0001", STUDY_01), ("RP0002", "SPS0002", "1.2.3.4")]


def test_study_uid_policies():
    data = sample01_with(b"ZDS|" + STUDY_01.encode() + b"^100^Application^DICOM\r", b"")
    a = mapped(data).orders[0].study_uid
    assert a.startswith("2.25.") and a == mapped(data).orders[0].study_uid and len(a) <= 64
    g = mapped(data, MappingPolicy(study_uid="generate")).orders[0].study_uid
    assert g.startswith("2.25.") and g != mapped(data, MappingPolicy(study_uid="generate")).orders[0].study_uid
    with pytest.raises(Hl7ParseError) as info:
        mapped(data, MappingPolicy(study_uid="reject"))
    assert (info.value.code, info.value.location) == ("101", "ZDS^1^1")
    with pytest.raises(Hl7ParseError) as info:
        mapped(sample01_with(STUDY_01.encode(), b"1.02.x"))
    assert (info.value.code, info.value.location) == ("102", "ZDS^1^1")


def test_omi_missing_study_uid_rejected_at_ipc():
    data = raw("04_omi_o23_nw_mr_two_sps_v251.hl7").replace(b"|" + STUDY_04.encode() + b"|", b"||")
    with pytest.raises(Hl7ParseError) as info:
        mapped(data, MappingPolicy(study_uid="reject"))
    assert (info.value.code, info.value.location) == ("101", "IPC^1^3")


def test_missing_sps_id_uses_rp_id_and_modality_station_fallbacks():
    data = sample01_with(b"|SPS0001||||CT|", b"|||||RAD|").replace(b"|CTSCANNER1\r", b"|\r")
    s = mapped(data).orders[0].steps[0]
    assert (s.sps_id, s.modality, s.station_aet) == ("RP0001", "", "")
    data = sample01_with(b"|SPS0001||||CT|", b"|||||NMS|").replace(b"|CTSCANNER1\r", b"|\r")
    policy = MappingPolicy(station_by_modality={"NM": "NMCAM1"})
    s = mapped(data, policy).orders[0].steps[0]
    assert (s.modality, s.station_aet) == ("NM", "NMCAM1")


def test_missing_start_policies():
    data = sample01_with(b"^^^20250314093000^^R||", b"^^^^^R||").replace(b"|^^^20250314093000^^R|", b"|^^^^^R|")
    s = mapped(data).orders[0].steps[0]
    assert (s.start_date, s.start_time) == ("20250314", "081502")  # MSH-7
    s = mapped(data, MappingPolicy(missing_start="now"), now=datetime(2026, 1, 2, 3, 4, 5)).orders[0].steps[0]
    assert (s.start_date, s.start_time) == ("20260102", "030405")
    with pytest.raises(Hl7ParseError) as info:
        mapped(data, MappingPolicy(missing_start="reject"))
    assert (info.value.code, info.value.location) == ("101", "ORC^1^7^4")


@pytest.mark.parametrize("bad", [b"20250231093000", b"20251314", b"2025031425", b"2025-03-14", b"20250314093000+2500",
                                 b"2025"])
def test_impossible_start_dates(bad):
    with pytest.raises(Hl7ParseError) as info:
        mapped(sample01_with(b"ORC|NW|PLC-556677^EHR|FIL-889900^RIS||SC||^^^20250314093000^",
                             b"ORC|NW|PLC-556677^EHR|FIL-889900^RIS||SC||^^^" + bad + b"^"))
    assert (info.value.code, info.value.location) == ("102", "ORC^1^7^4")


def test_invalid_tq1_date_location_and_bad_birth_date():
    with pytest.raises(Hl7ParseError) as info:
        mapped(raw("04_omi_o23_nw_mr_two_sps_v251.hl7").replace(b"20250315133000+0100", b"20250229133000"))
    assert (info.value.code, info.value.location) == ("102", "TQ1^1^7")
    with pytest.raises(Hl7ParseError) as info:
        mapped(sample01_with(b"|19670523|", b"|19671323|"))
    assert (info.value.code, info.value.location) == ("102", "PID^1^7")


def test_date_only_start_and_offset():
    s = mapped(sample01_with(b"^^^20250314093000^", b"^^^20250314^")).orders[0].steps[0]
    assert (s.start_date, s.start_time) == ("20250314", "000000")


def test_missing_pid3():
    data = sample01_with(b"PID|1||4711001^^^HOSP_A&2.999.1.1&ISO^MR~K123456789^^^NATID&2.999.9.1&ISO^NI|", b"PID|1|||")
    with pytest.raises(Hl7ParseError) as info:
        mapped(data)
    assert (info.value.code, info.value.location) == ("101", "PID^1^3")


def test_overflow_reject_and_truncate():
    data = sample01_with(b"ACC20250314001", b"ACC20250314001XYZ")
    with pytest.raises(Hl7ParseError) as info:
        mapped(data)
    assert (info.value.code, info.value.location) == ("102", "OBR^1^18")
    assert mapped(data, MappingPolicy(overflow="truncate")).orders[0].accession_number == "ACC20250314001XY"
    long_ae = sample01_with(b"|CTSCANNER1\r", b"|CTSCANNER1_TOO_LONG\r")
    with pytest.raises(Hl7ParseError) as info:
        mapped(long_ae)
    assert (info.value.code, info.value.location) == ("102", "ORC^1^18")
    long_name = sample01_with(b"M\xdcLLER^", b"M" * 70 + b"^")
    with pytest.raises(Hl7ParseError) as info:
        mapped(long_name)
    assert (info.value.code, info.value.location) == ("102", "PID^1^5")


@pytest.mark.parametrize("msh9, code, location", [(b"SIU^S12", "200", "MSH^1^9^1"), (b"ORM^O02", "201", "MSH^1^9^2"),
                                                   (b"ADT^A99", "201", "MSH^1^9^2"), (b"OMG^O19", "200", "MSH^1^9^1")])
def test_unsupported_message_types(msh9, code, location):
    with pytest.raises(Hl7ParseError) as info:
        mapped(sample01_with(b"ORM^O01", msh9))
    assert (info.value.code, info.value.location) == (code, location)


def test_segment_sequence_errors():
    with pytest.raises(Hl7ParseError) as info:
        mapped(sample01_with(b"ORC|NW", b"NTE|1||x\rXXX|NW").replace(b"XXX|NW", b"ZXX|NW"))
    assert (info.value.code, info.value.location) == ("100", "OBR^1")
    data = raw("01_orm_o01_nw_ct_v231.hl7")
    with pytest.raises(Hl7ParseError) as info:
        mapped(data.replace(b"\rOBR|", b"\rOBR|1\rOBR|"))
    assert (info.value.code, info.value.location) == ("100", "OBR^2")
