"""Orthanc ``/anonymize``: the DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile
(Table E.1-1, "Basic Profile" column) as Orthanc 1.10 applies it, as data, and the pure function
:func:`dataset_to_anonymized`.

Actions per tag (PS3.15 E.1-1): Z/D -> emptied (``clear``), X -> removed (``remove``), U -> a new UID
mapped consistently over the operation (``uids``); Orthanc treats X/Z, X/D, X/Z/D as X, Z/D as Z and
leaves the tags with K/C (and unlisted) as they are. Curve data (50xx,xxxx) and overlay data and comments
(60xx,3000), (60xx,4000) are removed inside sequences. On top of the table, as Orthanc does:

* private tags are removed unless ``KeepPrivateTags``;
* PatientID becomes a UUID (the same for all instances of one patient), PatientName ``Anonymized<N>``
  from a counter the caller keeps, unless the request replaces or keeps it;
* Study/Series/SOP Instance UIDs, and every UID of the ``uids`` list wherever it is referenced,
  get new values consistent within the operation;
* PatientIdentityRemoved (0012,0062) = ``YES`` and DeidentificationMethod (0012,0063) names the
  profile; any Keep/Remove/Replace (other than the patient name) or KeepPrivateTags drops that claim.

``DicomVersion`` may be ``2021b`` (the default of Orthanc 1.10), ``2017c`` or ``2008``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from hub import __version__
from mappings.modify import (
    BAD_FILE_FORMAT,
    OUT_OF_RANGE,
    PATIENT_ID,
    PATIENT_NAME,
    REF_SOP_UID,
    RT_FRAME_OF_REF_SEQ,
    RT_REF_STUDY_SEQ,
    SERIES_UID,
    SOP_UID,
    STUDY_UID,
    TEXT_VRS,
    UID_LEVELS,
    IdentifierMap,
    Modification,
    ModifyError,
    dataset_to_modified,
    parse_operations,
    read_bool,
    set_text,
    text_of,
)

DEIDENTIFICATION_METHOD, PATIENT_IDENTITY_REMOVED = 0x00120063, 0x00120062
DEFAULT_VERSION = "2021b"


def _tags(text: str) -> frozenset[int]:
    return frozenset(int(t, 16) for t in text.split())


@dataclass(frozen=True)
class Profile:
    """One edition of Table E.1-1 as Orthanc applies it."""

    method: str  # DeidentificationMethod (0012,0063), after the implementation name
    clear: frozenset[int]
    remove: frozenset[int]
    uids: frozenset[int]
    ranges: tuple[tuple[int, int, int, int], ...] = ()


CURVES_AND_OVERLAYS = ((0x5000, 0x50FF, 0x0000, 0xFFFF), (0x6000, 0x60FF, 0x3000, 0x3000),
                       (0x6000, 0x60FF, 0x4000, 0x4000))

PROFILES: dict[str, Profile] = {
    # PS3.15-2021b Table E.1-1 (Orthanc >= 1.9.4).
    "2021b": Profile(
        "PS 3.15-2021b Table E.1-1 Basic Profile",
        clear=_tags("""
            00080020 00080023 00080030 00080033 00080050 00080090 0008009C 00100030 00100040 00120010
            00120020 00120021 00120030 00120031 00120040 00120042 00120050 00120060 00120081 00180010
            001811BB 00189367 00189369 0018936A 00189371 00200010 00340001 00340002 00340005 00340007
            003A0314 00400512 00400513 00400551 00400562 00400610 00401101 00402016 00402017 0040A027
            0040A073 0040A075 0040A088 0040A123 0040A730 00700001 00700084 30060002 30060008 30060009
            30060026 300600A6 300A0002 300A0608 300A0611 300A0615 300A0619 300A0623 300A062A 300A067C
            300A067D 300A0734 300A0736 300A073A 300A0741 300A0742 300A0760 300A0783 3010000F 30100017
            3010001B 3010002D 30100033 30100034 30100035 30100038 30100043 30100054 3010005A 3010005C
            30100077 3010007A 3010007B 3010007F 30100081"""),
        remove=_tags("""
            00001000 00080015 00080021 00080022 00080024 00080025 0008002A 00080031 00080032 00080034
            00080035 00080080 00080081 00080082 00080092 00080094 00080096 0008009D 00080201 00081010
            00081030 0008103E 00081040 00081041 00081048 00081049 00081050 00081052 00081060 00081062
            00081070 00081072 00081080 00081084 00081110 00081111 00081120 00082111 00084000 00100021
            00100032 00100050 00100101 00100102 00101000 00101001 00101002 00101005 00101010 00101020
            00101030 00101040 00101050 00101060 00101080 00101081 00101090 00101100 00102000 00102110
            00102150 00102152 00102154 00102155 00102160 00102180 001021A0 001021B0 001021C0 001021D0
            001021F0 00102203 00102297 00102299 00104000 00120051 00120071 00120072 00120082 0016002B
            0016004B 0016004D 0016004E 0016004F 00160050 00160051 00160070 00160071 00160072 00160073
            00160074 00160075 00160076 00160077 00160078 00160079 0016007A 0016007B 0016007C 0016007D
            0016007E 0016007F 00160080 00160081 00160082 00160083 00160084 00160085 00160086 00160087
            00160088 00160089 0016008A 0016008B 0016008C 0016008D 0016008E 00181000 00181004 00181005
            00181007 00181008 00181009 0018100A 00181030 00181400 00184000 00185011 0018700A 00189185
            00189373 0018937B 0018937F 00189424 00189516 00189517 00189937 0018A003 00203401 00203406
            00204000 00209158 00284000 00320012 00321020 00321021 00321030 00321032 00321033 00321060
            00321066 00321067 00321070 00324000 00380004 00380010 00380011 00380014 0038001E 00380020
            00380021 00380040 00380050 00380060 00380061 00380062 00380064 00380300 00380400 00380500
            00384000 00400001 00400002 00400003 00400004 00400005 00400006 00400007 00400009 0040000B
            00400010 00400011 00400012 00400241 00400242 00400243 00400244 00400245 00400250 00400251
            00400253 00400254 00400275 00400280 00400310 0040050A 0040051A 00400555 00400600 00400602
            004006FA 00401001 00401002 00401004 00401005 0040100A 00401010 00401011 00401102 00401103
            00401104 00401400 00402001 00402008 00402009 00402010 00402011 00402400 00403001 00404005
            00404008 00404010 00404011 00404025 00404027 00404028 00404030 00404034 00404035 00404036
            00404037 00404050 00404051 00404052 0040A078 0040A07A 0040A07C 0040A192 0040A193 0040A307
            0040A352 0040A353 0040A354 0040A358 0050001B 00500020 00500021 00700086 00880200 00880904
            00880906 00880910 00880912 04000402 04000403 04000404 04000550 04000551 04000552 04000561
            04000600 20300020 22000002 22000005 30060004 30060006 30060028 30060038 30060085 30060088
            30080054 30080056 30080105 30080250 30080251 300A0003 300A0004 300A0006 300A0007 300A000E
            300A0016 300A0072 300A00B2 300A00C3 300A00DD 300A0196 300A01A6 300A01B2 300A0216 300A02EB
            300A0676 300C0113 300E0008 30100036 30100037 3010004C 3010004D 30100056 30100061 40000010
            40004000 40080042 40080102 4008010A 4008010B 4008010C 40080111 40080114 40080115 40080118
            40080119 4008011A 40080202 40080300 40084000 FFFAFFFA FFFCFFFC"""),
        uids=_tags("""
            00001001 00020003 00041511 00080014 00080058 00081155 00081195 00083010 00181002 0018100B
            00182042 00200052 00200200 00209161 00209164 00281199 00281214 003A0310 00400554 00404023
            0040A124 0040A171 0040A172 0040A402 0040DB0C 0040DB0D 00620021 0070031A 00701101 00701102
            00880140 04000100 30060024 300600C2 300A0013 300A0083 300A0609 300A0650 300A0700 30100006
            3010000B 30100013 30100015 30100031 3010003B 3010006E 3010006F"""),
        ranges=CURVES_AND_OVERLAYS,
    ),
    # PS3.15-2017c Table E.1-1 (the default of Orthanc 1.3.0 to 1.9.3).
    "2017c": Profile(
        "PS 3.15-2017c Table E.1-1 Basic Profile",
        clear=_tags("""
            00080020 00080023 00080030 00080033 00080050 00080090 0008009C 00100030 00100040 00180010
            00200010 00401101 00402016 00402017 0040A073 0040A075 0040A088 0040A123 00700001 00700084"""),
        remove=_tags("""
            00001000 00080015 00080021 00080022 00080024 00080025 0008002A 00080031 00080032 00080034
            00080035 00080080 00080081 00080082 00080092 00080094 00080096 0008009D 00080201 00081010
            00081030 0008103E 00081040 00081048 00081049 00081050 00081052 00081060 00081062 00081070
            00081072 00081080 00081084 00081110 00081111 00081120 00082111 00084000 00100021 00100032
            00100050 00100101 00100102 00101000 00101001 00101002 00101005 00101010 00101020 00101030
            00101040 00101050 00101060 00101080 00101081 00101090 00101100 00102000 00102110 00102150
            00102152 00102154 00102155 00102160 00102180 001021A0 001021B0 001021C0 001021D0 001021F0
            00102203 00102297 00102299 00104000 00181000 00181004 00181005 00181007 00181008 00181030
            00181400 00184000 0018700A 00189424 00189516 00189517 0018A003 00203401 00203404 00203406
            00204000 00209158 00284000 00320012 00321020 00321021 00321030 00321032 00321033 00321060
            00321070 00324000 00380004 00380010 00380011 0038001E 00380020 00380021 00380040 00380050
            00380060 00380061 00380062 00380300 00380400 00380500 00384000 00400001 00400002 00400003
            00400004 00400005 00400006 00400007 0040000B 00400010 00400011 00400012 00400241 00400242
            00400243 00400244 00400245 00400250 00400251 00400253 00400254 00400275 00400280 00400555
            00401001 00401004 00401005 00401010 00401011 00401102 00401103 00401104 00401400 00402001
            00402008 00402009 00402010 00402011 00402400 00403001 00404005 00404010 00404011 00404025
            00404027 00404028 00404030 00404034 00404035 00404036 00404037 00404050 00404051 00404052
            0040A027 0040A078 0040A07A 0040A07C 0040A192 0040A193 0040A307 0040A352 0040A353 0040A354
            0040A358 0040A730 00700086 00880200 00880904 00880906 00880910 00880912 04000100 04000402
            04000403 04000404 04000550 04000561 20300020 30080105 300C0113 300E0008 40000010 40004000
            40080042 40080102 4008010A 4008010B 4008010C 40080111 40080114 40080115 40080118 40080119
            4008011A 40080202 40080300 40084000 FFFAFFFA FFFCFFFC"""),
        uids=_tags("""
            00001001 00020003 00041511 00080014 00080058 00081155 00081195 00083010 00181002 00182042
            00200052 00200200 00209161 00209164 00281199 00281214 00404023 0040A124 0040A171 0040A172
            0040A402 0040DB0C 0040DB0D 00620021 0070031A 00701101 00701102 00880140 30060024 300600C2
            300A0013"""),
        ranges=CURVES_AND_OVERLAYS,
    ),
    # PS3.15-2008 Table E.1-1 with Orthanc's additions (the default of Orthanc <= 1.2.0).
    "2008": Profile(
        "PS 3.15-2008 Table E.1-1",
        clear=frozenset(),
        remove=_tags("""
            00080050 00080080 00080081 00080090 00080092 00080094 00081010 00081030 0008103E 00081040
            00081048 00081050 00081060 00081070 00081080 00082111 00100030 00100032 00100040 00101000
            00101001 00101010 00101020 00101030 00101090 00102160 00102180 001021B0 00104000 00181000
            00181030 00200010 00204000 00400275 0040A730 00101040 00321032 00102154 00102000"""),
        uids=_tags("00080014 00081155 00200052 00200200 0040A124 00880140 30060024 300600C2"),
    ),
}


def deidentification_method(version: str) -> str:
    """DeidentificationMethod (0012,0063) written by this implementation for ``version``."""
    return f"rishub {__version__} - {PROFILES[version].method}"


def profile_modification(version: str = DEFAULT_VERSION) -> Modification:
    """Orthanc ``SetupAnonymization``: the profile's actions at the patient level, private tags removed."""
    if version not in PROFILES:
        raise ModifyError(OUT_OF_RANGE, f"Unknown specific version of the DICOM standard: {version}")
    p = PROFILES[version]
    method = deidentification_method(version)
    mod = Modification(level="Patient", is_anonymization=True, remove_private_tags=True,
                       clearings=set(p.clear), removals=set(p.remove), uids=set(p.uids) | {PATIENT_ID, PATIENT_NAME},
                       ranges=list(p.ranges), profile_method=method)
    mod.replacements[DEIDENTIFICATION_METHOD] = method
    mod.replacements[PATIENT_IDENTITY_REMOVED] = "YES"
    return mod


