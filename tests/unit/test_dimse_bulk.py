"""The bulk C-STORE sender encodes what pynetdicom would (PS3.7 9.3.1.1, E.1; PS3.8 9.3.5)."""

from pathlib import Path

import pytest
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import split_dataset

from interfaces.dimse.bulk import c_store_rq_command, dataset_offset
from tests.conftest import TEST_FILES

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.parametrize(
    ("sop_uid", "msg_id", "aet", "originator_id"),
    [("1.2.3.4", 1, None, None), ("1.2.3.45", 300, "MOVER", 7), ("1.2.840.10008.99", 65535, "A", 65535)],
)
def test_command_set_equals_pynetdicoms(sop_uid: str, msg_id: int, aet: str | None, originator_id: int | None) -> None:
    req = C_STORE()
    req.MessageID = msg_id
    req.AffectedSOPClassUID = CT
    req.AffectedSOPInstanceUID = sop_uid
    req.Priority = 2
    req.MoveOriginatorApplicationEntityTitle = aet
    req.MoveOriginatorMessageID = originator_id
    req._dataset_path = (Path("/dev/null"), 0)
    msg = C_STORE_RQ()
    msg.primitive_to_message(req)
    first = next(msg.encode_msg(1, 16384)).presentation_data_value_list[0][1]
    assert first[0] == 0x03  # command, last fragment
    assert c_store_rq_command(CT, sop_uid, msg_id, originator_aet=aet, originator_id=originator_id) == first[1:]


@pytest.mark.parametrize("name", ["CT_small.dcm", "JPEG2000.dcm", "image_dfl.dcm", "MR_small_RLE.dcm"])
def test_dataset_offset(name: str) -> None:
    path = TEST_FILES / name
    with open(path, "rb") as f:
        assert dataset_offset(f, path) == split_dataset(path)[1]
