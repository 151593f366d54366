"""Modality Performed Procedure Step SCP (PS3.4 Annex F): pynetdicom N-CREATE / N-SET against the hub,
step and order status, the state machine's refusals, unscheduled MPPS and reconciliation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from hub.app import Hub
from hub.services.mpps import MppsError
from tests.integration.test_dimse_mwl import order_command

STUDY1 = "1.2.826.0.1.3680043.10.543.1"
STUDY2 = "1.2.826.0.1.3680043.10.543.2"


class Recorder:
    """The order-status sink: records each report with the order status its transaction sees."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str, str, str]] = []

    def report(self, conn: Any, order_pk: int, status: str, mpps_attrs: dict) -> None:  # noqa: ANN401
        from sqlalchemy import text

        seen = conn.execute(text("SELECT status FROM orders WHERE pk = :pk"), {"pk": order_pk}).scalar_one()
        self.calls.append((order_pk, status, seen, mpps_attrs["00400252"]["Value"][0]))


@pytest.fixture
def scheduled(hub: Hub) -> Hub:
    with hub.orders.unit() as unit:
        unit.apply_order(order_command(1, name="Smith^John", station="CT1", modality="CT", date="20300101"), "t")
        unit.apply_order(order_command(2, name="Jones^Ann", station="CT1", modality="CT", date="20300101"), "t")
    hub.mpps.order_status = Recorder()
    return hub


@pytest.fixture
def assoc(scheduled: Hub, listeners) -> Iterator[Association]:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    a = ae.associate("127.0.0.1", listeners.dimse.port, ae_title="RISHUB")
    assert a.is_established
    yield a
    a.release()


def ssa_item(study: str, sps: str = "", accession: str = "") -> Dataset:
    item = Dataset()
    item.StudyInstanceUID = study
    item.ReferencedStudySequence = []
    item.AccessionNumber = accession
    item.RequestedProcedureID = ""
    item.RequestedProcedureDescription = ""
    item.ScheduledProcedureStepID = sps
    item.ScheduledProcedureStepDescription = ""
    item.ScheduledProtocolCodeSequence = []
    return item


def create_ds(*items: Dataset, status: str = "IN PROGRESS") -> Dataset:
    ds = Dataset()
    ds.ScheduledStepAttributesSequence = list(items)
    ds.PatientName = "Smith^John"
    ds.PatientID = "PID1"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "CT1"
    ds.PerformedStationName = ""
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate = "20300101"
    ds.PerformedProcedureStepStartTime = "0931"
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepDescription = ""
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = []
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = "CT"
    ds.StudyID = ""
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    return ds


def final_ds(status: str = "COMPLETED", reason: str = "", series: bool = True) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20300101"
    ds.PerformedProcedureStepEndTime = "0945"
    if series:
        s = Dataset()
        s.SeriesInstanceUID = "1.2.826.0.1.3680043.10.543.999.1"
        s.ProtocolName = "Chest"
        s.PerformingPhysicianName = ""
        s.OperatorsName = "Op^Olga"
        s.SeriesDescription = "Axial"
        s.RetrieveAETitle = ""
        s.ReferencedImageSequence = []
        s.ReferencedNonImageCompositeSOPInstanceSequence = []
        ds.PerformedSeriesSequence = [s]
    if reason:
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = reason, "DCM", "reason"
        ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = [code]
    return ds


def n_create(assoc: Association, ds: Dataset, uid: str | None = None) -> tuple[str, Dataset]:
    uid = uid or generate_uid()
    st, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
    return uid, st


def n_set(assoc: Association, uid: str, ds: Dataset) -> Dataset:
    st, _ = assoc.send_n_set(ds, ModalityPerformedProcedureStep, uid)
    return st


def step_and_order(hub: Hub, study: str) -> tuple[str, str]:
    return hub.orders.steps(study)[0]["status"], hub.orders.order(study)["status"]


def test_in_progress_then_completed(scheduled: Hub, assoc: Association):
    uid, st = n_create(assoc, create_ds(ssa_item(STUDY1, "SPS1", "ACC1")))
    assert st.Status == 0x0000
    assert step_and_order(scheduled, STUDY1) == ("STARTED", "IP")
    assert step_and_order(scheduled, STUDY2) == ("SCHEDULED", "SC")
    st = n_set(assoc, uid, final_ds())
    assert st.Status == 0x0000
    assert step_and_order(scheduled, STUDY1) == ("COMPLETED", "CM")
    stored = scheduled.mpps.get(uid)
    assert stored["status"] == "COMPLETED" and stored["scheduled"] == 1 and len(stored["steps"]) == 1
    series = stored["attrs"]["00400340"]["Value"]
    assert series[0]["0020000E"]["Value"] == ["1.2.826.0.1.3680043.10.543.999.1"]
    order_pk = scheduled.orders.order(STUDY1)["pk"]
    # reported in the transaction of the change (which already sees the new status)
    assert scheduled.mpps.order_status.calls == [(order_pk, "IP", "IP", "IN PROGRESS"),
                                                 (order_pk, "CM", "CM", "COMPLETED")]
    # the step left the default worklist
    assert list(scheduled.worklist.find([])) and all(r["study_uid"] != STUDY1 for r in scheduled.worklist.find([]))