def body_to_anonymization(body: Any, patient_name: Callable[[], str]) -> Modification:
    """An ``/{level}/{id}/anonymize`` body (Orthanc ``ParseAnonymizationRequest``).

    ``patient_name`` gives the next ``Anonymized<N>``; it is called only when the request neither
    replaces nor keeps PatientName, after the body was accepted."""
    if not isinstance(body, dict):
        raise ModifyError(BAD_FILE_FORMAT)
    force = read_bool(body, "Force", False)
    version = body.get("DicomVersion", DEFAULT_VERSION)
    if not isinstance(version, str):
        raise ModifyError(BAD_FILE_FORMAT)
    mod = profile_modification(version)
    if read_bool(body, "KeepPrivateTags", False):
        mod.set_remove_private(False)
    parse_operations(mod, body, force)
    if PATIENT_NAME in mod.uids:
        mod.replace_tag(PATIENT_NAME, patient_name(), safe=True)
    return mod


def dataset_to_anonymized(ds: Dataset, mod: Modification, ids: IdentifierMap) -> Dataset:
    """Apply an anonymization to ``ds`` in place; ``ids`` is shared by all instances of the operation."""
    return dataset_to_modified(ds, mod, ids, _relationships)


def _relationships(ds: Dataset, mod: Modification, ids: IdentifierMap, parents: tuple[tuple[int, int], ...]) -> None:
    """Orthanc ``RelationshipsVisitor``. Top level: map the ``uids`` tags (and PatientID) nothing else
    changed. Inside sequences: drop private, removed and cleared non-text tags, empty cleared text,
    and map Study/Series/SOP Instance UIDs and the ``uids`` tags, so that references follow."""
    for elem in list(ds):
        tag = int(elem.tag)
        if parents and mod.is_kept_in_sequence(parents, tag):
            continue
        if elem.VR == "SQ" or elem.VR not in TEXT_VRS:
            if parents and _nested_removed(mod, tag):
                del ds[tag]
            elif elem.VR == "SQ":
                for i, item in enumerate(elem.value or ()):
                    _relationships(item, mod, ids, (*parents, (tag, i)))
            continue
        if not parents:
            manual = tag in mod.clearings or mod.is_removed(tag) or tag in mod.replacements
            if tag in mod.uids and not manual:
                level = "Patient" if tag in (PATIENT_ID, PATIENT_NAME) else "Instance"
                set_text(ds, tag, str(elem.VR), ids.map(level, text_of(ds, tag)))
            continue
        if (mod.remove_private_tags and elem.tag.is_private) or mod.is_removed(tag):
            del ds[tag]
        elif tag in mod.clearings:
            set_text(ds, tag, str(elem.VR), "")
        elif tag in (STUDY_UID, SERIES_UID, SOP_UID) or tag in mod.uids:
            set_text(ds, tag, str(elem.VR), ids.map(_nested_level(tag, parents), text_of(ds, tag)))


def _nested_level(tag: int, parents: tuple[tuple[int, int], ...]) -> str:
    if tag in (PATIENT_ID, PATIENT_NAME):
        return "Patient"
    if tag == REF_SOP_UID and [p[0] for p in parents] == [RT_FRAME_OF_REF_SEQ, RT_REF_STUDY_SEQ]:
        return "Study"  # RT Structure Set: this ReferencedSOPInstanceUID names a study
    return dict(UID_LEVELS).get(tag, "Instance")


def _nested_removed(mod: Modification, tag: int) -> bool:
    """``GetDefaultAction`` inside sequences: private tags (when removed), cleared and removed tags go."""
    return bool((mod.remove_private_tags and tag >> 16 & 1) or tag in mod.clearings or mod.is_removed(tag))
