"""Golden checks of identifier -> query conditions (PS3.4 C.2.2.2 matching kinds)."""

import pytest
from pydicom.dataset import Dataset

from hub.domain.query import Condition, Match, QueryLevel
from hub.errors import HubError
from hub.store.query import like_pattern
from mappings.dicom_query import identifier_to_query, response_charset, value_to_condition


@pytest.mark.parametrize(
    "keyword,text,expected",
    [
        ("PatientID", "", None),
        ("PatientID", "*", None),
        ("PatientID", "AB*C?", Condition("PatientID", Match.WILDCARD, "AB*C?")),
        ("PatientName", "smith^j*", Condition("PatientName", Match.WILDCARD, "SMITH^J*")),
        ("PatientName", "Zoë", Condition("PatientName", Match.SINGLE, "ZOE")),
        ("StudyInstanceUID", "1.2\\1.3", Condition("StudyInstanceUID", Match.LIST, ("1.2", "1.3"))),
        ("StudyDate", "20240101", Condition("StudyDate", Match.SINGLE, "20240101")),
        ("StudyDate", "20240101-20240131", Condition("StudyDate", Match.RANGE, ("20240101", "20240131"))),
        ("StudyDate", "-20240131", Condition("StudyDate", Match.RANGE, (None, "20240131"))),
        ("StudyDate", "20240101-", Condition("StudyDate", Match.RANGE, ("20240101", None))),
        ("StudyTime", "10", Condition("StudyTime", Match.RANGE, ("100000.000000", "105959.999999"))),
        ("StudyTime", "0800-1230", Condition("StudyTime", Match.RANGE, ("080000.000000", "123059.999999"))),
        ("SeriesNumber", "3", Condition("SeriesNumber", Match.SINGLE, "3")),
        ("ModalitiesInStudy", "CT\\MR", Condition("ModalitiesInStudy", Match.LIST, ("CT", "MR"))),
        ("BodyPartExamined", "chest", Condition("BodyPartExamined", Match.SINGLE, "CHEST")),
    ],
)
def test_value_to_condition(keyword, text, expected):
    assert value_to_condition(keyword, text) == expected


@pytest.mark.parametrize(
    "keyword,text",
    [("StudyDate", "2024-13"), ("StudyDate", "-"), ("StudyDate", "20240201-20240101"), ("StudyTime", "25x"),
     ("SeriesNumber", "three"), ("StudyInstanceUID", "1.2.abc")],
)
def test_malformed_values_are_0xc001(keyword, text):
    with pytest.raises(HubError) as exc:
        value_to_condition(keyword, text)
    assert exc.value.dimse_status == 0xC001


def test_identifier_levels_and_requested_keys():
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.PatientID = "X"
    ds.Modality = ""
    ds.SOPInstanceUID = ""  # empty key below the level: tolerated, not returned
    query, requested = identifier_to_query(ds)
    assert query.level is QueryLevel.SERIES
    assert requested == ["Modality", "PatientID"]
    assert query.conditions == [Condition("PatientID", Match.SINGLE, "X")]


def test_like_pattern_escapes_sql_wildcards():
    assert like_pattern("A*B?") == ("A%B_", False)
    assert like_pattern("50%_*") == ("50\\%\\_%", True)


def test_response_charset():
    assert response_charset(None, ["ABC"]) is None
    assert response_charset("ISO_IR 100", ["Müller"]) == "ISO_IR 100"
    assert response_charset(None, ["Müller"]) == "ISO_IR 192"
    assert response_charset("ISO_IR 100", ["山田"]) == "ISO_IR 192"
