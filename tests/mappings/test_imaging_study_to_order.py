"""Golden test of a registered FHIR R4 ImagingStudy -> order (mappings/imaging_study_to_order.py): the same
worklist item as a ServiceRequest, errors named on the ImagingStudy's own elements."""

from __future__ import annotations

import pytest

from hub.domain.orders import OrderAction
from mappings.fhir_values import FhirInputError
from mappings.imaging_study_to_order import imaging_study_to_order
from tests.mappings.test_fhir_to_order import DCM, POLICY, ident, v


def test_imaging_study_registered():
    study = {"resourceType": "ImagingStudy", "status": "registered",
             "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.840.99.7"}, ident("ACSN", "", "ACC7")],
             "subject": {"identifier": {"value": "PID7"}}, "modality": [{"system": DCM, "code": "US"}],
             "started": "2030-03-04T09:15:00Z", "description": "US abdomen",
             "referrer": {"display": "Ref^Ray"}}
    cmd = imaging_study_to_order(study, policy=POLICY)
    assert (cmd.action, cmd.study_uid, cmd.accession_number) == (OrderAction.CREATE, "1.2.840.99.7", "ACC7")
    step = cmd.steps[0]
    assert (step.modality, step.start_date, step.start_time, v(cmd.attrs, "00080201")) == \
        ("US", "20300304", "091500", "+0000")
    assert (v(cmd.attrs, "00321060"), v(cmd.attrs, "00080090")) == ("US abdomen", "Ref^Ray")
    assert imaging_study_to_order({**study, "status": "cancelled"}).action is OrderAction.CANCEL
    with pytest.raises(FhirInputError) as exc:
        imaging_study_to_order({**study, "status": "available"})
    assert exc.value.code == "business-rule"
    with pytest.raises(FhirInputError) as exc:  # required binding imagingstudy-status
        imaging_study_to_order({**study, "status": "bogus"})
    assert (exc.value.code, exc.value.expression) == ("code-invalid", "ImagingStudy.status")
    with pytest.raises(FhirInputError) as exc:
        imaging_study_to_order({**study, "started": "2030-03-04T09:15:00"})
    assert exc.value.expression == "ImagingStudy.started"
