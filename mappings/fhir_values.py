"""Value conversions shared by the FHIR R4 <-> order mappings (mapping-reference §3.3).

FHIR dateTime <-> DICOM DA/TM + Timezone Offset From UTC (0008,0201); HumanName <-> PN; code system URI <->
DICOM coding scheme designator; identifier systems (``urn:oid:``) <-> DICOM issuer items; R4B validation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from mappings.ascii import is_digits
from mappings.dicom_to_fhir_values import entity_system

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
DICOM_UID_SYSTEM = "urn:dicom:uid"
DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
# FHIR code system URI -> DICOM coding scheme designator (PS3.16 Table 8-1)
SCHEMES = {
    "http://loinc.org": "LN",
    "http://snomed.info/sct": "SCT",
    "http://www.radlex.org": "RADLEX",
    "http://radlex.org": "RADLEX",
    "http://playbook.radlex.org": "RADLEX",
    DCM_SYSTEM: "DCM",
    "http://www.ama-assn.org/go/cpt": "C4",
    "http://unitsofmeasure.org": "UCUM",
}
SYSTEMS = {"LN": "http://loinc.org", "SCT": "http://snomed.info/sct", "RADLEX": "http://www.radlex.org",
           "DCM": DCM_SYSTEM, "C4": "http://www.ama-assn.org/go/cpt", "UCUM": "http://unitsofmeasure.org"}
LOCAL_SCHEME = "99LOCAL"
MAX_LEN = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "UI": 64, "LT": 10240, "UT": 65535}
_DT = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?",
                 re.ASCII)
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_UNKNOWN_CONTAINED = "a contained resource needs a known resourceType"
MODELS: dict[str, Any] = {"ServiceRequest": ServiceRequest, "ImagingStudy": ImagingStudy, "Patient": Patient}


class FhirInputError(ValueError):
    """A resource the hub cannot take: ``code`` is a FHIR IssueType (invalid, required, value, business-rule,
    not-supported, duplicate), ``expression`` a FHIRPath to the element; never carries a patient value."""

    def __init__(self, code: str, diagnostics: str, expression: str = "") -> None:
        super().__init__(diagnostics)
        self.code = code
        self.diagnostics = diagnostics
        self.expression = expression


def validate(resource: Any, resource_type: str) -> None:  # noqa: ANN401 - parsed JSON of unknown shape
    """Check ``resource`` against the R4B model of ``resource_type`` (R4-compatible for ServiceRequest,
    ImagingStudy, Patient); FhirInputError("invalid") naming the first bad element."""
    if not isinstance(resource, dict) or resource.get("resourceType") != resource_type:
        raise FhirInputError("invalid", f"a {resource_type} resource is required", resource_type)
    if not _contained_known(resource):
        raise FhirInputError("invalid", _UNKNOWN_CONTAINED, f"{resource_type}.contained")
    try:
        MODELS[resource_type].model_validate(resource)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        raise FhirInputError("invalid", f"{err['type']}: {err['msg']}"[:200], f"{resource_type}.{path}") from None
    except ValueError as exc:
        raise FhirInputError("invalid", str(exc)[:200], resource_type) from None
    except (TypeError, KeyError):  # fhir_core's own failure on a resourceType it cannot look up
        raise FhirInputError("invalid", _UNKNOWN_CONTAINED, f"{resource_type}.contained") from None
    except RecursionError:  # contained in contained ..., extension in extension ...: deeper than the models go
        raise FhirInputError("invalid", "the resource is nested too deeply", resource_type) from None


def _contained_known(resource: dict[str, Any]) -> bool:
    """R4 json.html: every resource, a contained one too, names its (concrete) type in ``resourceType``
    (R4 references.html, contained resources). The R4B models take a contained object without one, or with
    the abstract ``Resource`` / ``DomainResource``, as a bare Resource, and fail with TypeError / KeyError
    (fhir_core) on an unknown one. Items that are not objects are left to the models."""
    items = resource.get("contained")
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and not (_concrete_resource(item.get("resourceType")) and _contained_known(item)):
            return False
    return True


def _concrete_resource(name: Any) -> bool:  # noqa: ANN401 - parsed JSON
    if type(name) is not str or name in ("Resource", "DomainResource"):
        return False
    try:
        return bool(get_fhir_model_class(name).has_resource_base())
    except ValueError:  # not an R4B model name
        return False


def fit(value: str, vr: str, expression: str) -> str:
    """``value`` if it fits the VR's length limit, else FhirInputError("value") at ``expression``."""
    limit = MAX_LEN.get(vr)
    if limit and len(value) > limit:
        raise FhirInputError("value", f"value longer than DICOM {vr} allows ({limit})", expression)
    if "\\" in value and vr not in ("LT", "UT"):
        raise FhirInputError("value", "backslash is not allowed in this DICOM value", expression)
    return value


