"""Modality Performed Procedure Step SCP logic (PS3.4 Annex F, state machine of F.7; IHE RAD-6/RAD-7).

* N-CREATE only in state IN PROGRESS with the Type 1 attributes of PS3.4 Table F.7.2-1; an existing
  SOP Instance UID is a duplicate. N-SET only while IN PROGRESS (after COMPLETED or DISCONTINUED:
  processing failure, Error ID 0xA710, as dcm4che); it may not change attributes that only N-CREATE
  sets; a final state needs PPS End Date and End Time. COMPLETED without a Performed Series Sequence
  item is accepted (IHE expects one; refusing would leave the step IN PROGRESS forever) and logged.
* Each Scheduled Step Attributes Sequence item is linked by (Study Instance UID, SPS ID), else by
  Accession Number + Study Instance UID (mapping-reference 2.2). An MPPS linked to nothing is kept
  as unscheduled (``scheduled = 0``); :meth:`MppsService.reconcile` links it later.
* Step status: IN PROGRESS -> STARTED, COMPLETED -> COMPLETED, DISCONTINUED -> DISCONTINUED, except
  discontinuation reason 110514 "Incorrect worklist entry selected" (CID 9300) -> back to SCHEDULED
  (and the order back to SC). Order status: IP / CM / DC. Every order status change is reported to
  ``order_status.report(conn, order_pk, status, mpps_attrs)`` in the same transaction; the 110514
  case reports ``DC`` (the MPPS attributes carry the reason code).

One database transaction per N-CREATE / N-SET.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from hub.domain.orders import DicomJson, StepStatus
from hub.store.db import Database
from hub.store.mpps import MppsRepository, MppsUnit

log = logging.getLogger(__name__)

IN_PROGRESS, COMPLETED, DISCONTINUED = "IN PROGRESS", "COMPLETED", "DISCONTINUED"
PPS_STATES = (IN_PROGRESS, COMPLETED, DISCONTINUED)
FINAL = (COMPLETED, DISCONTINUED)
WRONG_WORKLIST_ENTRY = "110514"

PPS_STATUS, SSA_SEQUENCE, STUDY_UID, SPS_ID, ACCESSION = "00400252", "00400270", "0020000D", "00400009", "00080050"
END_DATE, END_TIME, SERIES_SEQUENCE, DISCONTINUATION_REASON = "00400250", "00400251", "00400340", "00400281"
# Type 1 at N-CREATE (PS3.4 Table F.7.2-1) besides the status and the SSA sequence
CREATE_TYPE1 = ("00400253", "00400241", "00400244", "00400245", "00080060")
# Attributes only N-CREATE may set ("Not allowed" in the N-SET column of Table F.7.2-1)
CREATE_ONLY = frozenset({SSA_SEQUENCE, "00100010", "00100020", "00100021", "00100024", "00100030", "00100040",
                         "00081120", "00400253", "00400241", "00400242", "00400243", "00400244", "00400245",
                         "00080060", "00200010"})


class OrderStatusSink(Protocol):
    def report(self, conn: Any, order_pk: int, status: str, mpps_attrs: DicomJson) -> None: ...  # noqa: ANN401


class MppsError(Exception):
    """A refused MPPS request. ``kind``: missing_attribute, missing_value, invalid_value,
    duplicate_instance, no_such_instance, no_longer_updatable, unknown_step; ``tags`` the
    offending attributes (DICOM JSON tags), never their values."""

    def __init__(self, kind: str, message: str, tags: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.tags = tags


def _values(attrs: DicomJson, tag: str) -> list[Any]:
    return list((attrs.get(tag) or {}).get("Value") or [])


def _first(attrs: DicomJson, tag: str) -> str:
    values = _values(attrs, tag)
    if not values:
        return ""
    v = values[0]
    return (v.get("Alphabetic", "") if isinstance(v, dict) else str(v)).strip()


def _require(attrs: DicomJson, tags: tuple[str, ...]) -> None:
    absent = tuple(t for t in tags if t not in attrs)
    if absent:
        raise MppsError("missing_attribute", "required attribute missing", absent)
    empty = tuple(t for t in tags if not any(v not in ("", None) for v in _values(attrs, t)))
    if empty:
        raise MppsError("missing_value", "required attribute has no value", empty)


def _reason_codes(attrs: DicomJson) -> set[str]:
    return {_first(item, "00080100") for item in _values(attrs, DISCONTINUATION_REASON) if isinstance(item, dict)}


def step_status_for(pps_status: str, attrs: DicomJson) -> StepStatus:
    """PPS status -> SPS status (mapping-reference 2.1/2.2)."""
    if pps_status == IN_PROGRESS:
        return StepStatus.STARTED
    if pps_status == COMPLETED:
        return StepStatus.COMPLETED
    if WRONG_WORKLIST_ENTRY in _reason_codes(attrs):
        return StepStatus.SCHEDULED
    return StepStatus.DISCONTINUED


def order_status_for(pps_status: str) -> str:
    """PPS status -> order status (HL7 table 0038: IP, CM, DC)."""
    return {IN_PROGRESS: "IP", COMPLETED: "CM"}.get(pps_status, "DC")


class MppsService:
    def __init__(self, db: Database, order_status: OrderStatusSink | None = None) -> None:
        self.db = db
        self.repo = MppsRepository(db)
        self.order_status = order_status

    # ------------------------------------------------------------------ N-CREATE (PS3.4 F.7.2.1)
    def create(self, sop_instance_uid: str, attrs: DicomJson, calling_aet: str = "") -> dict[str, Any]:
        """Create an MPPS in state IN PROGRESS; returns ``{"pk", "scheduled", "steps"}``."""
        if not sop_instance_uid:
            raise MppsError("missing_attribute", "Affected SOP Instance UID missing", ("00001000",))
        _require(attrs, (PPS_STATUS, SSA_SEQUENCE, *CREATE_TYPE1))
        if _first(attrs, PPS_STATUS) != IN_PROGRESS:
            raise MppsError("invalid_value", "N-CREATE requires Performed Procedure Step Status IN PROGRESS",
                            (PPS_STATUS,))
        items = [i for i in _values(attrs, SSA_SEQUENCE) if isinstance(i, dict)]
        if not items:
            raise MppsError("missing_value", "Scheduled Step Attributes Sequence has no item", (SSA_SEQUENCE,))
        if any(not _first(i, STUDY_UID) for i in items):
            raise MppsError("missing_value", "Study Instance UID missing in a Scheduled Step Attributes item",
                            (STUDY_UID,))
        with self.db.write() as conn:
            unit = MppsUnit(conn)
            if unit.get(sop_instance_uid, for_update=True) is not None:
                raise MppsError("duplicate_instance", "the MPPS SOP Instance already exists")
            pk = unit.insert(sop_instance_uid, IN_PROGRESS, attrs, study_uid=_first(items[0], STUDY_UID),
                             patient_id=_first(attrs, "00100020"), modality=_first(attrs, "00080060"),
                             station_aet=_first(attrs, "00400241"), calling_aet=calling_aet)
            steps = self._link(unit, pk, items)
            if steps:
                unit.update(pk, scheduled=1)
            self._apply(unit, steps, IN_PROGRESS, attrs)
        log.info("MPPS created (IN PROGRESS): %d scheduled steps linked%s", len(steps),
                 "" if steps else ", unscheduled")
        return {"pk": pk, "scheduled": bool(steps), "steps": [s["pk"] for s in steps]}

    # ------------------------------------------------------------------ N-SET (PS3.4 F.7.2.2)
    def update(self, sop_instance_uid: str, modifications: DicomJson) -> dict[str, Any]:
        """Apply an N-SET; returns ``{"pk", "status", "steps"}``."""
        with self.db.write() as conn:
            unit = MppsUnit(conn)
            row = unit.get(sop_instance_uid, for_update=True)
            if row is None:
                raise MppsError("no_such_instance", "no such MPPS SOP Instance")
            old_status = row["status"]
            if old_status in FINAL:
                raise MppsError("no_longer_updatable", "Performed Procedure Step Object may no longer be updated")
            stored: DicomJson = json.loads(row["attrs"])
            changed = tuple(sorted(t for t in modifications if t in CREATE_ONLY and modifications[t] != stored.get(t)))
            if changed:
                raise MppsError("invalid_value", "N-SET may not change attributes set by N-CREATE", changed)
            new_status = _first(modifications, PPS_STATUS) or old_status
            if new_status not in PPS_STATES:
                raise MppsError("invalid_value", "unknown Performed Procedure Step Status", (PPS_STATUS,))
            merged = {**stored, **modifications}
            merged[PPS_STATUS] = {"vr": "CS", "Value": [new_status]}
            if new_status in FINAL:
                _require(merged, (END_DATE, END_TIME))
                if new_status == COMPLETED and not _values(merged, SERIES_SEQUENCE):
                    log.warning("MPPS completed without a Performed Series Sequence item (accepted)")
            unit.update(row["pk"], status=new_status, attrs=merged)
            steps = unit.linked_steps(row["pk"])
            if new_status != old_status:
                self._apply(unit, steps, new_status, merged)
        if new_status != old_status:
            log.info("MPPS %s -> %s: %d scheduled steps", old_status, new_status, len(steps))
        return {"pk": row["pk"], "status": new_status, "steps": [s["pk"] for s in steps]}

    # ------------------------------------------------------------------ reconciliation
    def reconcile(self, mpps_uid: str, study_uid: str, sps_id: str) -> dict[str, Any]:
        """Link an (unscheduled) MPPS to the scheduled step (Study UID, SPS ID) and bring the step
        and its order to the MPPS's current state."""
        with self.db.write() as conn:
            unit = MppsUnit(conn)
            row = unit.get(mpps_uid, for_update=True)
            if row is None:
                raise MppsError("no_such_instance", "no such MPPS SOP Instance")
            step = unit.step_by_sps(study_uid, sps_id)
            if step is None:
                raise MppsError("unknown_step", "no scheduled step with this Study Instance UID and SPS ID",
                                (STUDY_UID, SPS_ID))
            unit.link(row["pk"], step["pk"])
            unit.update(row["pk"], scheduled=1)
            self._apply(unit, [step], row["status"], json.loads(row["attrs"]))
        log.info("MPPS reconciled with a scheduled step (%s)", row["status"])
        return {"pk": row["pk"], "status": row["status"], "steps": [step["pk"]]}

    def get(self, sop_instance_uid: str) -> dict[str, Any] | None:
        """The stored MPPS: columns, ``attrs`` (DICOM JSON) and the pks of its linked ``steps``."""
        return self.repo.get(sop_instance_uid)

    # ------------------------------------------------------------------ internals
    def _link(self, unit: MppsUnit, pk: int, items: list[DicomJson]) -> list[dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        for item in items:
            study, sps, accession = _first(item, STUDY_UID), _first(item, SPS_ID), _first(item, ACCESSION)
            matches: list[dict[str, Any]] = []
            if sps:
                step = unit.step_by_sps(study, sps)
                matches = [step] if step else []
            if not matches and accession:
                matches = unit.steps_by_accession(accession, study)
            for step in matches:
                if unit.link(pk, step["pk"]):
                    found[step["pk"]] = step
        return list(found.values())

    def _apply(self, unit: MppsUnit, steps: list[dict[str, Any]], pps_status: str, attrs: DicomJson) -> None:
        target = step_status_for(pps_status, attrs)
        for step in steps:
            if step["status"] != target.value:
                unit.set_step_status(step["pk"], target)
                step["status"] = target.value
        order_status = "SC" if target is StepStatus.SCHEDULED else order_status_for(pps_status)
        reported = order_status_for(pps_status)
        for order_pk in sorted({s["order_pk"] for s in steps}):
            if unit.order_status(order_pk) == order_status:
                continue
            unit.set_order_status(order_pk, order_status)
            if self.order_status is not None:
                self.order_status.report(unit.conn, order_pk, reported, attrs)
