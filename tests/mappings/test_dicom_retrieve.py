"""C-MOVE/C-GET identifier -> RetrieveKeys (PS3.4 C.4.2.2.1, C.4.3.2.1)."""

import pytest
from pydicom.dataset import Dataset

from hub.domain.query import QueryLevel
from hub.domain.retrieve import RetrieveKeys
from hub.errors import HubError
from mappings.dicom_retrieve import identifier_to_retrieve_keys


def ident(**keys: object) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("ds", "root", "expected"),
    [
        (ident(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2\\1.3\\1.2"), "study",
         RetrieveKeys(QueryLevel.STUDY, study_uids=("1.2", "1.3"))),
        (ident(QueryRetrieveLevel="SERIES", StudyInstanceUID="1.2", SeriesInstanceUID=["1.2.3", "1.2.4"]), "study",
         RetrieveKeys(QueryLevel.SERIES, study_uids=("1.2",), series_uids=("1.2.3", "1.2.4"))),
        (ident(QueryRetrieveLevel="IMAGE ", SOPInstanceUID="1.2.3.4", PatientName="IGNORED^X"), "study",
         RetrieveKeys(QueryLevel.IMAGE, sop_instance_uids=("1.2.3.4",))),
        (ident(QueryRetrieveLevel="PATIENT", PatientID="P1"), "patient",
         RetrieveKeys(QueryLevel.PATIENT, patient_ids=("P1",))),
        # Study Root: PatientID is not a unique key there; keys below the level are ignored.
        (ident(QueryRetrieveLevel="STUDY", PatientID="P1", StudyInstanceUID="1.2", SeriesInstanceUID="9.9"), "study",
         RetrieveKeys(QueryLevel.STUDY, study_uids=("1.2",))),
        (ident(QueryRetrieveLevel="STUDY", PatientID="P1", StudyInstanceUID="1.2"), "patient",
         RetrieveKeys(QueryLevel.STUDY, patient_ids=("P1",), study_uids=("1.2",))),
        (ident(QueryRetrieveLevel="SERIES", StudyInstanceUID="", SeriesInstanceUID="1.2.3"), "study",
         RetrieveKeys(QueryLevel.SERIES, series_uids=("1.2.3",))),
    ],
)
def test_unique_keys(ds: Dataset, root: str, expected: RetrieveKeys) -> None:
    assert identifier_to_retrieve_keys(ds, root=root) == expected


@pytest.mark.parametrize(
    ("ds", "root"),
    [
        (ident(StudyInstanceUID="1.2"), "study"),  # no level
        (ident(QueryRetrieveLevel="", StudyInstanceUID="1.2"), "study"),
        (ident(QueryRetrieveLevel="FRAME", StudyInstanceUID="1.2"), "study"),
        (ident(QueryRetrieveLevel="PATIENT", PatientID="P1"), "study"),  # no PATIENT level in Study Root
        (ident(QueryRetrieveLevel="STUDY"), "study"),  # no unique key
        (ident(QueryRetrieveLevel="SERIES", StudyInstanceUID="1.2"), "study"),
        (ident(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2.*"), "study"),  # wildcard
        (ident(QueryRetrieveLevel="PATIENT", PatientID="P?"), "patient"),
    ],
)
def test_invalid_identifiers_are_0xa900(ds: Dataset, root: str) -> None:
    with pytest.raises(HubError) as err:
        identifier_to_retrieve_keys(ds, root=root)
    assert err.value.code == "invalid_identifier" and err.value.dimse_status == 0xA900
