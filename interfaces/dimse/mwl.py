"""Modality Worklist Information Model - FIND SCP (PS3.4 Annex K; SOP Class 1.2.840.10008.5.1.4.31).

The identifier's matching keys (PS3.4 Table K.6-1: Patient's Name, Patient ID, Accession Number,
Requested Procedure ID, Study Instance UID at the top; Scheduled Station AE Title, Modality, SPS
Start Date/Time, SPS ID and SPS Status inside the Scheduled Procedure Step Sequence) become
conditions for ``hub.services.worklist``; every match goes back as a Pending (0xFF00) response with
only the requested keys (written straight to bytes where possible). A malformed identifier is
refused with 0xA900 (Identifier does not match SOP Class), C-CANCEL ends the stream with 0xFE00,
a database failure with 0xA700 (Out of resources).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from hub.app import Hub
from hub.domain.query import Condition
from hub.errors import HubError
from hub.services.modalities import ModalityDirectory
from interfaces.dimse.common import NOT_AUTHORIZED, origin_of, status
from interfaces.dimse.find import CANCEL, PendingWriter
from mappings.dicom_query import value_to_condition
from mappings.worklist_to_dicom import (
    SPS_SEQUENCE,
    record_to_mwl_identifier,
    record_to_mwl_identifier_bytes,
    request_template,
)

log = logging.getLogger(__name__)

MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
INVALID_IDENTIFIER = 0xA900
OUT_OF_RESOURCES = 0xA700

# MWL matching key -> a key of the shared query model with the same matching kind
TOP_KEYS = {"PatientName": "PatientName", "PatientID": "PatientID", "IssuerOfPatientID": "PatientID",
            "AccessionNumber": "PatientID", "RequestedProcedureID": "PatientID",
            "StudyInstanceUID": "StudyInstanceUID"}
SPS_KEYS = {"ScheduledStationAETitle": "PatientID", "Modality": "PatientID",
            "ScheduledProcedureStepStartDate": "StudyDate", "ScheduledProcedureStepStartTime": "StudyTime",
            "ScheduledProcedureStepID": "PatientID", "ScheduledProcedureStepStatus": "PatientID"}


class MalformedIdentifier(ValueError):
    pass


def _text(value: object) -> str:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)  # type: ignore[union-attr]
    return "" if value is None else str(value).strip()


def _condition(keyword: str, proxy: str, value: object) -> Condition | None:
    text = _text(value)
    if keyword == "ScheduledProcedureStepStatus":
        text = text.upper()
    try:
        cond = value_to_condition(proxy, text)
    except HubError as exc:
        raise MalformedIdentifier(f"{keyword}: {exc.message.split(': ', 1)[-1]}") from None
    return dataclasses.replace(cond, keyword=keyword) if cond is not None else None


def identifier_to_conditions(identifier: Dataset) -> list[Condition]:
    """The worklist conditions of an MWL C-FIND identifier; :class:`MalformedIdentifier` when the
    Scheduled Procedure Step Sequence is not a sequence of at most one item or a value is malformed."""
    conditions: list[Condition] = []
    for elem in identifier:
        if elem.tag == SPS_SEQUENCE:
            if elem.VR != "SQ" or len(elem.value or []) > 1:
                raise MalformedIdentifier("Scheduled Procedure Step Sequence must hold at most one item")
            for sub in elem.value[0] if elem.value else []:
                proxy = SPS_KEYS.get(sub.keyword)
                if proxy is not None and sub.VR != "SQ":
                    cond = _condition(sub.keyword, proxy, sub.value)
                    if cond is not None:
                        conditions.append(cond)
            continue
        proxy = TOP_KEYS.get(elem.keyword)
        if proxy is not None and elem.VR != "SQ":
            cond = _condition(elem.keyword, proxy, elem.value)
            if cond is not None:
                conditions.append(cond)
    return conditions


def make_mwl_handler(hub: Hub, directory: ModalityDirectory):  # noqa: ANN201
    def handle_mwl(event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        origin = origin_of(event)
        who = origin.describe()
        if not directory.allows(origin.remote_aet, origin.remote_ip, "find"):
            log.warning("MWL C-FIND refused: %s may not query", who)
            yield status(NOT_AUTHORIZED, "Refused: not authorized"), None
            return
        try:
            identifier = event.identifier
            conditions = identifier_to_conditions(identifier)
            template = request_template(identifier)
        except MalformedIdentifier as exc:
            log.warning("MWL C-FIND rejected (%s): %s", who, exc)
            yield status(INVALID_IDENTIFIER, str(exc)), None
            return
        except Exception:  # an identifier pydicom cannot decode
            log.warning("MWL C-FIND identifier unreadable (%s)", who)
            yield status(INVALID_IDENTIFIER, "Identifier cannot be decoded"), None
            return
        count = 0
        writer = PendingWriter(event)
        try:
            for record in hub.worklist.find(conditions):
                if event.is_cancelled:
                    writer.close()
                    log.info("MWL C-FIND cancelled by %s after %d matches", who, count)
                    yield CANCEL, None
                    return
                fast = record_to_mwl_identifier_bytes(record, template, implicit=writer.implicit) if writer.little \
                    else None
                if fast is not None:
                    writer.add_bytes(fast)
                else:
                    writer.add(record_to_mwl_identifier(record, identifier))
                count += 1
        except Exception:
            writer.close()
            log.exception("MWL C-FIND failed (%s)", who)
            yield status(OUT_OF_RESOURCES, "Out of resources"), None
            return
        writer.close()
        log.info("MWL C-FIND %s: %d matches", who, count)

    return handle_mwl
