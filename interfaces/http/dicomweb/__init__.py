"""DICOMweb (PS3.18) at ``/dicom-web``: QIDO-RS, WADO-RS, STOW-RS and WADO-URI."""
