"""Golden checks of Orthanc ``/tools/find`` bodies -> the query model (Orthanc 1.10 matching rules)."""

from __future__ import annotations

from typing import Any

import pytest

from hub.domain.query import Condition, Match, QueryLevel
from hub.errors import HubError
from mappings.orthanc_find import FindRequest, TagFilter, filter_matches, orthanc_find_to_query, parse_level, parse_tag

STUDY = QueryLevel.STUDY


def parse(query: dict[str, str], level: str = "Study", **extra: Any) -> FindRequest:
    return orthanc_find_to_query({"Level": level, "Query": query, **extra})


@pytest.mark.parametrize(
    "text,level",
    [("Patient", QueryLevel.PATIENT), ("patients", QueryLevel.PATIENT), ("STUDIES", QueryLevel.STUDY),
     ("Series", QueryLevel.SERIES), ("instance", QueryLevel.IMAGE), ("Images", QueryLevel.IMAGE)],
)
def test_levels(text: str, level: QueryLevel):
    assert parse_level(text) is level


def test_tags_by_keyword_or_number():
    assert parse_tag("PatientName") == (0x00100010, "PatientName")
    assert parse_tag("0010,0020") == (0x00100020, "PatientID")
    assert parse_tag("0008103e") == (0x0008103E, "SeriesDescription")
    assert parse_tag("0009,1001") == (0x00091001, "00091001")
    with pytest.raises(HubError) as err:
        parse_tag("NoSuchKeyword")
    assert err.value.http_status == 400


@pytest.mark.parametrize(
    "body,message",
    [
        ([], "JSON object"),
        ({"Query": {}}, 'Field "Level"'),
        ({"Level": 3, "Query": {}}, 'Field "Level"'),
        ({"Level": "Frame", "Query": {}}, "Invalid resource type"),
        ({"Level": "Study"}, 'Field "Query"'),
        ({"Level": "Study", "Query": []}, 'Field "Query"'),
        ({"Level": "Study", "Query": {"PatientID": None}}, "should be associated with a string"),
        ({"Level": "Study", "Query": {}, "Limit": 1.5}, 'Field "Limit" should be an integer'),
        ({"Level": "Study", "Query": {}, "Limit": True}, 'Field "Limit" should be an integer'),
        ({"Level": "Study", "Query": {}, "Since": -3}, 'Field "Since" should be a positive integer'),
        ({"Level": "Study", "Query": {}, "Expand": 1}, 'Field "Expand" should be a Boolean'),
        ({"Level": "Study", "Query": {}, "CaseSensitive": "no"}, 'Field "CaseSensitive" should be a Boolean'),
        ({"Level": "Study", "Query": {}, "RequestedTags": [1]}, "RequestedTags"),
        ({"Level": "Study", "Query": {"StudyDate": "2024*"}}, "Wildcards are not allowed on tag 0008,0020"),
        ({"Level": "Study", "Query": {"StudyInstanceUID": "1.2.*"}}, "Wildcards are not allowed on tag 0020,000d"),
        ({"Level": "Series", "Query": {"SeriesNumber": "?"}}, "Wildcards are not allowed on tag 0020,0011"),
    ],
)
def test_bad_bodies(body: Any, message: str):
    with pytest.raises(HubError) as err:
        orthanc_find_to_query(body)
    assert err.value.code == "bad_request" and message in err.value.message


def test_options():
    req = parse({}, "Series", Expand=True, Limit=10, Since=20, CaseSensitive=True, RequestedTags=["0008,0060"])
    assert (req.expand, req.limit, req.since, req.requested_tags) == (True, 10, 20, ["Modality"])
    assert req.query.level is QueryLevel.SERIES and req.query.case_insensitive_names is False
    assert req.query.conditions == [] and req.filters == [] and not req.matches_nothing


@pytest.mark.parametrize(
    "query,expected",
    [
        ({"PatientName": ""}, []),
        ({"PatientName": "*"}, []),
        ({"StudyDate": "-"}, []),
        ({"PatientName": "smith^j*"}, [Condition("PatientName", Match.WILDCARD, "SMITH^J*", level=QueryLevel.PATIENT)]),
        ({"PatientName": "Zoë"}, [Condition("PatientName", Match.SINGLE, "ZOE", level=QueryLevel.PATIENT)]),
        ({"PatientID": "ab\\cd"}, [Condition("PatientID", Match.LIST, ("AB", "CD"), level=QueryLevel.PATIENT)]),
        ({"StudyDate": "20240101"}, [Condition("StudyDate", Match.SINGLE, "20240101", level=QueryLevel.STUDY)]),
        ({"StudyDate": "garbage"}, [Condition("StudyDate", Match.SINGLE, "garbage", level=QueryLevel.STUDY)]),
        ({"StudyDate": "2024.01.01-"}, [Condition("StudyDate", Match.RANGE, ("20240101", None), level=STUDY)]),
        ({"StudyTime": "1015"}, [Condition("StudyTime", Match.SINGLE, "101500.000000", level=QueryLevel.STUDY)]),
        ({"StudyTime": "07-08"}, [Condition("StudyTime", Match.RANGE, ("07", "08"), level=QueryLevel.STUDY)]),
        ({"StudyInstanceUID": " 1.2.3 "}, [Condition("StudyInstanceUID", Match.SINGLE, "1.2.3", level=STUDY)]),
        ({"ModalitiesInStudy": "ct\\mr"}, [Condition("ModalitiesInStudy", Match.LIST, ("CT", "MR"),
                                                     level=QueryLevel.STUDY)]),
        ({"InstitutionName": "jfk*"}, [Condition("InstitutionName", Match.WILDCARD, "JFK*", level=QueryLevel.STUDY)]),
    ],
)
def test_study_level_conditions(query: dict[str, str], expected: list[Condition]):
    req = parse(query)
    assert req.query.conditions == expected and req.filters == [] and not req.matches_nothing


