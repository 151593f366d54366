"""FHIR R4 read side (issue 7): ImagingStudy and Patient read/search over the archive and the orders.

Resources are built by ``mappings.dicom_to_fhir`` from the rows of :class:`hub.store.fhir.FhirRepository`;
ids follow that module's scheme. Paging is offset-based.

ADT^A40 (mapping-reference 1.5; R4 patient.html Patient.link): the retired identity keeps the id it had
before the merge and reads (and is found by ``_id`` / ``identifier``) as an inactive Patient whose link
``replaced-by`` names the survivor; the survivor links ``replaces`` back. Its id is the Orthanc id of the
Patient ID when it was a stored patient whose studies moved to an existing survivor, the order-only form
(SHA-1 of ``PatientID|Issuer``) when it was known from orders only - and also when the archive renamed
its record to the survivor's Patient ID (no stored survivor yet): that record, and the id that the
studies' ``subject`` and the archive's API use, is then the survivor's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from hub.domain.ids import orthanc_id
from hub.store.fhir import DateParam, FhirRepository, PatientCriteria, PatientKey, StudyCriteria
from mappings import dicom_to_fhir as m
from mappings.ascii import row_id

__all__ = ["DateParam", "FhirService", "PatientCriteria", "PatientKey", "SearchResult", "StudyCriteria"]

Json = dict[str, Any]


@dataclass
class SearchResult:
    """One page of matches, their total, and the resources ``_include`` asked for."""

    resources: list[Json]
    total: int
    included: list[Json] = field(default_factory=list)


@dataclass(frozen=True)
class _Resolved:
    kind: str  # archive, order, merged
    row: dict[str, Any]
    survivor: str = ""  # merged: the surviving Patient id


class FhirService:
    def __init__(self, repo: FhirRepository, tz: tzinfo | None = None, cache_size: int = 100_000) -> None:
        self.repo = repo
        self.tz = tz  # zone of DICOM times without offset; None: the system's local zone
        self._ids: dict[str, tuple[str, str]] = {}  # order-only Patient id -> (Patient ID, issuer)
        self._lock = threading.Lock()
        self._cache_size = cache_size

    # ------------------------------------------------------------------ ImagingStudy
    def read_imaging_study(self, rid: str) -> Json | None:
        """By id; ``o-<pk>`` of an order whose images have arrived reads as the stored study."""
        if rid.startswith("o-"):
            order_pk = row_id(rid[2:])
            if order_pk is None:
                return None
            found = self.repo.order_study(order_pk)
            if found is None:
                return None
            kind, pk = ("a", found[1]) if found[1] is not None else ("o", order_pk)
        else:
            st_pk = self.repo.study_pk(rid)
            if st_pk is None:
                return None
            kind, pk = "a", st_pk
        built = self._build_studies([(kind, pk)])
        return built[0] if built else None

    def search_imaging_studies(self, c: StudyCriteria, sort: Sequence[tuple[str, bool]], offset: int, count: int,
                               include_subject: bool = False) -> SearchResult:
        total, keys = self.repo.study_page(c, list(sort), offset, count, self.tz) if count > 0 else (
            self.repo.study_page(c, [], 0, 1, self.tz)[0], [])
        resources = self._build_studies(keys)
        included = self.patients_by_reference([r["subject"]["reference"] for r in resources]) if include_subject else []
        return SearchResult(resources, total, included)

    def patient_keys(self, rid: str) -> list[PatientKey]:
        """What ImagingStudy?patient=<rid> matches: the identity behind the Patient id (none if unknown
        or retired by a merge: its studies belong to the survivor)."""
        found = self._resolve(rid)
        if found is None or found.kind == "merged":
            return []
        if found.kind == "archive":
            return [PatientKey(found.row["patient_id"], None, found.row["pk"])]
        return [PatientKey(found.row["patient_id"], found.row["issuer_of_patient_id"])]

    def _build_studies(self, keys: list[tuple[str, int]]) -> list[Json]:
        archived = self.repo.archive_studies([pk for k, pk in keys if k == "a"])
        orders = self.repo.orders([pk for k, pk in keys if k == "o"])
        out: list[Json] = []
        for kind, pk in keys:
            if kind == "a" and pk in archived:
                s = archived[pk]
                ref = f"Patient/{s['patient']['public_id']}"
                out.append(m.archive_study_to_imaging_study(s, ref, s["series"], s["instances"], s["order"], self.tz))
            elif kind == "o" and pk in orders:
                o = orders[pk]
                out.append(m.order_to_imaging_study(o, o["steps"], f"Patient/{self._order_patient_id(o)}", self.tz))
        return out

    def _order_patient_id(self, order: dict[str, Any]) -> str:
        if order.get("archive_patient"):
            return str(order["archive_patient"])
        rid = m.patient_resource_id(order["patient_id"], order["issuer_of_patient_id"], archived=False)
        self._remember(rid, order["patient_id"], order["issuer_of_patient_id"])
        return rid

    def _remember(self, rid: str, patient_id: str, issuer: str) -> None:
        with self._lock:
            if len(self._ids) >= self._cache_size:
                self._ids.clear()
            self._ids[rid] = (patient_id, issuer)

    # ------------------------------------------------------------------ Patient
    def _resolve(self, rid: str) -> _Resolved | None:
        rows = self.repo.archive_patients(public_ids=[rid])
        if rows:
            return _Resolved("archive", rows[0])
        for merge in self.repo.merges():
            prior, issuer = merge["prior_patient_id"], merge["prior_issuer"]
            if rid in (orthanc_id(prior), orthanc_id(prior, issuer)) and rid == self._retired_id(merge):
                return _Resolved("merged", merge, self._identity_id(merge["patient_id"], merge["issuer"]))
        with self._lock:
            known = self._ids.get(rid)
        candidates = [known] if known else [k for k in self.repo.order_identities() if orthanc_id(*k) == rid]
        for pid, issuer in candidates:
            found = self.repo.order_patients(identities=[(pid, issuer)])
            if found:
                self._remember(rid, pid, issuer)
                return _Resolved("order", found[0])
        return None

    def _retired_id(self, merge: dict[str, Any]) -> str:
        """The id of an identity retired by ADT^A40: the one it had before the merge (module docstring)."""
        prior, issuer = merge["prior_patient_id"], merge["prior_issuer"]
        archive_id = orthanc_id(prior)
        if self.repo.archive_patients(public_ids=[archive_id]):  # that record lives on (renamed: the survivor)
            return orthanc_id(prior, issuer)
        for row in self.repo.archive_patients(patient_ids=[merge["patient_id"]]):
            if any(sid == orthanc_id(prior, uid) for sid, uid in self.repo.archive_study_ids(row["pk"])):
                return archive_id  # a stored patient whose studies moved to the survivor
        return orthanc_id(prior, issuer)

    def _replaces(self, patient_id: str, issuer: str | None) -> list[str]:
        """Ids of the identities merged into this one (``issuer`` None: any, for archive patients)."""
        return list(dict.fromkeys(self._retired_id(mg) for mg in self.repo.merges(survivor_ids=[patient_id])
                                  if mg["patient_id"] == patient_id and issuer in (None, mg["issuer"])))

    def patient_id_for(self, patient_id: str, issuer: str) -> str:
        """The Patient resource id of a DICOM Patient ID (+ issuer): the archive's when it has one."""
        return self._identity_id(patient_id, issuer)

    def _identity_id(self, patient_id: str, issuer: str) -> str:
        rows = self.repo.archive_patients(patient_ids=[patient_id])
        return str(rows[0]["public_id"]) if rows else m.patient_resource_id(patient_id, issuer, archived=False)

    def _patient(self, found: _Resolved, rid: str) -> Json:
        row = found.row
        if found.kind == "archive":
            attrs = json.loads(row["order_attrs"]) if row.get("order_attrs") else None
            return m.archive_patient_to_patient(row, row.get("order_issuer") or "", attrs,
                                                self._replaces(row["patient_id"], None))
        if found.kind == "merged":
            return m.merged_patient(rid, row["prior_patient_id"], row["prior_issuer"], found.survivor, row["merged_at"],
                                    self.repo.issuer_qualifiers(row["prior_issuer"]))
        oid = m.patient_resource_id(row["patient_id"], row["issuer_of_patient_id"], archived=False)
        self._remember(oid, row["patient_id"], row["issuer_of_patient_id"])
        return m.patient_from_attrs(oid, row["patient_id"], row["issuer_of_patient_id"],
                                    json.loads(row["patient_attrs"]), row["updated_at"],
                                    self._replaces(row["patient_id"], row["issuer_of_patient_id"]))

    def read_patient(self, rid: str) -> Json | None:
        found = self._resolve(rid)
        return None if found is None else self._patient(found, rid)

    def patients_by_reference(self, refs: Sequence[str]) -> list[Json]:
        """The Patients that ``Patient/<id>`` references name (for ``_include``), each once."""
        out: list[Json] = []
        for rid in dict.fromkeys(r.split("/", 1)[1] for r in refs if r.startswith("Patient/")):
            found = self._resolve(rid)
            if found is not None:
                out.append(self._patient(found, rid))
        return out

    def search_patients(self, c: PatientCriteria, offset: int, count: int, *, descending: bool = False
                        ) -> SearchResult:
        """Archive patients (SQL), order-only patients (SQL on ID and name, then birth date and gender
        on their patient module), the identifiers (every one the resource shows, with its system) and
        ``name:exact`` (case and accents as sent, R4 search.html#string) checked on the built resources, and,
        for _id/identifier searches, identities retired by a merge. Ordered by id (``descending``: -_id)."""
        found = [p for p in (self._patient(_Resolved("archive", r), r["public_id"])
                             for r in self.repo.archive_patients(c)) if _identifiers_match(p, c)]
        found += [p for p in (self._patient(_Resolved("order", r), "") for r in self.repo.order_patients(c))
                  if _patient_matches(p, c, self.tz)]
        if not c.names and not c.birthdate and not c.genders and (c.ids or c.identifiers):
            retired: dict[str, _Resolved] = {}
            for rid in {i for g in c.ids for i in g}:
                hit = self._resolve(rid)
                if hit is not None and hit.kind == "merged":
                    retired[rid] = hit
            wanted = {v for g in c.identifiers for _, v in g}
            for merge in self.repo.merges(sorted(wanted)) if wanted else []:
                retired.setdefault(self._retired_id(merge), _Resolved(
                    "merged", merge, self._identity_id(merge["patient_id"], merge["issuer"])))
            seen = {x["id"] for x in found}
            for rid, hit in retired.items():
                p = self._patient(hit, rid)
                if rid not in seen and _patient_matches(p, c, self.tz):
                    found.append(p)
        if c.exact_names:
            found = [p for p in found if all(any(v in _name_parts(p) for v in g) for g in c.exact_names)]
        found.sort(key=lambda p: p["id"], reverse=descending)
        return SearchResult(found[offset:offset + count] if count > 0 else [], len(found))