def test_final_state_refuses_n_set(scheduled: Hub, assoc: Association):
    uid, _ = n_create(assoc, create_ds(ssa_item(STUDY1, "SPS1")))
    assert n_set(assoc, uid, final_ds("DISCONTINUED", reason="110501")).Status == 0x0000
    assert step_and_order(scheduled, STUDY1) == ("DISCONTINUED", "DC")
    st = n_set(assoc, uid, final_ds())
    assert st.Status == 0x0110 and st.ErrorID == 0xA710
    assert scheduled.mpps.get(uid)["status"] == "DISCONTINUED"


def test_unknown_instance(scheduled: Hub, assoc: Association):
    assert n_set(assoc, generate_uid(), final_ds()).Status == 0x0112


def test_create_refusals(scheduled: Hub, assoc: Association):
    ds = create_ds(ssa_item(STUDY1, "SPS1"))
    del ds.PerformedProcedureStepID
    _, st = n_create(assoc, ds)
    assert st.Status == 0x0120 and st.ErrorComment.startswith("(0040,0253)")
    ds = create_ds(ssa_item(STUDY1, "SPS1"))
    ds.PerformedStationAETitle = ""
    _, st = n_create(assoc, ds)
    assert st.Status == 0x0121 and st.ErrorComment.startswith("(0040,0241)")
    _, st = n_create(assoc, create_ds(ssa_item(STUDY1, "SPS1"), status="COMPLETED"))
    assert st.Status == 0x0106 and st.ErrorComment.startswith("(0040,0252)")
    _, st = n_create(assoc, create_ds(ssa_item("", "SPS1")))
    assert st.Status == 0x0121
    assert step_and_order(scheduled, STUDY1) == ("SCHEDULED", "SC")  # nothing was created
    uid, st = n_create(assoc, create_ds(ssa_item(STUDY1, "SPS1")))
    assert st.Status == 0x0000
    _, st = n_create(assoc, create_ds(ssa_item(STUDY1, "SPS1")), uid)
    assert st.Status == 0x0111


def test_n_set_refusals(scheduled: Hub, assoc: Association):
    uid, _ = n_create(assoc, create_ds(ssa_item(STUDY1, "SPS1")))
    change = Dataset()
    change.Modality = "MR"
    st = n_set(assoc, uid, change)
    assert st.Status == 0x0106 and st.AttributeIdentifierList == 0x00080060
    same = Dataset()
    same.Modality = "CT"  # resending an N-CREATE value unchanged is accepted
    assert n_set(assoc, uid, same).Status == 0x0000
    no_end = Dataset()
    no_end.PerformedProcedureStepStatus = "COMPLETED"
    st = n_set(assoc, uid, no_end)
    assert st.Status == 0x0121 and list(st.AttributeIdentifierList) == [0x00400250, 0x00400251]
    bad = Dataset()
    bad.PerformedProcedureStepStatus = "DONE"
    assert n_set(assoc, uid, bad).Status == 0x0106
    # series added while IN PROGRESS, then completed
    progress = final_ds("IN PROGRESS")
    assert n_set(assoc, uid, progress).Status == 0x0000
    assert step_and_order(scheduled, STUDY1) == ("STARTED", "IP")
    assert n_set(assoc, uid, final_ds()).Status == 0x0000
    assert step_and_order(scheduled, STUDY1) == ("COMPLETED", "CM")


def test_accession_fallback_and_group_case(scheduled: Hub, assoc: Association):
    uid, st = n_create(assoc, create_ds(ssa_item(STUDY1, accession="ACC1"), ssa_item(STUDY2, "SPS2")))
    assert st.Status == 0x0000
    assert len(scheduled.mpps.get(uid)["steps"]) == 2
    assert step_and_order(scheduled, STUDY1) == ("STARTED", "IP")
    assert step_and_order(scheduled, STUDY2) == ("STARTED", "IP")
    assert n_set(assoc, uid, final_ds()).Status == 0x0000
    assert [c[1] for c in scheduled.mpps.order_status.calls] == ["IP", "IP", "CM", "CM"]


def test_unscheduled_kept_and_reconciled(scheduled: Hub, assoc: Association):
    study = "1.2.826.0.1.3680043.10.543.77"
    uid, st = n_create(assoc, create_ds(ssa_item(study)))
    assert st.Status == 0x0000
    stored = scheduled.mpps.get(uid)
    assert stored["scheduled"] == 0 and stored["steps"] == [] and stored["study_uid"] == study
    assert scheduled.mpps.order_status.calls == []
    assert n_set(assoc, uid, final_ds()).Status == 0x0000
    scheduled.mpps.reconcile(uid, STUDY2, "SPS2")
    stored = scheduled.mpps.get(uid)
    assert stored["scheduled"] == 1 and len(stored["steps"]) == 1
    assert step_and_order(scheduled, STUDY2) == ("COMPLETED", "CM")
    with pytest.raises(MppsError) as exc:
        scheduled.mpps.reconcile(uid, STUDY2, "NOPE")
    assert exc.value.kind == "unknown_step"


def test_wrong_worklist_entry_reschedules(scheduled: Hub, assoc: Association):
    uid, _ = n_create(assoc, create_ds(ssa_item(STUDY1, "SPS1")))
    assert step_and_order(scheduled, STUDY1) == ("STARTED", "IP")
    assert n_set(assoc, uid, final_ds("DISCONTINUED", reason="110514", series=False)).Status == 0x0000
    assert step_and_order(scheduled, STUDY1) == ("SCHEDULED", "SC")
    assert [r["study_uid"] for r in scheduled.worklist.find([])].count(STUDY1) == 1  # back on the worklist
    assert scheduled.mpps.order_status.calls[-1][1:3] == ("DC", "SC")
