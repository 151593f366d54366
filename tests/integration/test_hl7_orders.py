"""The HL7 inbound service against a real index (SQLite and PostgreSQL): versions 2.3/2.3.1/2.5 of
ORM^O01, the order-control table (NW, XO, SC, CA, DC, OC), ADT^A08 and ADT^A40 reaching the archive's
stored studies, charsets when MSH-18 is empty, and the site choices that are settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.app import Hub
from hub.domain import Origin
from hub.domain.archive import Level
from mappings.hl7_message import parse_hl7
from tests.conftest import make_settings
from tests.hl7_samples import samples_dir
from tests.synthetic import write_series

SAMPLES = samples_dir()
CT_STUDY = "2.25.192717855085157701099642667497404171930"


def sample(name: str = "01_orm_o01_nw_ct_v231.hl7") -> bytes:
    return (SAMPLES / name).read_bytes()


def segment(raw: bytes, name: bytes, field: int, value: bytes) -> bytes:
    """``raw`` with field ``field`` of the first ``name`` segment replaced (MSH counted as HL7 does)."""
    segs = raw.split(b"\r")
    for i, seg in enumerate(segs):
        if seg.startswith(name + b"|"):
            parts = seg.split(b"|")
            parts[field - 1 if name == b"MSH" else field] = value
            segs[i] = b"|".join(parts)
            break
    return b"\r".join(segs)


def ack(h: Hub, raw: bytes) -> tuple[str, str]:
    """(MSA-1, the table 0357 code of the ERR segment: ERR-3 from v2.5 on, ERR-1 before, "" without)."""
    msg = parse_hl7(h.hl7.handle(raw))
    msa, err = msg.first("MSA"), msg.first("ERR")
    assert msa is not None
    code = ""
    if err is not None:
        code = err.get(3, 1) or err.get(1, 4, 1)  # v2.3.1 ERR-1: SEG^seq^field^code&text&table
    return msa.get(1), code


def open_hub(tmp_path: Path, db_url: str, **env: str) -> Hub:
    return Hub.open(make_settings(tmp_path / "data", db_url, **env), upgrade_schema=True)


@pytest.fixture
def h(tmp_path: Path, db_url: str):  # noqa: ANN201
    hub = open_hub(tmp_path, db_url)
    try:
        yield hub
    finally:
        hub.close()


@pytest.mark.parametrize("version", [b"2.3", b"2.3.1", b"2.5"])
def test_orm_o01_versions(h: Hub, version: bytes) -> None:
    raw = segment(sample(), b"MSH", 12, version)
    assert ack(h, raw) == ("AA", "")
    (step,) = h.orders.steps(CT_STUDY)
    assert (step["sps_id"], step["modality"], step["station_aet"]) == ("SPS0001", "CT", "CTSCANNER1")


def test_order_control_table(h: Hub) -> None:
    """NW creates; SC/IP starts; XO/CM completes; a second order: DC discontinues, OC cancels; an
    unknown combination changes nothing (AE 103)."""
    raw = sample()
    assert ack(h, raw)[0] == "AA"

    def control(n: int, orc1: bytes, orc5: bytes, study: bytes = CT_STUDY.encode()) -> tuple[str, str]:
        msg = segment(segment(raw, b"MSH", 10, b"CTRL%d" % n), b"ORC", 1, orc1)
        msg = segment(msg, b"ORC", 5, orc5).replace(CT_STUDY.encode(), study)
        return ack(h, msg)

    assert control(1, b"SC", b"IP") == ("AA", "")
    assert [s["status"] for s in h.orders.steps(CT_STUDY)] == ["STARTED"]
    assert control(2, b"XO", b"IP") == ("AE", "103")  # not in the table: nothing changes
    assert [s["status"] for s in h.orders.steps(CT_STUDY)] == ["STARTED"]
    assert control(3, b"XO", b"CM") == ("AA", "")
    assert [s["status"] for s in h.orders.steps(CT_STUDY)] == ["COMPLETED"]
    assert control(4, b"CA", b"CA") == ("AA", "")  # a final step stays final
    assert [s["status"] for s in h.orders.steps(CT_STUDY)] == ["COMPLETED"]
    other, third = "2.25.1001", "2.25.1002"
    for n, uid in ((5, other), (6, third)):
        assert control(n, b"NW", b"SC", uid.encode()) == ("AA", "")
    assert control(7, b"DC", b"CA", other.encode()) == ("AA", "")
    assert control(8, b"OC", b"CA", third.encode()) == ("AA", "")
    assert [s["status"] for s in h.orders.steps(other)] == ["DISCONTINUED"]
    assert [s["status"] for s in h.orders.steps(third)] == ["CANCELED"]
    assert control(9, b"CA", b"CA", b"2.25.404") == ("AE", "204")  # cancel of an unknown order


def test_adt_reaches_the_archive_patient_and_a40_moves_stored_studies(h: Hub, tmp_path: Path) -> None:
    for p in write_series(tmp_path / "old", 2, seed="adt-old", patient_id="4711001", patient_name="MUELLER^J"):
        h.ingest.store(Origin("import"), p)
    assert ack(h, sample())[0] == "AA"
    assert ack(h, sample("05_adt_a08_update_v231.hl7"))[0] == "AA"
    (pat,) = [r for r in h.resources.list(Level.PATIENT, expand=True) if r["MainDicomTags"]["PatientID"] == "4711001"]
    assert pat["MainDicomTags"]["PatientBirthDate"] == "19670325"
    assert pat["MainDicomTags"]["PatientName"] == "MÜLLER^JÖRG^PETER^DR.^PHD"
    for p in write_series(tmp_path / "new", 1, seed="adt-new", patient_id="4711999", patient_name="MUELLER^J"):
        h.ingest.store(Origin("import"), p)
    merge = ("MSH|^~\\&|ADT|HOSP_A|HUB|PACS|20250314120001||ADT^A40^ADT_A39|M1|P|2.5.1||||||8859/1\r"
             "EVN|A40|20250314120000\rPID|1||4711999^^^HOSP_A^MR||M\xdcLLER^J\xd6RG||19670325|M\r"
             "MRG|4711001^^^HOSP_A^MR\r").encode("latin-1")
    assert ack(h, merge)[0] == "AA"
    patients = {r["MainDicomTags"]["PatientID"]: r for r in h.resources.list(Level.PATIENT, expand=True)}
    assert set(patients) == {"4711999"}  # the prior patient is gone, its studies moved
    assert len(patients["4711999"]["Studies"]) == 2
    assert h.orders.order(CT_STUDY)["patient_id"] == "4711999"  # type: ignore[index]
    assert ack(h, segment(sample(), b"MSH", 10, b"AFTER"))[0] == "AE"  # the retired ID is refused


def test_empty_msh18_uses_the_senders_charset(tmp_path: Path, db_url: str) -> None:
    hub = open_hub(tmp_path, db_url, RISHUB_HL7_DEFAULT_CHARSET="8859/1",
                   RISHUB_HL7_SENDER_CHARSETS="RIS_B=UNICODE UTF-8")
    try:
        latin = segment(sample(), b"MSH", 18, b"")
        assert ack(hub, latin)[0] == "AA"
        assert "MÜLLER" in json.loads(hub.orders.order(CT_STUDY)["patient_attrs"])["00100010"]["Value"][0][
            "Alphabetic"]
        utf8 = segment(sample("04_omi_o23_nw_mr_two_sps_v251.hl7"), b"MSH", 18, b"")
        assert ack(hub, utf8)[0] == "AA"
        mr = hub.orders.order("2.25.200233365037459004953088623702178552356")
        assert json.loads(mr["patient_attrs"])["00100010"]["Value"][0]["Alphabetic"] == "ŁUKASZEWSKA^ZOFIA"  # type: ignore[index]
    finally:
        hub.close()


def test_site_choices_are_settings(tmp_path: Path, db_url: str) -> None:
    """Primary issuer, station routing by modality and the Study UID policy come from [hl7]."""
    hub = open_hub(tmp_path, db_url, RISHUB_HL7_PRIMARY_ISSUER="NATID", RISHUB_HL7_STATION_BY_MODALITY="CT=CT_ROOM9",
                   RISHUB_HL7_STUDY_UID_POLICY="reject")
    try:
        raw = segment(sample(), b"ORC", 18, b"")  # no entering device: the routing table decides
        assert ack(hub, raw)[0] == "AA"
        order = hub.orders.order(CT_STUDY)
        assert order is not None and order["patient_id"] == "K123456789"  # the NATID repetition
        assert [s["station_aet"] for s in hub.orders.steps(CT_STUDY)] == ["CT_ROOM9"]
        no_uid = segment(segment(raw, b"MSH", 10, b"NOUID"), b"ZDS", 1, b"")
        assert ack(hub, no_uid) == ("AE", "101")
    finally:
        hub.close()


def test_one_sender_holds_a_message(h: Hub) -> None:
    """The outbox lease: while one sender holds the oldest message, nobody else gets it (nor a younger
    one: order is kept); after a retry it is due again."""
    from hub.store.outbox import enqueue

    with h.db.write() as conn:
        enqueue(conn, "ris", "ORM^O01", "A", b"first")
        enqueue(conn, "ris", "ORM^O01", "B", b"second")
    first = h.outbox.claim("ris", lease=30)
    assert first is not None and first.control_id == "A"
    assert h.outbox.claim("ris", lease=30) is None
    h.outbox.retry(first.pk, "MSA-1 AE", 0)
    again = h.outbox.claim("ris", lease=30)
    assert again is not None and again.control_id == "A" and again.attempts == 2
    h.outbox.sent(again.pk)
    nxt = h.outbox.claim("ris", lease=30)
    assert nxt is not None and nxt.control_id == "B"