def test_case_sensitive_values_are_kept():
    req = parse({"PatientName": "Smith*", "StudyDescription": "Chest", "AccessionNumber": "a1"}, CaseSensitive=True)
    assert [c.value for c in req.query.conditions] == ["Smith*", "Chest", "a1"]


def test_series_numbers_are_integers():
    assert parse({"SeriesNumber": "03"}, "Series").query.conditions == [
        Condition("SeriesNumber", Match.SINGLE, "3", level=QueryLevel.SERIES)
    ]
    assert parse({"SeriesNumber": "1\\2"}, "Series").query.conditions[0].value == ("1", "2")
    assert parse({"SeriesNumber": "x"}, "Series").matches_nothing


def test_levels_of_main_tags():
    """A main tag of the query level or above matches the index; of a level below, nothing (Orthanc
    1.10); a tag that is no main tag is matched on the instances' DICOM JSON."""
    assert parse({"Modality": "CT"}).matches_nothing
    assert parse({"SeriesDescription": "*"}).matches_nothing
    assert parse({"StudyDescription": "x"}, "Patient").matches_nothing
    assert parse({"ModalitiesInStudy": "CT"}, "Series").matches_nothing
    assert not parse({"ModalitiesInStudy": ""}, "Series").matches_nothing  # empty: universal, ignored
    inst = parse({"ImageOrientationPatient": "1\\0\\0\\0\\1\\0", "PatientName": "A"}, "Instance")
    assert [(c.keyword, c.level) for c in inst.query.conditions] == [
        ("ImageOrientationPatient", QueryLevel.IMAGE), ("PatientName", QueryLevel.PATIENT)]
    assert parse({"ImageOrientationPatient": "1"}, "Series").query.conditions[0].level is QueryLevel.SERIES
    assert parse({"SOPClassUID": "1.2"}, "Instance").query.conditions[0].level is QueryLevel.IMAGE
    study = parse({"SOPClassUID": "1.2", "SliceThickness": "5"})
    assert study.query.conditions == [] and study.filters == [
        TagFilter("00080016", "UI", Match.SINGLE, "1.2"), TagFilter("00180050", "DS", Match.SINGLE, "5")]


DATASET = {
    "00180050": {"vr": "DS", "Value": [5]},
    "00180015": {"vr": "CS", "Value": ["CHEST"]},
    "00080008": {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY"]},
    "00080022": {"vr": "DA", "Value": ["20240115"]},
    "00431028": {"vr": "OB", "InlineBinary": "AAAA"},
    "00081090": {"vr": "LO"},
}


@pytest.mark.parametrize(
    "flt,matches",
    [
        (TagFilter("00180050", "DS", Match.SINGLE, "5.000000"), True),
        (TagFilter("00180050", "DS", Match.SINGLE, "5.1"), False),
        (TagFilter("00180050", "DS", Match.LIST, ("1", "5.0")), True),
        (TagFilter("00180015", "CS", Match.SINGLE, "chest"), True),
        (TagFilter("00180015", "CS", Match.SINGLE, "chest", case_sensitive=True), False),
        (TagFilter("00180015", "CS", Match.WILDCARD, "ch?s*"), True),
        (TagFilter("00080008", "CS", Match.SINGLE, "ORIGINAL\\PRIMARY"), True),
        (TagFilter("00080022", "DA", Match.RANGE, ("20240101", None)), True),
        (TagFilter("00080022", "DA", Match.RANGE, (None, "20231231")), False),
        (TagFilter("00431028", "OB", Match.SINGLE, "AAAA"), False),
        (TagFilter("00081090", "LO", Match.SINGLE, "x"), False),
        (TagFilter("00181030", "LO", Match.SINGLE, "x"), False),
    ],
)
def test_filters_on_dicom_json(flt: TagFilter, matches: bool):
    assert filter_matches(flt, DATASET) is matches
