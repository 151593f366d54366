"""ServiceRequest over HTTP (interfaces/http/fhir/service_request.py, common.py, metadata.py) with real RS256
JWTs against a JWKS file and the real Flask app: patient-context write limits (SMART App Launch 2.x), the
AND/OR rules of search (R4 search.html#combining), update's id rule (http.html#update), paging links,
OperationOutcome expression and codes, and the CapabilityStatement's security."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from tests.integration.fhir_http import ACC, V2, Client, order


def test_patient_token_writes_only_for_its_patient(fhir: tuple[Client, Callable[..., Client], dict[str, str]]):
    system, client, ids = fhir
    mine = client("launch/patient patient/ServiceRequest.cruds patient/ImagingStudy.cruds", patient=ids["P1"])
    own = mine.send("POST", "ServiceRequest", order("H-3", "P1", subject={"reference": f"Patient/{ids['P1']}"}))
    assert own.status_code == 201, own.get_data(as_text=True)
    assert own.get_json()["subject"]["reference"] == f"Patient/{ids['P1']}"
    for subject in ({"reference": f"Patient/{ids['P2']}"},  # another patient by reference
                    {"identifier": {"system": "urn:oid:1.2.3", "value": "P2"}},  # by identifier
                    {"reference": "#p"},  # a contained Patient can name anyone
                    {"reference": f"Patient/{ids['P1']}", "identifier": {"system": "urn:oid:1.2.3", "value": "P2"}}):
        refused = mine.send("POST", "ServiceRequest", order("H-4", "P2", subject=subject))
        assert refused.status_code == 403, (subject, refused.get_data(as_text=True))
        assert refused.get_json()["issue"][0]["code"] == "forbidden"
    study = {"resourceType": "ImagingStudy", "status": "registered", "subject": {"reference": f"Patient/{ids['P2']}"},
             "identifier": [{"system": ACC, "value": "H-5", "type": {"coding": [{"system": V2, "code": "ACSN"}]}}]}
    assert mine.send("POST", "ImagingStudy", study).status_code == 403
    # P2's order: neither revoked nor shown through If-None-Exist.
    theirs = system.send("GET", f"ServiceRequest?identifier={ACC}|H-2").get_json()["entry"][0]["resource"]
    revoke = {**theirs, "status": "revoked", "subject": {"reference": f"Patient/{ids['P1']}"}}
    assert mine.send("PUT", f"ServiceRequest/{theirs['id']}", revoke).status_code == 405  # as if unknown
    assert system.send("GET", f"ServiceRequest/{theirs['id']}").get_json()["status"] == "active"
    again = mine.send("POST", "ServiceRequest", order("H-2", "P1", subject={"reference": f"Patient/{ids['P1']}"}),
                      **{"If-None-Exist": f"identifier={ACC}|H-2"})
    assert again.status_code == 403 and "H-2" not in again.get_data(as_text=True)
    # A system token is not limited.
    assert system.send("POST", "ServiceRequest", order("H-6", "P2")).status_code == 201


def test_search_and_or(fhir: tuple[Client, Callable[..., Client], dict[str, str]]):
    system, _, ids = fhir
    made = system.send("POST", "ServiceRequest", order("H-7", "P1", status="on-hold"))
    assert made.status_code == 201

    def total(query: str) -> int:
        resp = system.send("GET", f"ServiceRequest?{query}")
        assert resp.status_code == 200, (query, resp.get_data(as_text=True))
        return int(resp.get_json()["total"])

    assert total("status=active") == 2 and total("status=on-hold") == 1
    assert total("status=active,on-hold") == 3  # comma: OR
    assert total("status=active&status=on-hold") == 0  # repeat: AND
    assert total("status=http://hl7.org/fhir/request-status|on-hold") == 1
    assert total("status=http://other.example|on-hold") == 0 and total("status=|on-hold") == 0
    assert total(f"identifier={ACC}|H-1,{ACC}|H-2") == 2
    assert total(f"identifier={ACC}|H-1&identifier={ACC}|H-2") == 0
    assert total("identifier=H-1,H-7&status=on-hold") == 1
    assert total(f"patient={ids['P1']}") == 2 and total(f"patient={ids['P1']}&patient={ids['P2']}") == 0
    assert total(f"patient={ids['P1']},{ids['P2']}") == 3 and total(f"patient={ids['P2']},unknown-id") == 1
    assert total(f"patient={ids['P1']},{ids['P2']}&status=on-hold") == 1
    assert total(f"patient={ids['P1']},{ids['P2']}&patient={ids['P2']}") == 1
    for query, word in (("authored=2025-13", "impossible"),
                        ("authored=2025-02-30", "impossible"), ("authored=2025,2025-13", "impossible")):
        resp = system.send("GET", f"ServiceRequest?{query}")
        assert resp.status_code == 400 and word in resp.get_data(as_text=True), (query, resp.get_data(as_text=True))
        assert resp.get_json()["resourceType"] == "OperationOutcome"
    # authored: a comma list of dates is OR, a repeat AND.
    for acc, when in (("H-8", "2020-05-01T10:00:00Z"), ("H-9", "2021-07-01T10:00:00Z")):
        assert system.send("POST", "ServiceRequest", order(acc, "P2", authoredOn=when)).status_code == 201
    assert total("authored=2020-05,2021-07") == 2 and total("authored=2020-05,2022") == 1
    assert total("authored=2020-05,2021-07&authored=lt2021") == 1 and total("authored=lt2020,gt2030") == 0


def test_update_needs_the_id(fhir: tuple[Client, Callable[..., Client], dict[str, str]]):
    system, _, _ = fhir
    current = system.send("GET", f"ServiceRequest?identifier={ACC}|H-1").get_json()["entry"][0]["resource"]
    body = {k: v for k, v in current.items() if k != "id"}
    missing = system.send("PUT", f"ServiceRequest/{current['id']}", {**body, "status": "revoked"})
    assert missing.status_code == 400 and missing.get_json()["issue"][0]["code"] == "required"
    other = system.send("PUT", f"ServiceRequest/{current['id']}", {**body, "id": "999", "status": "revoked"})
    assert other.status_code == 400
    assert system.send("GET", f"ServiceRequest/{current['id']}").get_json()["status"] == "active"


def test_paging_links_and_lenient_self(fhir: tuple[Client, Callable[..., Client], dict[str, str]]):
    system, _, _ = fhir
    for acc in ("H-8", "H-9"):
        assert system.send("POST", "ServiceRequest", order(acc, "P3")).status_code == 201

    def links(query: str, **headers: str) -> dict[str, dict[str, list[str]]]:
        bundle = system.send("GET", f"ServiceRequest?{query}", **headers).get_json()
        assert bundle["total"] == 4
        return {link["relation"]: parse_qs(urlsplit(link["url"]).query) for link in bundle["link"]}

    got = links("_count=2&_offset=1")
    assert got["next"]["_offset"] == ["3"] and got["last"]["_offset"] == ["3"] and got["previous"]["_offset"] == ["0"]
    got = links("_count=2&_offset=10")  # past the end: previous is the last page, no next
    assert got["previous"]["_offset"] == ["2"] and got["last"]["_offset"] == ["2"] and "next" not in got
    got = links("_count=2&_sort=bogus", Prefer="handling=lenient")
    assert "_sort" not in got["self"] and got["last"]["_offset"] == ["2"]


def test_outcome_expression_and_business_rule(fhir: tuple[Client, Callable[..., Client], dict[str, str]]):
    system, _, _ = fhir
    bad = order("H-10", "P1", contained=[{"id": "p", "identifier": [{"value": "P1"}]}])
    resp = system.send("POST", "ServiceRequest", bad)
    assert resp.status_code == 400
    assert resp.get_json()["issue"][0]["expression"] == ["ServiceRequest.contained"]
    current = system.send("GET", f"ServiceRequest?identifier={ACC}|H-1").get_json()["entry"][0]["resource"]
    done = system.send("PUT", f"ServiceRequest/{current['id']}", {**current, "status": "revoked"})
    assert done.status_code == 200
    reopen = system.send("PUT", f"ServiceRequest/{current['id']}", {**done.get_json(), "status": "active"})
    assert reopen.status_code == 422 and reopen.get_json()["issue"][0]["code"] == "business-rule"


def test_capability_statement_security(fhir: tuple[Client, Callable[..., Client], dict[str, str]]):
    system, _, _ = fhir
    rest = system.send("GET", "metadata").get_json()["rest"][0]
    codes = {c["code"] for s in rest["security"]["service"] for c in s["coding"]}
    assert codes == {"Basic", "OAuth", "SMART-on-FHIR"}
    study = next(r for r in rest["resource"] if r["type"] == "ImagingStudy")
    assert study["conditionalCreate"] is True


def test_imaging_study_update_status_codes(fhir: tuple[Client, Callable[..., Client], dict[str, str]]):
    """A code outside imagingstudy-status (required binding) is 400 invalid; a valid one the hub cannot
    apply to a scheduled study is 422 business-rule."""
    system, _, _ = fhir
    sr = system.send("GET", f"ServiceRequest?identifier={ACC}|H-1").get_json()["entry"][0]["resource"]
    study = system.send("GET", f"ImagingStudy/o-{sr['id']}")
    assert study.status_code == 200 and study.get_json()["status"] == "registered"
    etag = study.headers["ETag"]
    bogus = system.send("PUT", f"ImagingStudy/o-{sr['id']}", {**study.get_json(), "status": "bogus"},
                        **{"If-Match": etag})
    assert bogus.status_code == 400 and bogus.get_json()["issue"][0]["code"] == "invalid"
    available = system.send("PUT", f"ImagingStudy/o-{sr['id']}", {**study.get_json(), "status": "available"},
                            **{"If-Match": etag})
    assert available.status_code == 422 and available.get_json()["issue"][0]["code"] == "business-rule"
