"""FHIR R4 RESTful rules over HTTP on the real app (interfaces/http/fhir/service_request.py, common.py,
hub/services/fhir_orders.py): a refused update changes nothing (http.html#update), If-Match as RFC 9110
13.1.1 reads it, and 405 for a PUT to an id that does not exist (``updateCreate: false``)."""

from __future__ import annotations

from typing import Any

from hub.domain.query import Condition, Match
from tests.integration.fhir_http import ACC, Client, FhirWorld, order

DICOM_UID = "urn:dicom:uid"


def _study_of(system: Client, acc: str) -> tuple[dict[str, Any], str]:
    sr = system.send("GET", f"ServiceRequest?identifier={ACC}|{acc}").get_json()["entry"][0]["resource"]
    resp = system.send("GET", f"ImagingStudy/o-{sr['id']}")
    assert resp.status_code == 200
    return resp.get_json(), resp.headers["ETag"]


def _items(system: Client, acc: str | None = None) -> list[Any]:
    where = [Condition("AccessionNumber", Match.SINGLE, acc)] if acc else []
    return list(system.hub.worklist.find(where))


def _uid(study: dict[str, Any]) -> str:
    return next(i["value"] for i in study["identifier"] if i.get("system") == DICOM_UID)


def test_imaging_study_update_changes_only_the_study_of_its_url(fhir: FhirWorld) -> None:
    """A body without a Study UID keeps the order's; one naming another order's study is 409 and neither
    order changes (the check used to run after the write had been committed)."""
    system, _, _ = fhir
    mine, etag = _study_of(system, "H-1")
    theirs, _ = _study_of(system, "H-2")
    before = len(_items(system))
    no_uid = {**mine, "identifier": [i for i in mine["identifier"] if i.get("system") != DICOM_UID]}
    done = system.send("PUT", f"ImagingStudy/{mine['id']}", no_uid, **{"If-Match": etag})
    assert done.status_code == 200, done.get_data(as_text=True)
    assert _uid(done.get_json()) == _uid(mine) and done.get_json()["status"] == "registered"
    assert len(_items(system)) == before  # rescheduled in place: no new order, no new worklist item

    other = {**mine, "identifier": [*no_uid["identifier"], {"system": DICOM_UID, "value": _uid(theirs)}],
             "status": "cancelled"}
    refused = system.send("PUT", f"ImagingStudy/{mine['id']}", other)
    assert refused.status_code == 409, refused.get_data(as_text=True)
    assert refused.get_json()["issue"][0]["code"] == "conflict"
    assert system.send("GET", f"ImagingStudy/{theirs['id']}").get_json()["status"] == "registered"
    assert system.send("GET", f"ImagingStudy/{mine['id']}").get_json()["status"] == "registered"
    assert len(_items(system, "H-1")) == 1 and len(_items(system, "H-2")) == 1


def test_if_match_forms(fhir: FhirWorld) -> None:
    """If-Match takes the weak ETag as sent, the bare quoted version, a list of tags and ``*``; a stale one is
    412 and changes nothing, for ImagingStudy as for ServiceRequest."""
    system, _, _ = fhir
    study, etag = _study_of(system, "H-1")
    stale = system.send("PUT", f"ImagingStudy/{study['id']}", {**study, "status": "cancelled"}, **{"If-Match": 'W/"1"'})
    assert stale.status_code == 412 and system.send("GET", f"ImagingStudy/{study['id']}").get_json()["status"] == \
        "registered"
    strong = etag.removeprefix("W/")
    assert system.send("PUT", f"ImagingStudy/{study['id']}", study, **{"If-Match": strong}).status_code == 200
    study, etag = _study_of(system, "H-1")
    listed = system.send("PUT", f"ImagingStudy/{study['id']}", study, **{"If-Match": f'W/"1", {etag}'})
    assert listed.status_code == 200, listed.get_data(as_text=True)
    study, _ = _study_of(system, "H-1")
    assert system.send("PUT", f"ImagingStudy/{study['id']}", {**study, "status": "cancelled"},
                       **{"If-Match": "*"}).status_code == 200
    assert _items(system, "H-1") == []

    sr = system.send("GET", f"ServiceRequest?identifier={ACC}|H-2").get_json()["entry"][0]["resource"]
    tags = f'W/"0", "{sr["meta"]["versionId"]}"'
    revoked = system.send("PUT", f"ServiceRequest/{sr['id']}", {**sr, "status": "revoked"}, **{"If-Match": tags})
    assert revoked.status_code == 200 and revoked.get_json()["status"] == "revoked"


