"""The order side of IHE Scheduled Workflow: what an HL7 order, ADT or report message means to the hub,
independent of its wire format.

DICOM attributes travel as DICOM JSON (PS3.18 F.2) dictionaries ``{"00100010": {"vr": "PN", ...}}``:
the mapping in ``mappings/hl7_to_order.py`` writes them once; the worklist (PS3.4 Annex K), MPPS
(PS3.4 Annex F) and FHIR adapters read them back. Columns needed for matching are copied out of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

DicomJson = dict[str, dict[str, Any]]


class StepStatus(StrEnum):
    """Scheduled Procedure Step Status (0040,0020), PS3.3 C.4.10 defined terms; CANCELED as in UPS."""

    SCHEDULED = "SCHEDULED"
    ARRIVED = "ARRIVED"
    READY = "READY"
    STARTED = "STARTED"
    DEPARTED = "DEPARTED"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"
    DISCONTINUED = "DISCONTINUED"


FINAL_STEP_STATES = frozenset({StepStatus.COMPLETED, StepStatus.CANCELED, StepStatus.DISCONTINUED})


class OrderAction(StrEnum):
    """What an order message does to the scheduled steps of its study (mapping-reference 1.4)."""

    CREATE = "create"  # NW: new order; the message's steps replace any of the study (repeat = same result)
    UPDATE = "update"  # XO/SC with SC: the message's steps replace the study's steps (dcm4chee semantics)
    STATUS = "status"  # SC/XO with CM, A, IP...: only the status of the named steps changes
    CANCEL = "cancel"  # CA, OC: steps flagged CANCELED (kept, hidden from the worklist)
    DISCONTINUE = "discontinue"  # DC, OD: steps flagged DISCONTINUED


@dataclass
class PatientIdentity:
    """Patient ID (0010,0020) with its issuer (0010,0021) and qualifiers (0010,0024)."""

    patient_id: str
    issuer: str = ""
    universal_id: str = ""
    universal_id_type: str = ""
    id_type: str = ""  # Type of Patient ID (0010,0022), from CX-5

    def names(self, patient_id: str, issuer: str, attrs: DicomJson) -> bool:
        """Whether this names the patient stored as ``patient_id`` / ``issuer`` with patient module ``attrs``:
        the same Patient ID from the same assigning authority, i.e. the same Issuer of Patient ID (0010,0021) or
        the same Universal Entity ID and type in the Issuer of Patient ID Qualifiers (0010,0024) (PS3.3
        C.7.1.1.1: the authority's globally unique name; HL7 CX-4.2/CX-4.3)."""
        if self.patient_id != patient_id:
            return False
        if self.issuer == issuer:
            return True
        items = (attrs.get("00100024") or {}).get("Value") or [{}]
        item = items[0] if isinstance(items[0], dict) else {}
        stored = tuple(((item.get(t) or {}).get("Value") or [""])[0] for t in ("00400032", "00400033"))
        return bool(self.universal_id) and (self.universal_id, self.universal_id_type) == stored


@dataclass
class PatientRecord:
    """The patient as an HL7 PID segment states it: primary identity plus the DICOM patient module."""

    identity: PatientIdentity
    attrs: DicomJson  # Patient's Name, Birth Date, Sex, Other Patient IDs Sequence, address, ...
    # Attributes the message explicitly cleared (HL7 ``""``); empty HL7 fields keep stored values.
    cleared: tuple[str, ...] = ()

    def with_issuer(self, issuer: str) -> PatientRecord:
        """The same record under another form of its issuer (the stored one, see ``PatientIdentity.names``)."""
        if issuer == self.identity.issuer:
            return self
        attrs = {**self.attrs, "00100021": {"vr": "LO", "Value": [issuer]} if issuer else {"vr": "LO"}}
        return replace(self, identity=replace(self.identity, issuer=issuer), attrs=attrs)


@dataclass
class ScheduledStep:
    """One Scheduled Procedure Step = one MWL item (PS3.4 K.6.1.2.2)."""

    sps_id: str
    status: StepStatus
    modality: str
    station_aet: str
    start_date: str  # DA
    start_time: str  # TM
    attrs: DicomJson  # the item of the Scheduled Procedure Step Sequence (0040,0100)


@dataclass
class OrderCommand:
    """One requested procedure of an order message (ORM^O01 ORC/OBR group, OMI^O23 ORC/TQ1/OBR)."""

    action: OrderAction
    control: str  # ORC-1
    order_status: str  # ORC-5
    patient: PatientRecord
    study_uid: str
    accession_number: str
    requested_procedure_id: str
    placer_order: str
    filler_order: str
    attrs: DicomJson  # request-level MWL attributes (Requested Procedure, Imaging Service Request, Visit)
    steps: list[ScheduledStep]
    specific_character_set: str = ""  # (0008,0005) of the message's text, "" = default repertoire
    reason: str = ""  # ORC-16 text of a cancel/discontinue
    # When the request was authored (ServiceRequest.authoredOn, ORC-9 of a new order), naive UTC; None: keep
    # the stored one, or the receipt time for a new order
    authored_at: datetime | None = None


@dataclass
class PatientUpdate:
    """ADT^A08 (update) or ADT^A40 (merge ``prior`` into ``patient``)."""

    event: str  # A08, A31, A40, ...
    patient: PatientRecord
    prior: PatientIdentity | None = None


@dataclass
class ReportCommand:
    """ORU^R01: a report for a study, kept against it."""

    study_uid: str
    accession_number: str
    result_status: str  # OBR-25: P, F, C ...
    text: str
    observation_time: str
    patient: PatientRecord
    attrs: DicomJson = field(default_factory=dict)


@dataclass
class Hl7Mapped:
    """Everything one inbound message asks of the hub (a message may carry several orders)."""

    message_type: str  # "ORM^O01"
    orders: list[OrderCommand] = field(default_factory=list)
    patient_update: PatientUpdate | None = None
    report: ReportCommand | None = None