def _patient_matches(p: Json, c: PatientCriteria, tz: tzinfo | None) -> bool:
    """The criteria SQL could not apply to a Patient built from an order or a merge."""
    if not _identifiers_match(p, c):
        return False
    if any(p["id"] not in g for g in c.ids):
        return False
    gender = {"male": "M", "female": "F", "other": "O"}.get(p.get("gender", ""), "")
    if any(gender not in g for g in c.genders):
        return False
    if c.names:
        from mappings.dicom_to_index import normalize_name

        parts = [normalize_name(x) or "" for x in _name_parts(p)]
        for g in c.names:
            if not any(_string_match(parts, mod, v) for mod, v in g):
                return False
    if c.birthdate:
        birth = p.get("birthDate")
        if not birth or len(birth) != 10:
            return False
        low = datetime.combine(date.fromisoformat(birth), datetime.min.time())
        if not all(any(date_matches(low, low + timedelta(days=1), q) for q in g) for g in c.birthdate):
            return False
    return True


def _name_parts(p: Json) -> list[str]:
    """Every family, given, prefix and suffix of the Patient's names, as shown."""
    return [x for n in p.get("name", []) for x in
            [n.get("family", ""), *n.get("given", []), *n.get("prefix", []), *n.get("suffix", [])] if x]


