"""FHIR R4 search and read rules over HTTP on the real app (interfaces/http/fhir/common.py, patient.py,
service_request.py, interfaces/http/app.py): authentication errors as OperationOutcome, ``POST _search``,
empty parameters ignored, per-parameter modifiers, ``patient:identifier`` on ServiceRequest, ``_sort=-_id``,
``name:exact``, vread of the current version, the version headers of every ``Prefer: return=`` and an
URL-encoded ``If-None-Exist``."""

from __future__ import annotations

from typing import Any

from tests.integration.fhir_http import ACC, FHIR_JSON, FhirWorld, order


def _ids(resp: Any) -> list[str]:  # noqa: ANN401 - a Flask test response
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [e["resource"]["id"] for e in resp.get_json().get("entry", []) if e["search"]["mode"] == "match"]


def _accessions(resp: Any) -> set[str]:  # noqa: ANN401
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {i["value"] for e in resp.get_json().get("entry", []) for i in e["resource"]["identifier"]
            if i.get("system") == ACC}


def test_authentication_errors_under_fhir_are_operation_outcomes(fhir: FhirWorld) -> None:
    system, client, _ = fhir
    for auth in ({}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic YWRtaW46d3Jvbmc="}):
        resp = system.http.get("/fhir/Patient", headers={"Accept": FHIR_JSON, **auth})
        assert resp.status_code == 401 and resp.mimetype == FHIR_JSON
        assert "Bearer" in resp.headers["WWW-Authenticate"]
        body = resp.get_json()
        system.r4.check(body)
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "login"
    # The REST API keeps its own error shape.
    rest = system.http.get("/patients")
    assert rest.status_code == 401 and "resourceType" not in (rest.get_json() or {})
    # A caller with the plain user role learns that FHIR does not do it (405/404), not that it lacks admin.
    reader = client("system/*.rs")
    for method, path, status in (("DELETE", "ServiceRequest/1", 405), ("POST", "Patient", 405),
                                 ("PATCH", "ImagingStudy/x", 405), ("POST", "Observation", 404)):
        resp = reader.send(method, path, {"resourceType": "Patient"})
        assert resp.status_code == status, (method, path, resp.get_data(as_text=True))
        assert resp.get_json()["resourceType"] == "OperationOutcome"


def test_post_search_is_the_get_search(fhir: FhirWorld) -> None:
    """R4 http.html#search: POST [type]/_search with form parameters, merged with the URL's."""
    system, client, ids = fhir
    assert _accessions(system.search_form("ServiceRequest/_search", {"identifier": f"{ACC}|H-1"})) == {"H-1"}
    merged = system.search_form("ServiceRequest/_search?status=active", {"patient": f"Patient/{ids['P2']}"})
    assert _accessions(merged) == {"H-2"}
    assert _accessions(system.search_form("ServiceRequest/_search", "")) == {"H-1", "H-2"}
    studies = system.search_form("ImagingStudy/_search?_count=1", {"patient": f"Patient/{ids['P1']}"})
    assert len(_ids(studies)) == 1 and studies.get_json()["total"] == 1
    assert "_count=1" in studies.get_json()["link"][0]["url"]
    assert _ids(system.search_form("Patient/_search", {"_id": ids["P2"]})) == [ids["P2"]]
    assert len(_ids(system.search_form("Endpoint/_search", {}))) == 1
    pretty = system.search_form("Patient/_search", {"_pretty": "true", "_id": ids["P1"]})
    assert pretty.get_data(as_text=True).startswith("{\n")
    # A patient-context token searches within its patient, as with GET.
    own = client("launch/patient patient/ServiceRequest.rs", patient=ids["P1"])
    assert _accessions(own.search_form("ServiceRequest/_search", {"status": "active"})) == {"H-1"}

    unknown = system.search_form("ServiceRequest/_search", {"colour": "blue"})
    assert unknown.status_code == 400 and unknown.get_json()["issue"][0]["code"] == "not-supported"
    json_body = system.http.post("/fhir/ServiceRequest/_search", data='{"identifier": "x"}', headers={
        "Authorization": system.authorization, "Accept": FHIR_JSON, "Content-Type": "application/json"})
    assert json_body.status_code == 415 and json_body.get_json()["resourceType"] == "OperationOutcome"
    assert system.search_form("Observation/_search", {}).status_code == 404


def test_empty_parameters_are_ignored(fhir: FhirWorld) -> None:
    """R4 search.html: a parameter without a value is ignored, not a search for nothing."""
    system, _, _ = fhir
    everything = _ids(system.send("GET", "ImagingStudy"))
    assert len(everything) == 2
    assert _ids(system.send("GET", "ImagingStudy?modality=&status=&_count=")) == everything
    assert _ids(system.send("GET", "ImagingStudy?modality=,")) == everything
    assert _accessions(system.send("GET", "ServiceRequest?status=&patient=&identifier=")) == {"H-1", "H-2"}
    assert len(_ids(system.send("GET", "Patient?name=&birthdate="))) == 2
    # A value still narrows next to an empty one.
    assert _ids(system.send("GET", "ImagingStudy?modality=&modality=MR")) == []


def test_modifiers_are_per_parameter(fhir: FhirWorld) -> None:
    """``:identifier`` where the parameter supports it (patient, subject, basedon), a 400 elsewhere."""
    system, _, ids = fhir
    patient = system.send("GET", f"Patient/{ids['P1']}").get_json()
    ident = next(i for i in patient["identifier"] if i["value"] == "P1")
    token = f"{ident['system']}|P1" if ident.get("system") else "P1"
    assert _accessions(system.send("GET", f"ServiceRequest?patient:identifier={token}")) == {"H-1"}
    assert _accessions(system.send("GET", "ServiceRequest?subject:identifier=P2")) == {"H-2"}
    assert _accessions(system.send("GET", "ServiceRequest?patient:identifier=P1,P2")) == {"H-1", "H-2"}
    assert _accessions(system.send("GET", "ServiceRequest?patient:identifier=nobody")) == set()
    assert len(_ids(system.send("GET", "ImagingStudy?patient:identifier=P2"))) == 1
    for query in ("ImagingStudy?endpoint:identifier=x", "ServiceRequest?status:identifier=active",
                  "Patient?gender:exact=male", "ImagingStudy?identifier:contains=1"):
        refused = system.send("GET", query)
        assert refused.status_code == 400, query
        assert refused.get_json()["issue"][0]["code"] == "not-supported"
    lenient = system.send("GET", "ImagingStudy?endpoint:identifier=x", Prefer="handling=lenient")
    assert len(_ids(lenient)) == 2 and "endpoint" not in lenient.get_json()["link"][0]["url"]


def test_patient_sort_and_exact_names(fhir: FhirWorld) -> None:
    system, _, ids = fhir
    body = order("H-3", "P3")
    body["contained"][0]["name"] = [{"family": "Müller", "given": ["Jörg"]}]
    assert system.send("POST", "ServiceRequest", body).status_code == 201
    ascending = _ids(system.send("GET", "Patient?_sort=_id"))
    assert len(ascending) == 3 and ascending == sorted(ascending)
    descending = system.send("GET", "Patient?_sort=-_id")
    assert _ids(descending) == ascending[::-1]
    assert "_sort=-_id" in descending.get_json()["link"][0]["url"]

    shown = system.send("GET", f"Patient/{ids['P1']}").get_json()["name"][0]["family"]
    assert len(_ids(system.send("GET", f"Patient?name:exact={shown}"))) == 2
    for other in {shown.lower(), shown.upper()} - {shown}:
        assert _ids(system.send("GET", f"Patient?name:exact={other}")) == [], other
    assert len(_ids(system.send("GET", f"Patient?name={shown.lower()}"))) == 2  # plain: case-insensitive
    mueller = system.send("GET", "Patient?name=muller").get_json()["entry"][0]["resource"]
    family = mueller["name"][0]["family"]
    assert family.lower() == "müller"
    assert _ids(system.send("GET", f"Patient?name:exact={family}")) == [mueller["id"]]
    assert _ids(system.send("GET", "Patient?name:exact=" + family.replace("ü", "u").replace("Ü", "U"))) == []
    assert _ids(system.send("GET", f"Patient?name:exact={family[:3]}")) == []  # a whole part, not a prefix


def test_vread_and_version_headers(fhir: FhirWorld) -> None:
    """``Location`` names ``_history/<vid>``, which reads the current version (R4 http.html#vread); every
    ``Prefer: return=`` answer carries the written version's ETag and Last-Modified."""
    system, _, ids = fhir
    made = system.send("POST", "ServiceRequest", order("H-4", "P4"), Prefer="return=minimal")
    assert made.status_code == 201 and not made.get_data()
    assert made.headers["ETag"].startswith('W/"') and made.headers["Last-Modified"]
    location = made.headers["Location"]
    vid = made.headers["ETag"][3:-1]
    assert location.endswith(f"/_history/{vid}")
    current = system.send("GET", location.split("/fhir/", 1)[1])
    assert current.status_code == 200 and current.get_json()["meta"]["versionId"] == vid
    assert current.headers["ETag"] == made.headers["ETag"]
    rid = current.get_json()["id"]
    gone = system.send("GET", f"ServiceRequest/{rid}/_history/{int(vid) + 7}")
    assert gone.status_code == 404 and gone.get_json()["issue"][0]["code"] == "not-found"
    assert system.send("GET", f"ServiceRequest/{10**6}/_history/1").status_code == 404

    revoked = system.send("PUT", f"ServiceRequest/{rid}", {**current.get_json(), "status": "revoked"},
                          Prefer="return=OperationOutcome")
    assert revoked.status_code == 200 and revoked.get_json()["resourceType"] == "OperationOutcome"
    assert revoked.headers["ETag"] != made.headers["ETag"] and revoked.headers["Last-Modified"]
    assert system.send("GET", f"ServiceRequest/{rid}/_history/{vid}").status_code == 404  # not kept
    assert system.send("GET", f"ServiceRequest/{rid}/_history/{revoked.headers['ETag'][3:-1]}").status_code == 200

    for path in (f"Patient/{ids['P1']}", "ImagingStudy/" + _ids(system.send("GET", "ImagingStudy"))[0],
                 "Endpoint/" + _ids(system.send("GET", "Endpoint"))[0]):
        read = system.send("GET", path)
        again = system.send("GET", f"{path}/_history/{read.headers['ETag'][3:-1]}")
        assert again.status_code == 200 and again.get_json() == read.get_json(), path
    cs = system.send("GET", "metadata").get_json()
    assert all("vread" in [i["code"] for i in r["interaction"]] for r in cs["rest"][0]["resource"])


def test_if_none_exist_is_url_decoded(fhir: FhirWorld) -> None:
    """If-None-Exist is a query string (R4 http.html#ccreate): percent-encoded ``system|value`` is decoded."""
    system, _, _ = fhir
    existing = system.send("GET", f"ServiceRequest?identifier={ACC}|H-1").get_json()["entry"][0]["resource"]
    encoded = "identifier=http%3A%2F%2Fris.example%2Faccession%7CH-1"
    again = system.send("POST", "ServiceRequest", order("H-9", "P1"), **{"If-None-Exist": encoded})
    assert again.status_code == 200, again.get_data(as_text=True)
    assert again.get_json()["id"] == existing["id"]
    assert _accessions(system.send("GET", f"ServiceRequest?identifier={ACC}|H-9")) == set()
    bad = system.send("POST", "ServiceRequest", order("H-9", "P1"), **{"If-None-Exist": "identifier=a&status=b"})
    assert bad.status_code == 400 and bad.get_json()["resourceType"] == "OperationOutcome"


def test_imaging_study_keeps_the_accession_system_of_its_order(fhir: FhirWorld) -> None:
    """An order placed over FHIR with ``identifier.system`` shows that system on its ImagingStudy (identifier
    and basedOn), as on its ServiceRequest, and is found by it; another system finds nothing."""
    system, _, _ = fhir
    sr = system.send("GET", f"ServiceRequest?identifier={ACC}|H-1").get_json()["entry"][0]["resource"]
    study = system.send("GET", f"ImagingStudy/o-{sr['id']}").get_json()
    acsn = [i for i in study["identifier"] if i.get("type", {}).get("coding", [{}])[0].get("code") == "ACSN"]
    assert [(i.get("system"), i["value"]) for i in acsn] == [(ACC, "H-1")]
    assert study["basedOn"][0]["identifier"]["system"] == ACC
    for query in (f"identifier={ACC}|H-1", f"basedon:identifier={ACC}|H-1", "identifier=H-1"):
        assert _ids(system.send("GET", f"ImagingStudy?{query}")) == [study["id"]], query
    for query in ("identifier=http://other.example|H-1", "identifier=|H-1", "basedon:identifier=|H-1"):
        assert _ids(system.send("GET", f"ImagingStudy?{query}")) == [], query


def test_service_request_by_id(fhir: FhirWorld) -> None:
    """``_id`` (R4 search.html#id) on ServiceRequest: a comma list is OR, a repeat AND, with the other
    parameters; an id that cannot be an order's finds nothing. (It was an unknown parameter, 400.)"""
    system, _, _ = fhir
    one, two = (system.send("GET", f"ServiceRequest?identifier={ACC}|{a}").get_json()["entry"][0]["resource"]["id"]
                for a in ("H-1", "H-2"))
    assert _ids(system.send("GET", f"ServiceRequest?_id={one}")) == [one]
    assert _ids(system.send("GET", f"ServiceRequest?_id={one},{two}")) == sorted([one, two], key=int)
    assert _ids(system.send("GET", f"ServiceRequest?_id={one}&_id={two}")) == []
    assert _ids(system.send("GET", f"ServiceRequest?_id={one}&identifier={ACC}|H-2")) == []
    assert _ids(system.send("GET", f"ServiceRequest?_id={two}&identifier={ACC}|H-2")) == [two]
    assert _ids(system.send("GET", "ServiceRequest?_id=²,x,99999999999999999999")) == []


def test_imaging_study_based_on_placer_with_its_system(fhir: FhirWorld) -> None:
    """The placer number keeps its system on the ImagingStudy's basedOn, as on the ServiceRequest, and
    ``basedon:identifier`` with that system finds the study; no system or another one does not."""
    system, _, _ = fhir
    ehr = "http://ehr.example/orders"
    placer = {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PLAC"}]},
              "system": ehr, "value": "PL-77"}
    body = order("H-7", "P7")
    made = system.send("POST", "ServiceRequest", {**body, "identifier": [*body["identifier"], placer]})
    assert made.status_code == 201, made.get_data(as_text=True)
    assert {"system": ehr, "value": "PL-77"}.items() <= next(
        i for i in made.get_json()["identifier"] if i["value"] == "PL-77").items()
    study = system.send("GET", f"ImagingStudy/o-{made.get_json()['id']}").get_json()
    (ref,) = [b["identifier"] for b in study["basedOn"] if b["identifier"]["value"] == "PL-77"]
    assert ref["system"] == ehr
    assert _ids(system.send("GET", f"ImagingStudy?basedon:identifier={ehr}|PL-77")) == [study["id"]]
    assert _ids(system.send("GET", "ImagingStudy?basedon:identifier=PL-77")) == [study["id"]]
    for token in ("|PL-77", "http://other.example|PL-77"):
        assert _ids(system.send("GET", f"ImagingStudy?basedon:identifier={token}")) == [], token
