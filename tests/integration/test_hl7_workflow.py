"""End to end, IHE Scheduled Workflow through every real door: python-hl7's ``mllp_send`` delivers the
sample orders over MLLP, DCMTK ``findscu -W`` finds the worklist items, a pynetdicom MPPS SCU reports
the procedure, and a test MLLP listener playing the RIS receives the status messages, which pass
hl7apy strict validation. Bad input gets the right NAK or a clean close; nothing is half-written."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from hub.app import Hub
from interfaces.hl7.mllp import MllpDecoder, frame
from interfaces.hl7.server import MllpServer, Peer
from interfaces.serve import Listeners
from mappings.hl7_message import parse_hl7
from mappings.order_to_hl7 import validate_strict
from tests.conftest import make_settings
from tests.hl7_samples import samples_dir

SAMPLES = samples_dir()
MLLP_SEND = Path(sys.executable).parent / "mllp_send"
FINDSCU = "/usr/bin/findscu"
CT_STUDY = "2.25.192717855085157701099642667497404171930"
MR_STUDY = "2.25.200233365037459004953088623702178552356"

pytestmark = pytest.mark.skipif(not Path(FINDSCU).exists() and not os.environ.get("CI"),
                                reason="DCMTK findscu not installed (CI installs it)")


class Ris:
    """A RIS on loopback: records every message and answers AA (or AE while ``refuse`` is set)."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.refuse = False
        self.server = MllpServer(self._handle, "127.0.0.1", 0)

    def _handle(self, raw: bytes, peer: Peer) -> bytes:
        self.received.append(raw)
        msg = parse_hl7(raw)
        code = "AE" if self.refuse else "AA"
        return (f"MSH|^~\\&|RIS|RADIOLOGY|HUB|PACS|20250314093416||ACK^{msg.trigger_event}|A{len(self.received)}|P|"
                f"{msg.version}\rMSA|{code}|{msg.control_id}\r").encode()

    def wait_for(self, count: int, seconds: float = 20) -> list[bytes]:
        deadline = time.monotonic() + seconds
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= count, f"RIS got {len(self.received)} messages, expected {count}"
        return self.received


@pytest.fixture
def ris() -> Iterator[Ris]:
    r = Ris()
    r.server.start()
    try:
        yield r
    finally:
        r.server.stop()


@pytest.fixture
def site(tmp_path: Path, db_url: str, ris: Ris) -> Iterator[tuple[Hub, Listeners]]:
    hub = Hub.open(make_settings(tmp_path / "data", db_url, RISHUB_HL7_RIS_HOST="127.0.0.1",
                                 RISHUB_HL7_RIS_PORT=str(ris.server.port), RISHUB_HL7_RIS_RETRY_INITIAL="0.2",
                                 RISHUB_HL7_RIS_RETRY_MAX="0.5"), upgrade_schema=True)
    ls = Listeners(hub)
    ls.start()
    try:
        yield hub, ls
    finally:
        ls.stop()
        hub.close()