def _identifiers_match(p: Json, c: PatientCriteria) -> bool:
    return all(any(has_identifier(p, system, code) for system, code in g) for g in c.identifiers)


def has_identifier(patient: Json, system: str | None, code: str) -> bool:
    """R4 search.html#token on Patient.identifier: ``code`` any system, ``|code`` none, ``system|code`` both
    (the issuer's local namespace, shown as the assigner, is accepted as a system too)."""
    for ident in patient.get("identifier", []):
        if ident.get("value") != code:
            continue
        if system is None or system == ident.get("system", "") or (
                system and system == ident.get("assigner", {}).get("display")):
            return True
    return False


def _string_match(parts: list[str], modifier: str, value: str) -> bool:
    if modifier == "exact":
        return value in parts
    if modifier == "contains":
        return any(value in x for x in parts)
    return any(x.startswith(value) or any(w.startswith(value) for w in x.split(" ")) for x in parts)


def date_matches(low: datetime, high: datetime, q: DateParam) -> bool:
    """FHIR date prefix semantics on a resource value ``[low, high)`` (same rule as the SQL)."""
    return {"eq": q.low <= low < q.high, "ne": not (q.low <= low < q.high), "ge": low >= q.low, "gt": low >= q.high,
            "sa": low >= q.high, "le": low < q.high, "lt": low < q.low, "eb": low < q.low}[q.prefix]
