"""``rishub map hl7 FILE``: what one HL7 message would do, without touching the database. Prints the
orders, their Modality Worklist items (PS3.4 K.6 attributes as DICOM JSON), patient updates and
reports as JSON; a message the hub would refuse prints the NAK it would send and exits 1."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from hub.domain.orders import Hl7Mapped


def mapped_to_json(mapped: Hl7Mapped) -> dict[str, Any]:
    """The mapping's result with each step as the MWL item a modality would receive."""
    out: dict[str, Any] = {"message_type": mapped.message_type, "orders": []}
    for cmd in mapped.orders:
        items = []
        for step in cmd.steps:
            tags = {**cmd.attrs, **cmd.patient.attrs, "00400100": {"vr": "SQ", "Value": [step.attrs]}}
            if cmd.specific_character_set:
                tags["00080005"] = {"vr": "CS", "Value": [cmd.specific_character_set]}
            items.append(dict(sorted(tags.items())))
        out["orders"].append({
            "action": cmd.action.value, "control": cmd.control, "order_status": cmd.order_status,
            "study_uid": cmd.study_uid, "accession_number": cmd.accession_number,
            "requested_procedure_id": cmd.requested_procedure_id,
            "patient": dataclasses.asdict(cmd.patient.identity),
            "steps": [{"sps_id": s.sps_id, "status": s.status.value, "modality": s.modality,
                       "station_aet": s.station_aet, "start": f"{s.start_date} {s.start_time}".strip()}
                      for s in cmd.steps],
            "worklist_items": items,
        })
    if mapped.patient_update is not None:
        out["patient_update"] = dataclasses.asdict(mapped.patient_update)
    if mapped.report is not None:
        out["report"] = dataclasses.asdict(mapped.report)
    return out


def cmd_map_hl7(args: argparse.Namespace) -> int:
    from hub.services.hl7_inbound import message_codec, policy_from_settings
    from interfaces.cli import _settings
    from mappings.hl7_ack import ack_for_error
    from mappings.hl7_message import Hl7ParseError, parse_hl7
    from mappings.hl7_to_order import hl7_to_mapped

    settings = _settings(args)
    raw = Path(args.file).read_bytes()  # bytes: text mode would turn the CR separators into LF
    try:
        from interfaces.hl7.mllp import normalise_segments

        msg = parse_hl7(normalise_segments(raw.strip(b"\x0b\x1c")), default_charset=message_codec(raw, settings.hl7))
        mapped = hl7_to_mapped(msg, policy_from_settings(settings.hl7))
    except Hl7ParseError as err:
        nak = ack_for_error(err, control_id="MAP")
        print(nak.replace(b"\r", b"\n").decode("latin-1"), file=sys.stderr)
        return 1
    json.dump(mapped_to_json(mapped), sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


def register(sub: Any, with_config: Any) -> None:  # noqa: ANN401 - argparse internals
    mapping = sub.add_parser("map", help="try a mapping on a file").add_subparsers(dest="map_command", required=True)
    p = with_config(mapping.add_parser("hl7", help="the orders and worklist items an HL7 message produces"))
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_map_hl7)
