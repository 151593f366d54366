"""FHIR R4 ServiceRequest (and ImagingStudy ``registered``) writes over the order service (issue 7;
mapping-reference §3.3, §2.4; FHIR R4 RESTful API 3.1.0: create, conditional create, update, If-Match).

A created ServiceRequest is an order like an HL7 ORM/OMI one (``OrderUnit.apply_order``, sender ``fhir``):
its worklist item answers MWL C-FIND as soon as ``create`` returns. ``meta.versionId`` is the order's version
counter, bumped on every change. Status changes on update: ``revoked`` cancels the steps not yet final (a
started one is discontinued), ``completed`` completes them, ``on-hold`` takes the waiting items off the
worklist, ``active`` puts them back; a completed or revoked order cannot be reopened, and a completed one
cannot be revoked (422).

A create is one transaction of few statements: the ``If-None-Exist`` lookup, the INSERT of the order (which
also returns the archive patient of its Patient ID, for the subject reference) and the INSERT of its step;
the answer is built from the rows as written, not read back, and sent after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from hub.domain.orders import OrderAction, OrderCommand, StepStatus
from hub.errors import HubError
from hub.store.db import Database
from hub.store.fhir_orders import MAX_CANDIDATES, FhirOrderStore
from hub.store.orders import OrderRepository, OrderUnit
from mappings.ascii import row_id
from mappings.dicom_to_fhir import patient_resource_id, version_of
from mappings.fhir_to_order import FhirOrderPolicy, parse_identifier_token, service_request_to_order
from mappings.fhir_values import DICOM_UID_SYSTEM, FhirInputError, date_range
from mappings.imaging_study_to_order import imaging_study_to_order
from mappings.order_to_fhir import etag_matches, order_to_service_request, service_request_status

log = logging.getLogger(__name__)
SENDER = "fhir"
Row = Mapping[str, Any]
DateTerm = tuple[str, str]  # (FHIR date prefix, date value)
_ERRORS = {"required": "missing_attribute", "business-rule": "business_rule"}
_CLOSED = {"completed", "revoked", "entered-in-error"}


def imaging_study_version(order: Row, steps: list[Row]) -> str:
    """The ``meta.versionId`` of the ImagingStudy an order without images reads as (``order_to_imaging_study``)."""
    return version_of(max([order["updated_at"], *(s["updated_at"] for s in steps)]))


def hub_error(err: FhirInputError) -> HubError:
    """FhirInputError (IssueType) -> HubError: required -> 400 missing, business-rule -> 422, else 400."""
    return HubError(_ERRORS.get(err.code, "invalid_attribute"), err.diagnostics, attribute=err.expression)


def default_patient_ref(order: Row) -> str:
    """``Patient/<id>`` as the FHIR read side names the patient of an order (``FhirService.patient_id_for``):
    the archive's patient of that Patient ID when the row says it has one (``archive_patient``), else the
    order-only id (SHA-1 of ``PatientID|issuer``)."""
    archived = order.get("archive_patient")
    if archived:
        return f"Patient/{archived}"
    pid, issuer = str(order["patient_id"]), str(order["issuer_of_patient_id"])
    return f"Patient/{patient_resource_id(pid, issuer, archived=False)}"


class FhirOrderService:
    """ServiceRequest create / conditional create / update / read / search; ImagingStudy ``registered``."""

    def __init__(self, orders: OrderRepository, db: Database, policy: FhirOrderPolicy | None = None, *,
                 patient_ref: Callable[[Row], str] = default_patient_ref,
                 patient_lookup: Callable[[str], dict[str, Any] | None] | None = None) -> None:
        self.store = FhirOrderStore(db, orders)
        self.policy = policy or FhirOrderPolicy()
        self.patient_ref = patient_ref  # for rows without the store's ``archive_patient`` column
        self.patient_lookup = patient_lookup  # "Patient/<id>" -> Patient resource (the HTTP layer's resolver)

    # ------------------------------------------------------------------ representation
    def render(self, order: Row, steps: list[Row]) -> dict[str, Any]:
        """The ServiceRequest of an order row and its steps; the store's rows carry ``archive_patient``, which
        names the subject without a query (the rule of ``default_patient_ref``)."""
        ref = default_patient_ref(order) if "archive_patient" in order else self.patient_ref(order)
        return order_to_service_request(order, list(steps), ref, self.policy.issuers)

    def _patient(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        subject = resource.get("subject")
        if not isinstance(subject, dict):  # absent or not a Reference: the mapper's validation reports it
            return None
        ref = subject.get("reference")
        if not isinstance(ref, str) or not ref or ref.startswith("#") or self.patient_lookup is None:
            return None
        found = self.patient_lookup(ref)
        if found is None and not subject.get("identifier"):
            where = f"{resource.get('resourceType')}.subject"
            raise HubError("business_rule", "the subject Patient is unknown", attribute=where)
        return found

    def _map(self, resource: Any, kind: str = "ServiceRequest") -> OrderCommand:  # noqa: ANN401 - parsed JSON
        if not isinstance(resource, dict) or resource.get("resourceType") != kind:
            raise HubError("invalid_attribute", f"a {kind} resource is required", attribute="resourceType")
        mapper = service_request_to_order if kind == "ServiceRequest" else imaging_study_to_order
        try:
            return mapper(resource, self._patient(resource), self.policy)
        except FhirInputError as err:
            raise hub_error(err) from None

    # ------------------------------------------------------------------ create
    def create(self, resource: Any, if_none_exist: str | None = None) -> tuple[dict[str, Any], bool]:  # noqa: ANN401
        """POST: (the ServiceRequest as stored, True), or with ``If-None-Exist: identifier=[system|]value``
        the one existing match (False); several matches -> 412; an existing order of the same study -> 409."""
        return self._create(self._map(resource), if_none_exist)

    def schedule_imaging_study(self, resource: Any,  # noqa: ANN401 - parsed JSON
                               if_none_exist: str | None = None) -> tuple[dict[str, Any], bool]:
        """POST ImagingStudy with status ``registered``: schedules its study (same path as HL7 orders) and
        returns the order as a ServiceRequest and True. A study that already has an order is 409, as for
        POST ServiceRequest (R4 http.html#create makes a new resource; changing one is PUT, with its scope and
        ``If-Match``), unless ``If-None-Exist`` finds it: then that order, unchanged, and False."""
        cmd = self._map(resource, "ImagingStudy")
        if cmd.action is not OrderAction.CREATE:
            raise HubError("business_rule", "only an ImagingStudy with status registered can be created",
                           attribute="ImagingStudy.status")
        return self._create(cmd, if_none_exist, conflict_at="ImagingStudy.identifier")

    def update_imaging_study(self, pk: int, resource: Any, if_match: str | None = None) -> dict[str, Any]:  # noqa: ANN401
        """PUT ImagingStudy/o-<pk>: reschedule (``registered``) or cancel (``cancelled``/``entered-in-error``)
        that order, and no other. Every check is made on the locked order before anything changes (R4
        http.html#update): 404 unknown, 412 when ``If-Match`` names another ImagingStudy version, 409 when the
        body's Study UID is another study's; a body without one keeps the order's. Returns the ServiceRequest."""
        cmd = self._map(resource, "ImagingStudy")
        return self._change(pk, cmd, resource, if_match, str(resource.get("status")),
                            version=imaging_study_version, other_study=("conflict", "ImagingStudy.identifier"))

    def _create(self, cmd: OrderCommand, if_none_exist: str | None, *,
                conflict_at: str = "ServiceRequest.identifier", retry: bool = True) -> tuple[dict[str, Any], bool]:
        if cmd.action is not OrderAction.CREATE and cmd.order_status != "HD":
            raise HubError("business_rule", "a new order must be active or on-hold", attribute="ServiceRequest.status")
        token = self._condition(if_none_exist) if if_none_exist else None

        class Existing(Exception):  # rolls the transaction back; the order is read afterwards
            def __init__(self, pk: int) -> None:
                self.pk = pk

        def work(unit: OrderUnit) -> tuple[dict[str, Any], list[dict[str, Any]] | None, bool]:
            """(a ServiceRequest, None, False) for an If-None-Exist match, else (order row, its steps, created)."""
            if token is not None:  # in the same transaction: no round trips of a transaction of its own
                found = self._conditional(token, unit)
                if found is not None:
                    return found, None, False
            # One statement fewer than checking first: apply, and undo when the study had an order.
            pk = unit.apply_order(cmd, SENDER)
            if unit.inserted is not None:  # new: the answer is what was written (committed before it is sent)
                order, steps = unit.inserted
                return order, sorted(steps, key=lambda s: str(s["sps_id"])), True
            if token is not None:  # rolled back; the order as committed decides (below)
                raise Existing(pk)
            raise HubError("conflict", "an order for this study exists: use If-None-Exist or update",
                           attribute=conflict_at)

        try:
            row, steps, created = self.store.write(work)
        except Existing as found:  # the study has an order the condition did not find when it looked
            existing = self.read(str(found.pk))
            if token is not None and self._shows(existing, *self._token(token)):
                return existing, False  # an identical create committed meanwhile: that is the match (http.html#ccreate)
            raise HubError("conflict", "an order for this study exists and does not match If-None-Exist",
                           attribute=conflict_at) from None
        except HubError as exc:
            if exc.code == "conflict" and retry and if_none_exist:
                return self._create(cmd, if_none_exist, conflict_at=conflict_at, retry=False)
            raise
        resource = row if steps is None else self.render(row, steps)  # rendered after the commit (lock released)
        log.info("FHIR order %s (id %s)", "created" if created else "found", resource["id"])
        return resource, created

    @staticmethod
    def _condition(query: str) -> str:
        """``If-None-Exist: identifier=[system|]value`` -> the token, URL-decoded as the query string it is
        (R4 http.html#ccreate: ``identifier=urn%3Aoid%3A...%7CA1`` is ``urn:oid:...|A1``); 400 for anything else."""
        pairs = parse_qsl(query.strip().lstrip("?"), keep_blank_values=True)
        if len(pairs) != 1 or pairs[0][0] != "identifier" or not pairs[0][1]:
            raise HubError("invalid_query_value", "If-None-Exist supports identifier=[system|]value only",
                           attribute="If-None-Exist")
        return pairs[0][1]

    def _conditional(self, token: str, unit: OrderUnit) -> dict[str, Any] | None:
        system, value = self._token(token)
        matches = self._matching(system, value, self.store.by_identifier(unit.conn, value))
        if len(matches) > 1:
            raise HubError("precondition_failed", "If-None-Exist matches several orders", attribute="If-None-Exist")
        return matches[0] if matches else None

    def _by_identifier(self, token: str, **params: Any) -> list[dict[str, Any]]:  # noqa: ANN401
        system, value = self._token(token)
        rows, _ = self.store.search(identifier_value=value, count=MAX_CANDIDATES, **params)
        return self._matching(system, value, rows)

    @staticmethod
    def _token(token: str) -> tuple[str | None, str]:
        system, value = parse_identifier_token(token)
        return system, value.removeprefix("urn:oid:") if system == DICOM_UID_SYSTEM else value

    def _matching(self, system: str | None, value: str,
                  rows: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> list[dict[str, Any]]:
        """The rendered orders among ``rows`` that show an identifier ``value`` of ``system`` (None: any)."""
        rendered = (self.render(order, steps) for order, steps in rows)
        return [r for r in rendered if self._shows(r, system, value)]

    @staticmethod
    def _shows(resource: dict[str, Any], system: str | None, value: str) -> bool:
        """Whether the ServiceRequest has an identifier ``value`` of ``system`` (None: any)."""
        return any((system is None or str(i.get("system") or "") == system)
                   and i["value"].removeprefix("urn:oid:") == value for i in resource["identifier"])

    # ------------------------------------------------------------------ update / read
    def update(self, id: str, resource: Any, if_match: str | None = None) -> dict[str, Any]:  # noqa: ANN401, A002
        """PUT ServiceRequest/<id>: 404 unknown, 412 when ``If-Match`` names another version, 409 when the
        resource names another id or study, 422 for a transition the order cannot make."""
        pk = self._pk(id)
        if isinstance(resource, dict) and resource.get("id") not in (None, id):
            raise HubError("invalid_attribute", "the resource id differs from the URL", attribute="ServiceRequest.id")
        cmd = self._map(resource)
        return self._change(pk, cmd, resource, if_match, str(resource.get("status")))

    def _change(self, pk: int | None, cmd: OrderCommand, resource: dict[str, Any], if_match: str | None,
                target: str, *, version: Callable[[Row, list[Row]], str] = lambda order, _: str(order["version"]),
                other_study: tuple[str, str] = ("business_rule", "ServiceRequest.identifier")) -> dict[str, Any]:
        explicit_uid = any(i.get("system") == DICOM_UID_SYSTEM for i in resource.get("identifier") or [])
        target = {"cancelled": "revoked", "registered": "active"}.get(target, target)

        def work(unit: OrderUnit) -> dict[str, Any]:
            loaded = self.store.load(unit.conn, pk=pk, study_uid=cmd.study_uid, lock=True)
            if loaded is None:
                raise HubError("unknown_resource", "no such ServiceRequest")
            order, steps = loaded
            if if_match is not None and not etag_matches(if_match, version(order, steps)):
                raise HubError("precondition_failed", "If-Match does not name the current version",
                               attribute="If-Match")
            if explicit_uid and cmd.study_uid != order["study_uid"]:
                raise HubError(other_study[0], "the Study Instance UID of an order cannot change",
                               attribute=other_study[1])
            current = service_request_status(str(order["status"]), [str(s["status"]) for s in steps])
            new = self._transition(cmd, current, target, order, steps)
            if new is not None:
                unit.apply_order(new, SENDER)
            reloaded = self.store.load(unit.conn, pk=int(order["pk"]))
            assert reloaded is not None
            return self.render(*reloaded)

        result = self.store.write(work)
        log.info("FHIR order %s updated to version %s", result["id"], result["meta"]["versionId"])
        return result

    @staticmethod
    def _transition(cmd: OrderCommand, current: str, target: str, order: Row,
                    steps: list[Row]) -> OrderCommand | None:
        """The order command that moves ``current`` to ``target`` (None: nothing to change)."""
        if current in _CLOSED and target != current and target != "entered-in-error":
            raise HubError("business_rule", f"a {current} order cannot become {target}",
                           attribute="ServiceRequest.status")
        if current in _CLOSED and target == current:
            return None
        cmd = replace(cmd, study_uid=str(order["study_uid"]),
                      attrs={**cmd.attrs, "0020000D": {"vr": "UI", "Value": [order["study_uid"]]}})
        if target in ("active", "on-hold"):
            if len(steps) == 1 and cmd.steps:  # one step: keep its SPS ID (an HL7-made one may differ)
                step = cmd.steps[0]
                attrs = {**step.attrs, "00400009": {"vr": "SH", "Value": [steps[0]["sps_id"]]}}
                cmd.steps = [replace(step, sps_id=str(steps[0]["sps_id"]), attrs=attrs)]
            return replace(cmd, action=OrderAction.UPDATE, control="XO" if target == "active" else "HD",
                           order_status="SC" if target == "active" else "HD")
        started = any(s["status"] in (StepStatus.STARTED.value, StepStatus.DEPARTED.value) for s in steps)
        if target == "revoked" and started:
            return replace(cmd, action=OrderAction.DISCONTINUE, control="DC", order_status="DC", steps=[])
        if target == "completed":
            step = replace(cmd.steps[0], sps_id="") if cmd.steps else None
            return replace(cmd, steps=[step] if step else [])
        return replace(cmd, steps=[])  # revoked / entered-in-error: the open steps are flagged CANCELED

    def read(self, id: str) -> dict[str, Any]:  # noqa: A002 - FHIR logical id
        """GET ServiceRequest/<id> (404 when unknown)."""
        pk = self._pk(id)
        with self.store.read() as conn:
            loaded = self.store.load(conn, pk=pk)
        if loaded is None:
            raise HubError("unknown_resource", "no such ServiceRequest")
        return self.render(*loaded)

    @staticmethod
    def _pk(id: str) -> int:  # noqa: A002
        pk = row_id(id)
        if pk is None:
            raise HubError("unknown_resource", "no such ServiceRequest")
        return pk

    # ------------------------------------------------------------------ search
    def search(self, patient_id: str | None = None, identifier: str | None = None, status: str | None = None,
               authored: Sequence[DateTerm | Sequence[DateTerm]] | None = None, count: int = 50, offset: int = 0, *,
               patient_issuer: str | None = None, patients: Sequence[tuple[str, str | None]] | None = None,
               ids: Sequence[Sequence[str]] = ()) -> tuple[list[dict[str, Any]], int]:
        """ServiceRequests by DICOM Patient ID (+ issuer; ``patients``: any of several), identifier token
        ``[system|]value``, status (comma-separated = OR), authored ``[(prefix, date)]`` (AND; an item that is a
        list of them is an OR group, R4 search.html#combining), ``ids`` (``_id``: AND of OR lists; an id that
        cannot be an order's matches nothing); returns (page, total)."""
        statuses = [s.strip() for s in status.split(",") if s.strip()] if status else None
        try:
            groups = [[term] if term and isinstance(term[0], str) else list(term) for term in authored or []]
            ranges = [[(p, *date_range(v)) for p, v in group] for group in groups]
        except FhirInputError as err:
            raise HubError("invalid_query_value", err.diagnostics, attribute="authored") from None
        params: dict[str, Any] = dict(patient_id=patient_id, issuer=patient_issuer, status=statuses,
                                      authored=ranges, patients=list(patients) if patients is not None else None,
                                      pks=[[pk for i in group if (pk := row_id(i)) is not None] for group in ids])
        if identifier is not None:
            matches = self._by_identifier(identifier, **params)
            return matches[offset:offset + count], len(matches)
        rows, total = self.store.search(count=count, offset=offset, **params)
        return [self.render(o, s) for o, s in rows], total