def test_put_to_an_unknown_id_is_405(fhir: FhirWorld) -> None:
    system, client, ids = fhir
    sr = system.send("GET", f"ServiceRequest?identifier={ACC}|H-1").get_json()["entry"][0]["resource"]
    study, _ = _study_of(system, "H-1")
    for path, body in ((f"ServiceRequest/{10**6}", {**sr, "id": str(10**6)}),
                       ("ServiceRequest/not-a-number", {**sr, "id": "not-a-number"}),
                       ("ImagingStudy/o-999999", {**study, "id": "o-999999"})):
        resp = system.send("PUT", path, body)
        assert resp.status_code == 405, (path, resp.get_data(as_text=True))
        assert resp.get_json()["issue"][0]["code"] == "not-supported"
    # Another patient's study is unknown to a patient-context token: the same answer, nothing changed.
    other = client("launch/patient patient/ImagingStudy.cruds", patient=ids["P2"])
    own_subject = {**study, "status": "cancelled", "subject": {"reference": f"Patient/{ids['P2']}"}}
    assert other.send("PUT", f"ImagingStudy/{study['id']}", own_subject).status_code == 405
    assert system.send("GET", f"ImagingStudy/{study['id']}").get_json()["status"] == "registered"


def test_post_imaging_study_of_a_scheduled_study_is_409(fhir: FhirWorld) -> None:
    """POST creates (R4 http.html#create): an ImagingStudy POSTed for a study that already has an order is 409
    and reschedules nothing; the change needs PUT, its update scope and If-Match. If-None-Exist that finds
    the order answers it unchanged with 200. (POST used to upsert the order, past both checks.)"""
    system, client, _ = fhir
    study, _ = _study_of(system, "H-1")
    (before,) = _items(system, "H-1")
    moved = {k: v for k, v in study.items() if k not in ("id", "meta")} | {"started": "2032-07-08T10:00:00Z"}
    creator = client("system/ImagingStudy.c system/Patient.r")
    for who in (system, creator):
        refused = who.send("POST", "ImagingStudy", moved)
        assert refused.status_code == 409, refused.get_data(as_text=True)
        assert refused.get_json()["issue"][0]["code"] == "conflict"
    (after,) = _items(system, "H-1")
    assert after["start_date"] == before["start_date"] != "20320708"

    found = system.send("POST", "ImagingStudy", moved, **{"If-None-Exist": f"identifier={DICOM_UID}|{_uid(study)}"})
    assert found.status_code == 200, found.get_data(as_text=True)
    assert found.get_json()["id"] == study["id"] and found.get_json()["meta"] == study["meta"]
    assert _items(system, "H-1")[0]["start_date"] == before["start_date"]


def test_if_none_exist_that_misses_an_existing_order_is_409(fhir: FhirWorld) -> None:
    """R4 http.html#ccreate: no match -> the create is made; when its study already has an order that the
    condition does not name, that is a conflict, not that other order as if it had matched."""
    system, _, _ = fhir
    study, _ = _study_of(system, "H-1")
    body = {k: v for k, v in study.items() if k not in ("id", "meta")}
    again = system.send("POST", "ImagingStudy", body, **{"If-None-Exist": f"identifier={ACC}|NOT-H-1"})
    assert again.status_code == 409, again.get_data(as_text=True)
    twin = order("H-1", "P1")
    resp = system.send("POST", "ServiceRequest", twin, **{"If-None-Exist": f"identifier={ACC}|OTHER"})
    assert resp.status_code == 409, resp.get_data(as_text=True)
    same = system.send("POST", "ServiceRequest", twin, **{"If-None-Exist": f"identifier={ACC}|H-1"})
    assert same.status_code == 200 and same.get_json()["identifier"][0]["value"] == "H-1"
