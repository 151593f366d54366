"""Orthanc-compatible ids (values taken from Orthanc 1.10 for pydicom's CT_small.dcm)."""

from hub.domain.ids import hierarchy_ids, orthanc_id


def test_ids_match_orthanc_for_ct_small():
    patient, study, series, instance = hierarchy_ids(
        "1CT1",
        "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322",
        "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322",
        "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322",
    )
    assert patient == "fa558bce-587a86d3-ad0da9b3-9d043d9d-4f5c5718"
    assert study == "8a8cf898-ca27c490-d0c7058c-929d0581-2bbf104d"
    assert series == "93034833-163e42c3-bc9a428b-194620cf-2c5799e5"
    assert instance == "f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af"


def test_format_is_five_groups_of_eight_hex():
    value = orthanc_id("")
    groups = value.split("-")
    assert [len(g) for g in groups] == [8] * 5
    assert all(c in "0123456789abcdef" for c in "".join(groups))