def valid_uid(uid: str) -> bool:
    """PS3.5 9.1: digits and dots, no leading zero per component, at most 64 characters."""
    return len(uid) <= 64 and bool(_UID.fullmatch(uid))


def parse_datetime(value: str, expression: str) -> tuple[str, str, str]:
    """FHIR dateTime -> (DA, TM, offset ``+hhmm``); TM and offset are "" for a date. Day precision needed."""
    m = _DT.fullmatch(value or "")
    if not m:
        raise FhirInputError("value", "not a FHIR dateTime", expression)
    year, month, day, hour, minute, second, frac, zone = m.groups()
    if not day:
        raise FhirInputError("value", "the date/time needs at least day precision", expression)
    try:
        datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError:
        raise FhirInputError("value", "impossible date/time", expression) from None
    if hour and not zone:
        raise FhirInputError("value", "a dateTime with a time must have a time zone", expression)
    if zone and zone != "Z" and (int(zone[4:6]) > 59 or int(zone[1:3]) * 60 + int(zone[4:6]) > 14 * 60):
        raise FhirInputError("value", "a time zone is at most 14:00 from UTC", expression)  # R4 dateTime regex
    time = f"{hour}{minute}{second or ''}{(frac or '')[:7] if second else ''}" if hour else ""
    offset = "" if not zone else "+0000" if zone == "Z" else zone.replace(":", "")
    return f"{year}{month}{day}", time, offset


def to_fhir_datetime(date: str, time: str, offset: str) -> str | None:
    """DICOM DA + TM (+ offset) -> FHIR dateTime; a date without time stays a date; no zone -> date only
    unless ``offset`` (FHIR requires a zone with a time). None when the date is unusable."""
    if len(date) != 8 or not is_digits(date):
        return None
    day = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    digits = time.split(".")[0]
    if not offset or len(digits) < 4 or not is_digits(digits):
        return day
    hh, mm, ss = digits[:2], digits[2:4], (digits[4:6] or "00")
    frac = "." + time.split(".")[1] if "." in time and time.split(".")[1] else ""
    return f"{day}T{hh}:{mm}:{ss}{frac}{offset[:3]}:{offset[3:5]}"


def scheme_for(system: str, schemes: Mapping[str, str]) -> str:
    """FHIR code system URI -> DICOM coding scheme designator; local systems -> 99LOCAL (or the table)."""
    return schemes.get(system) or SCHEMES.get(system.rstrip("/")) or LOCAL_SCHEME


def code_item(coding: dict[str, Any], schemes: Mapping[str, str], expression: str, text: str = "") -> dict[str, Any]:
    """A Coding -> code sequence item (0008,0100)/(0008,0102)/(0008,0104)."""
    code = str(coding.get("code") or "")
    scheme = scheme_for(str(coding.get("system") or ""), schemes)
    meaning = str(coding.get("display") or text or code)
    return {"00080100": elem("SH", fit(code, "SH", f"{expression}.code")),
            "00080102": elem("SH", fit(scheme, "SH", f"{expression}.system")),
            "00080104": elem("LO", meaning[:64])}


def issuer_item(system: str, issuers: Mapping[str, str]) -> dict[str, Any] | None:
    """Identifier.system -> issuer item: ``urn:oid:X`` -> Universal Entity ID X, type ISO; a system in the
    table -> Local Namespace Entity ID (mapping-reference §3.3); another system is its own local namespace
    (UT, so the URI fits and reads back); no system -> None."""
    if system.startswith("urn:oid:"):
        return {"00400032": elem("UT", system[8:]), "00400033": elem("CS", "ISO")}
    if system:
        return {"00400031": elem("UT", issuers.get(system, system))}
    return None