def mllp_send(port: int, *names: str, tmp: Path) -> list[bytes]:
    """Send sample files with python-hl7's ``mllp_send`` on one connection; the ACKs, in order."""
    framed = tmp / "batch.hl7"
    framed.write_bytes(b"".join(frame((SAMPLES / n).read_bytes()) for n in names))
    run = subprocess.run([str(MLLP_SEND), "-p", str(port), "-f", str(framed), "127.0.0.1"], capture_output=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    return MllpDecoder().feed(run.stdout.replace(b"\x1c\r\n", b"\x1c\r"))


def msa(ack: bytes) -> tuple[str, str]:
    seg = parse_hl7(ack).first("MSA")
    assert seg is not None
    return seg.get(1), seg.get(2)


def worklist(port: int, tmp: Path, **keys: str) -> list[Dataset]:
    """DCMTK findscu -W; the answers as data sets (written by -X)."""
    out = tmp / f"mwl{time.monotonic_ns()}"
    out.mkdir()
    sps = {"ScheduledStationAETitle": "", "ScheduledProcedureStepStartDate": "", "ScheduledProcedureStepStartTime": "",
           "Modality": "", "ScheduledProcedureStepID": "", "ScheduledProcedureStepDescription": ""}
    top = {"PatientName": "", "PatientID": "", "PatientBirthDate": "", "AccessionNumber": "", "StudyInstanceUID": "",
           "RequestedProcedureID": "", "SpecificCharacterSet": ""}
    args = [FINDSCU, "-W", "-aec", "RISHUB", "-X", "-od", str(out)]
    for k, v in {**sps, **{k: v for k, v in keys.items() if k in sps}}.items():
        args += ["-k", f"(0040,0100)[0].{k}" + (f"={v}" if v else "")]
    for k, v in {**top, **{k: v for k, v in keys.items() if k not in sps}}.items():
        args += ["-k", k + (f"={v}" if v else "")]
    run = subprocess.run([*args, "127.0.0.1", str(port)], capture_output=True, timeout=60,
                         env={**os.environ, "TCP_NODELAY": "1"})
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def mpps(port: int, uid: str, ds: Dataset, *, create: bool) -> int:
    ae = AE(ae_title="CTSCANNER2")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", port, ae_title="RISHUB")
    assert assoc.is_established
    try:
        if create:
            status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
        else:
            status, _ = assoc.send_n_set(ds, ModalityPerformedProcedureStep, uid)
        return int(status.Status)
    finally:
        assoc.release()


def in_progress(study: str, sps_id: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ssa = Dataset()
    ssa.StudyInstanceUID = study
    ssa.AccessionNumber = "ACC20250314001"
    ssa.RequestedProcedureID = "RP0001"
    ssa.ScheduledProcedureStepID = sps_id
    ssa.ReferencedStudySequence = []
    ssa.RequestedProcedureDescription = ""
    ssa.ScheduledProcedureStepDescription = ""
    ssa.ScheduledProtocolCodeSequence = []
    ds.ScheduledStepAttributesSequence = [ssa]
    ds.PatientName = "MÜLLER^JÖRG^PETER^DR.^PHD"
    ds.PatientID = "4711001"
    ds.PatientBirthDate = "19670325"
    ds.PatientSex = "M"
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "CTSCANNER2"
    ds.PerformedStationName = ""
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate = "20250314"
    ds.PerformedProcedureStepStartTime = "093412"
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = "CT chest"
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = []
    ds.Modality = "CT"
    ds.StudyID = "1"
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    return ds


def completed() -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    ds.PerformedProcedureStepEndDate = "20250314"
    ds.PerformedProcedureStepEndTime = "094958"
    series = Dataset()
    series.SeriesInstanceUID = "2.25.1111"
    series.ProtocolName = "Chest low dose"
    series.OperatorsName = "KELLER^TOM"
    series.PerformingPhysicianName = ""
    series.SeriesDescription = "Chest"
    series.RetrieveAETitle = "RISHUB"
    series.ReferencedImageSequence = []
    series.ReferencedNonImageCompositeSOPInstanceSequence = []
    ds.PerformedSeriesSequence = [series]
    return ds


def test_orders_to_worklist_to_mpps_to_ris(site: tuple[Hub, Listeners], ris: Ris, tmp_path: Path) -> None:
    hub, ls = site
    assert ls.hl7 is not None
    hl7_port, dicom_port = ls.hl7.port, ls.dimse.port

    # RAD-4: the new CT order, then the same message again (same answer, nothing changes).
    first = mllp_send(hl7_port, "01_orm_o01_nw_ct_v231.hl7", tmp=tmp_path)
    again = mllp_send(hl7_port, "01_orm_o01_nw_ct_v231.hl7", tmp=tmp_path)
    assert msa(first[0]) == ("AA", "RIS00012345") and again == first
    items = worklist(dicom_port, tmp_path, ScheduledStationAETitle="CTSCANNER1")
    assert len(items) == 1
    item = items[0]
    assert item.SpecificCharacterSet == "ISO_IR 100" and str(item.PatientName) == "MÜLLER^JÖRG^PETER^DR.^PHD"
    assert (item.PatientID, item.AccessionNumber, item.RequestedProcedureID) == ("4711001", "ACC20250314001", "RP0001")
    assert item.StudyInstanceUID == CT_STUDY
    sps = item.ScheduledProcedureStepSequence[0]
    assert (sps.ScheduledProcedureStepID, sps.Modality) == ("SPS0001", "CT")
    assert (sps.ScheduledProcedureStepStartDate, sps.ScheduledProcedureStepStartTime[:4]) == ("20250314", "0930")

    # RAD-13 reschedule, RAD-12 patient update, and the two-step MR order (OMI^O23, UTF-8).
    acks = mllp_send(hl7_port, "03_orm_o01_xo_reschedule_ct_v231.hl7", "05_adt_a08_update_v231.hl7",
                     "04_omi_o23_nw_mr_two_sps_v251.hl7", tmp=tmp_path)
    assert [msa(a)[0] for a in acks] == ["AA", "AA", "AA"]
    assert worklist(dicom_port, tmp_path, ScheduledStationAETitle="CTSCANNER1") == []
    (ct,) = worklist(dicom_port, tmp_path, ScheduledStationAETitle="CTSCANNER2")
    assert ct.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime[:4] == "1130"
    assert ct.PatientBirthDate == "19670325"  # ADT^A08 reflected in the worklist item
    mr = worklist(dicom_port, tmp_path, Modality="MR", ScheduledProcedureStepStartDate="20250315")
    assert sorted(i.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID for i in mr) == [
        "SPS-000731-1", "SPS-000731-2"]
    assert {str(i.PatientName) for i in mr} == {"ŁUKASZEWSKA^ZOFIA"} and mr[0].SpecificCharacterSet == "ISO_IR 192"
    assert len(worklist(dicom_port, tmp_path, PatientName="MÜLL*", SpecificCharacterSet="ISO_IR 192")) == 1
    assert len(worklist(dicom_port, tmp_path, PatientName="mull*")) == 1  # case- and accent-insensitive

    # RAD-6/RAD-7: the modality reports the CT; the RIS gets ORM^O01 SC/IP then SC/CM.
    uid = "2.25.33333333333333333333"
    assert mpps(dicom_port, uid, in_progress(CT_STUDY, "SPS0001"), create=True) == 0x0000
    assert worklist(dicom_port, tmp_path, ScheduledStationAETitle="CTSCANNER2") == []  # started: off the list
    assert mpps(dicom_port, uid, completed(), create=False) == 0x0000
    got = ris.wait_for(2)
    statuses = []
    for raw in got[:2]:
        validate_strict(raw)
        msg = parse_hl7(raw)
        assert msg.message_type == "ORM" and msg.trigger_event == "O01"
        orc, obr = msg.first("ORC"), msg.first("OBR")
        assert orc is not None and obr is not None and orc.get(1) == "SC"
        statuses.append(orc.get(5))
        assert (obr.get(18), obr.get(19), obr.get(20)) == ("ACC20250314001", "RP0001", "SPS0001")
        assert orc.get(2, 1) == "PLC-556677" and orc.get(3, 1) == "FIL-889900"
    assert statuses == ["IP", "CM"]
    assert all(o["state"] == "sent" for o in hub.outbox.items())

    # RAD-128-style report, kept against its study.
    assert msa(mllp_send(hl7_port, "07_oru_r01_final_report_ct_v251.hl7", tmp=tmp_path)[0])[0] == "AA"
    assert hub.orders.reports(CT_STUDY)[0]["result_status"] == "F"

    # RAD-13 cancel of the MR order (OMI^O23 with ORC-1=CA): both its items leave the worklist.
    cancel = (SAMPLES / "04_omi_o23_nw_mr_two_sps_v251.hl7").read_bytes().replace(b"ORC|NW|", b"ORC|CA|").replace(
        b"RISB-000731|P|", b"RISB-000732|P|")
    (tmp_path / "cancel.hl7").write_bytes(cancel)
    framed = tmp_path / "cancel-framed.hl7"
    framed.write_bytes(frame(cancel))
    run = subprocess.run([str(MLLP_SEND), "-p", str(hl7_port), "-f", str(framed), "127.0.0.1"], capture_output=True,
                         timeout=60)
    assert run.returncode == 0 and b"MSA|AA|RISB-000732" in run.stdout, run
    assert worklist(dicom_port, tmp_path, Modality="MR", ScheduledProcedureStepStartDate="20250315") == []
    assert {s["status"] for s in hub.orders.steps(MR_STUDY)} == {"CANCELED"}  # kept, flagged


def test_status_messages_wait_for_the_ris_and_survive_a_restart(tmp_path: Path, db_url: str, ris: Ris) -> None:
    """The RIS refuses (AE), then is unreachable while the hub restarts: the message stays in the
    outbox and is delivered once, in order, when the RIS accepts it."""
    env = dict(RISHUB_HL7_RIS_HOST="127.0.0.1", RISHUB_HL7_RIS_PORT=str(ris.server.port),
               RISHUB_HL7_RIS_RETRY_INITIAL="0.2", RISHUB_HL7_RIS_RETRY_MAX="0.4")
    settings = make_settings(tmp_path / "data", db_url, **env)
    hub = Hub.open(settings, upgrade_schema=True)
    ls = Listeners(hub)
    ls.start()
    try:
        assert ls.hl7 is not None
        assert msa(mllp_send(ls.hl7.port, "01_orm_o01_nw_ct_v231.hl7", tmp=tmp_path)[0])[0] == "AA"
        ris.refuse = True
        assert mpps(ls.dimse.port, "2.25.444444", in_progress(CT_STUDY, "SPS0001"), create=True) == 0
        ris.wait_for(2)  # refused at least twice: retried
        pending = hub.outbox.items("pending")
        assert len(pending) == 1 and pending[0]["attempts"] >= 2 and "AE" in str(pending[0]["last_error"])
    finally:
        ls.stop()
        hub.close()
    ris.refuse = False
    seen = len(ris.received)
    hub = Hub.open(settings, upgrade_schema=True)
    ls = Listeners(hub)
    ls.start()
    try:
        got = ris.wait_for(seen + 1)
        assert parse_hl7(got[-1]).first("ORC").get(5) == "IP"  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while hub.outbox.items("pending") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hub.outbox.items("pending") == [] and len(hub.outbox.items("sent")) == 1
    finally:
        ls.stop()
        hub.close()


def _send_raw(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def _order(control_id: str, pid3: str = "4711001^^^HOSP_A", start: str = "20250314093000", acc: str = "ACC1") -> bytes:
    return ("MSH|^~\\&|RIS|RADIOLOGY|HUB|PACS|20250314081502||ORM^O01|" + control_id + "|P|2.3.1||||||8859/1\r"
            f"PID|1||{pid3}||DOE^JOHN||19670523|M\r"
            "PV1|1|O\r"
            f"ORC|NW|PLC-1^EHR|FIL-1^RIS||SC||^^^{start}^^R\r"
            f"OBR|1|PLC-1^EHR|FIL-1^RIS|CTCH^CT chest^99RIS|||||||||||||||{acc}|RP9|SPS9||||CT\r"
            "ZDS|2.25.99999999999^100^Application^DICOM\r").encode("latin-1")


@pytest.mark.parametrize(("payload", "code", "err"), [
    (_order("BAD1", pid3=""), "AE", "101"),  # missing PID-3
    (_order("BAD2", start="20251399250000"), "AE", "102"),  # impossible date
    (_order("BAD3", acc="A" * 40), "AE", "102"),  # accession longer than SH 16
    (_order("BAD4").replace(b"ORM^O01", b"ORM^O99"), "AR", "201"),  # unknown trigger
    (_order("BAD5").replace(b"|2.3.1|", b"|9.9|"), "AR", "203"),  # unsupported version
])
def test_bad_messages_get_a_nak_and_change_nothing(site: tuple[Hub, Listeners], payload: bytes, code: str,
                                                  err: str) -> None:
    hub, ls = site
    assert ls.hl7 is not None
    acks = MllpDecoder().feed(_send_raw(ls.hl7.port, frame(payload)))
    assert len(acks) == 1
    text = acks[0].decode("latin-1")
    assert f"MSA|{code}|BAD" in text and err in text
    assert hub.orders.order("2.25.99999999999") is None
    # the listener keeps serving: a good order right after is accepted
    ok = MllpDecoder().feed(_send_raw(ls.hl7.port, frame(_order("GOOD1"))))
    assert msa(ok[0]) == ("AA", "GOOD1") and hub.orders.order("2.25.99999999999") is not None


@pytest.mark.parametrize("payload", [
    b"PID|1||4711001\r",  # no MSH
    b"MSH|^~\\&\r",  # MSH without a message type: AE 101 at MSH^1^9
    b"MSH|^~|RIS|X|HUB|PACS|2025||ORM^O01|E1|P|2.3.1\r",  # bad encoding characters
    bytes(range(256)),  # garbage inside a frame
])
def test_unreadable_messages_get_ar_or_a_clean_close(site: tuple[Hub, Listeners], payload: bytes) -> None:
    hub, ls = site
    assert ls.hl7 is not None
    answer = _send_raw(ls.hl7.port, frame(payload))
    acks = MllpDecoder().feed(answer)
    assert answer == b"" or (len(acks) == 1 and (b"MSA|AR|" in acks[0] or b"MSA|AE|" in acks[0])
                             and b"\rERR|" in acks[0])
    garbage = _send_raw(ls.hl7.port, os.urandom(4096).replace(b"\x0b", b"\x00"))  # no frame start: nothing answered
    assert MllpDecoder().feed(garbage) == []
    ok = MllpDecoder().feed(_send_raw(ls.hl7.port, frame(_order("GOOD2"))))
    assert msa(ok[0]) == ("AA", "GOOD2")


def test_resends_get_the_same_answer_and_change_nothing(site: tuple[Hub, Listeners]) -> None:
    """Original-mode duplicates (same sender, same MSH-10): an accepted order, an accepted merge that
    would now fail, and a refused order all get their first answer back, byte for byte."""
    hub, _ = site
    order = (SAMPLES / "01_orm_o01_nw_ct_v231.hl7").read_bytes()
    first = hub.hl7.handle(order)
    assert msa(first) == ("AA", "RIS00012345") and hub.hl7.handle(order) == first
    merge = ("MSH|^~\\&|ADT|HOSP_A|HUB|PACS|20250314120001||ADT^A40^ADT_A39|ADT-M1|P|2.5.1||||||8859/1\r"
             "EVN|A40|20250314120000\rPID|1||4711999^^^HOSP_A^MR||M\xdcLLER^J\xd6RG||19670325|M\r"
             "MRG|4711001^^^HOSP_A^MR\r").encode("latin-1")
    merged = hub.hl7.handle(merge)
    assert msa(merged) == ("AA", "ADT-M1")
    assert hub.orders.order(CT_STUDY)["patient_id"] == "4711999"  # type: ignore[index]
    assert hub.hl7.handle(merge) == merged  # applying it again would refuse the retired ID: the stored AA
    renamed = order.replace(b"RIS00012345", b"RIS00099999")
    refused = hub.hl7.handle(renamed)  # the order names the merged (retired) ID: AE
    assert msa(refused) == ("AE", "RIS00099999") and hub.hl7.handle(renamed) == refused


def test_status_messages_as_omg_o19_by_setting(tmp_path: Path, db_url: str, ris: Ris) -> None:
    """``[hl7.ris] message_type = "OMG^O19"``: the RIS gets OMG^O19 (v2.5.1, TQ1) instead of ORM^O01."""
    hub = Hub.open(make_settings(tmp_path / "data", db_url, RISHUB_HL7_RIS_HOST="127.0.0.1",
                                 RISHUB_HL7_RIS_PORT=str(ris.server.port), RISHUB_HL7_RIS_MESSAGE_TYPE="OMG^O19",
                                 RISHUB_HL7_RIS_RETRY_INITIAL="0.2"), upgrade_schema=True)
    ls = Listeners(hub)
    ls.start()
    try:
        assert msa(hub.hl7.handle((SAMPLES / "01_orm_o01_nw_ct_v231.hl7").read_bytes()))[0] == "AA"
        uid = "2.25.5555555"
        assert mpps(ls.dimse.port, uid, in_progress(CT_STUDY, "SPS0001"), create=True) == 0
        assert mpps(ls.dimse.port, uid, completed(), create=False) == 0
        got = ris.wait_for(2)
        for raw, status in zip(got[:2], ("IP", "CM"), strict=True):
            validate_strict(raw)
            msg = parse_hl7(raw)
            assert (msg.message_type, msg.trigger_event, msg.version) == ("OMG", "O19", "2.5.1")
            assert msg.first("TQ1") is not None and msg.first("ORC").get(5) == status  # type: ignore[union-attr]
    finally:
        ls.stop()
        hub.close()
