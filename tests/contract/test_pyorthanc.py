"""pyorthanc (PyPI), a client written for Orthanc, drives the hub unchanged: upload, browse,
find, tags, download, anonymize, delete."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pydicom
import pyorthanc
from pyorthanc import Orthanc

from tests.conftest import TEST_FILES
from tests.contract.conftest import ADMIN_PASSWORD, Http
from tests.synthetic import write_series


def test_pyorthanc_drives_the_hub(api: Http, tmp_path: Path) -> None:
    client = Orthanc(api.base, username="admin", password=ADMIN_PASSWORD)
    files = [TEST_FILES / "CT_small.dcm", TEST_FILES / "MR_small.dcm",
             *write_series(tmp_path / "ct", 4, rows=16, cols=16, seed="pyorthanc")]
    for f in files:
        client.post_instances(f.read_bytes())
    assert client.get_statistics()["CountInstances"] == len(files)

    patients = pyorthanc.find_patients(client, query={"PatientName": "CompressedSamples^CT*"})
    assert [p.patient_id for p in patients] == ["1CT1"]
    studies = pyorthanc.find_studies(client, query={"PatientID": "1CT1"})
    assert len(studies) == 1 and studies[0].uid == pydicom.dcmread(files[0]).StudyInstanceUID
    series = studies[0].series
    assert len(series) == 1 and series[0].modality == "CT"
    instance = series[0].instances[0]
    assert instance.uid == pydicom.dcmread(files[0]).SOPInstanceUID
    assert instance.get_dicom_file_content() == files[0].read_bytes()
    assert instance.simplified_tags["PatientID"] == "1CT1"

    synthetic = pydicom.dcmread(files[2])
    [study] = pyorthanc.find_studies(client, query={"StudyInstanceUID": synthetic.StudyInstanceUID})
    with zipfile.ZipFile(io.BytesIO(study.get_zip())) as z:
        assert len([n for n in z.namelist() if n.endswith(".dcm")]) == 4
    anonymized = study.anonymize()
    assert anonymized.uid != study.uid and anonymized.patient_information["PatientName"].startswith("Anonymized")
    assert len(anonymized.series[0].instances) == 4

    client.delete_studies_id(anonymized.id_)
    assert client.get_statistics()["CountInstances"] == len(files)
    assert sorted(client.get_patients()) == sorted({p.id_ for p in pyorthanc.find_patients(client)})