def system_of(item: dict[str, Any] | None, issuers: Mapping[str, str]) -> str:
    """Issuer item -> Identifier.system (inverse of :func:`issuer_item`); "" when unknown."""
    if not item:
        return ""
    uid = first(item, "00400032")
    if uid and first(item, "00400033") == "ISO":  # an OID says it all, whatever the table
        return f"urn:oid:{uid}"
    reverse = {v: k for k, v in issuers.items()}
    return reverse.get(first(item, "00400031")) or entity_system([item])


def human_name_to_pn(name: dict[str, Any]) -> str:
    """HumanName -> PN ``family^given[0]^given[1..]^prefix^suffix`` (mapping-reference §3.3)."""
    given = [str(g) for g in name.get("given") or []]
    parts = [str(name.get("family") or ""), given[0] if given else "", " ".join(given[1:]),
             " ".join(str(p) for p in name.get("prefix") or []), " ".join(str(s) for s in name.get("suffix") or [])]
    pn = "^".join(parts).rstrip("^")
    if not pn and name.get("text"):
        pn = str(name["text"])
    return pn


def pn_to_human_name(pn: str) -> dict[str, Any]:
    """PN (alphabetic group) -> HumanName."""
    parts = (pn.split("^") + [""] * 5)[:5]
    out: dict[str, Any] = {}
    if parts[0]:
        out["family"] = parts[0]
    given = [p for p in (parts[1], *parts[2].split(" ")) if p]
    if given:
        out["given"] = given
    if parts[3]:
        out["prefix"] = [parts[3]]
    if parts[4]:
        out["suffix"] = [parts[4]]
    return out


def elem(vr: str, *values: Any) -> dict[str, Any]:  # noqa: ANN401 - DICOM JSON values
    """A DICOM JSON element; without non-empty values present with zero length."""
    vals = [v for v in values if v not in ("", None)]
    return {"vr": vr, "Value": vals} if vals else {"vr": vr}


def pn_elem(name: str) -> dict[str, Any]:
    return {"vr": "PN", "Value": [{"Alphabetic": name}]} if name else {"vr": "PN"}


def seq_elem(*items: dict[str, Any] | None) -> dict[str, Any]:
    vals = [i for i in items if i]
    return {"vr": "SQ", "Value": vals} if vals else {"vr": "SQ"}


def first(attrs: dict[str, Any], tag: str) -> Any:  # noqa: ANN401 - DICOM JSON value
    """First value of a DICOM JSON element (PN as its alphabetic string), "" when absent or empty."""
    element = attrs.get(tag) or {}
    vals = element.get("Value") or [""]
    value = vals[0]
    if isinstance(value, dict) and element.get("vr") == "PN":
        return value.get("Alphabetic", "")
    return "" if value is None else value


def date_range(value: str) -> tuple[datetime, datetime]:
    """A FHIR date/dateTime search value -> its implicit range [start, end) as naive UTC (FHIR search
    §3.1.1.5.2: ``2030-01`` is the whole month); values without a zone are taken as UTC. A range that would
    run past either end of the calendar (year 9999's, or 0001-01-01 east of UTC) stops at that end."""
    m = _DT.fullmatch(value or "")
    if not m:
        raise FhirInputError("value", "not a FHIR date/dateTime", "authored")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    try:
        start = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                         int(second or 0), int(((frac or ".0")[1:] + "000000")[:6]))
    except ValueError:  # year 0, month 13, day 31 of a 30-day month ...
        raise FhirInputError("value", "impossible date/time", "authored") from None
    if not month:
        end = within_calendar(lambda: datetime(start.year + 1, 1, 1))
    elif not day:
        end = within_calendar(lambda: datetime(start.year + (start.month == 12), start.month % 12 + 1, 1))
    else:
        step = timedelta(days=1) if not hour else timedelta(minutes=1) if not second else \
            timedelta(seconds=1) if not frac else timedelta(microseconds=1)
        end = within_calendar(lambda: start + step)
    if zone and zone != "Z":
        shift = (1 if zone[0] == "+" else -1) * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        start, end = within_calendar(lambda: start - shift, start), within_calendar(lambda: end - shift, end)
    return start, end


def within_calendar(moment: Callable[[], datetime], near: datetime = datetime.max) -> datetime:
    """``moment()``, or the end of the calendar nearest ``near`` when it falls outside years 1-9999 (a search
    range of 9999-12-31, or of 0001-01-01 in a zone east of UTC, stops there)."""
    try:
        return moment()
    except (ValueError, OverflowError):
        return datetime.min if near.year < 5000 else datetime.max
