"""Deterministic synthetic archive index for the query benchmark, bulk-inserted (no C-STORE path).

``fill(url, studies)`` writes patients, studies, series, instances and the change log straight into
an upgraded rishub index (SQLite or PostgreSQL) with SQLAlchemy Core executemany in large
transactions: counters consistent, values normalized as ``mappings/dicom_to_index.py`` does, public
ids from ``hub.domain.ids``. Blob keys are unique but no blob files exist (enough for C-FIND).
The returned :class:`Catalog` says what was generated, so the benchmark can check match counts.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.domain.ids import hierarchy_ids  # noqa: E402
from hub.store.db import Database  # noqa: E402
from hub.store.models import Change, Instance, Patient, Series, Study  # noqa: E402
from mappings.dicom_to_index import normalize_name  # noqa: E402

UID_ROOT = "1.2.826.0.1.3680043.10.1419.8."  # the project's test UID root, bench branch
FIRST_DAY = dt.date(2006, 1, 1)
DAYS = (dt.date(2025, 12, 31) - FIRST_DAY).days + 1  # 20 years of study dates
STAMP = dt.datetime(2026, 1, 1)  # created_at / updated_at / received_at: fixed, for determinism
BATCH = 5000  # rows per executemany
SMI_SURNAMES = ("SMITH", "SMIRNOV", "SMILEY")  # the only surnames that `SMI*` matches

REAL_SURNAMES = (
    "JONES", "BROWN", "TAYLOR", "WILSON", "JOHNSON", "WHITE", "MARTIN", "ANDERSON", "THOMPSON", "GARCIA",
    "MARTINEZ", "ROBINSON", "CLARK", "RODRIGUEZ", "LEWIS", "LEE", "WALKER", "HALL", "ALLEN", "YOUNG",
    "MULLER", "SCHMIDT", "SCHNEIDER", "FISCHER", "WEBER", "MEYER", "WAGNER", "BECKER", "DUBOIS", "MOREAU",
    "ROSSI", "RUSSO", "FERRARI", "ESPOSITO", "KOWALSKI", "NOWAK", "IVANOV", "PETROV", "TANAKA", "SUZUKI",
)
GIVEN = (
    "ANNA", "JOHN", "MARIA", "PETER", "LAURA", "DAVID", "SARAH", "MICHAEL", "EMMA", "JAMES", "SOFIA", "LUCAS",
    "OLGA", "IVAN", "YUKI", "KENJI", "CLAIRE", "PIERRE", "GIULIA", "MARCO", "EVA", "JAN", "LEA", "PAUL",
)
ONSETS = ("B", "BR", "C", "CH", "D", "DR", "F", "G", "GR", "H", "K", "KR", "L", "M", "N", "P", "PR", "R", "S",
          "ST", "T", "TR", "V", "W", "Z")
VOWELS = ("A", "E", "I", "O", "U", "AI", "EA", "OU")
CODAS = ("", "", "N", "R", "S", "L", "T", "NK", "RD", "LL")

# primary modality -> (weight, series of it (lo, hi), study description, body part)
PRIMARY: dict[str, tuple[int, tuple[int, int], str, str]] = {
    "CR": (20, (1, 3), "XR CHEST 2 VIEWS", "CHEST"),
    "CT": (20, (2, 4), "CT ABDOMEN PELVIS W CONTRAST", "ABDOMEN"),
    "MR": (12, (3, 6), "MR BRAIN WO CONTRAST", "BRAIN"),
    "US": (12, (1, 2), "US ABDOMEN COMPLETE", "ABDOMEN"),
    "DX": (12, (1, 3), "XR KNEE 3 VIEWS", "KNEE"),
    "MG": (6, (2, 4), "MAMMO SCREENING BILATERAL", "BREAST"),
    "XA": (4, (1, 3), "CORONARY ANGIOGRAPHY", "HEART"),
    "RF": (3, (1, 2), "FLUORO BARIUM SWALLOW", "ESOPHAGUS"),
    "NM": (3, (1, 2), "NM BONE SCAN WHOLE BODY", "WHOLEBODY"),
    "PT": (3, (1, 2), "PET CT WHOLE BODY FDG", "WHOLEBODY"),  # + one CT series
}
# modality -> (SOP class, share of the instances per series, bytes per instance)
MODALITY: dict[str, tuple[str, int, int]] = {
    "CT": ("1.2.840.10008.5.1.4.1.1.2", 40, 526_000),
    "MR": ("1.2.840.10008.5.1.4.1.1.4", 25, 135_000),
    "PT": ("1.2.840.10008.5.1.4.1.1.128", 30, 70_000),
    "NM": ("1.2.840.10008.5.1.4.1.1.20", 4, 2_000_000),
    "XA": ("1.2.840.10008.5.1.4.1.1.12.1", 8, 10_000_000),
    "RF": ("1.2.840.10008.5.1.4.1.1.12.2", 3, 4_000_000),
    "US": ("1.2.840.10008.5.1.4.1.1.6.1", 3, 900_000),
    "CR": ("1.2.840.10008.5.1.4.1.1.1", 0, 8_000_000),
    "DX": ("1.2.840.10008.5.1.4.1.1.1.1", 0, 9_000_000),
    "MG": ("1.2.840.10008.5.1.4.1.1.1.2", 0, 20_000_000),
    "SR": ("1.2.840.10008.5.1.4.1.1.88.22", 0, 12_000),
    "OT": ("1.2.840.10008.5.1.4.1.1.7", 0, 800_000),
}
REFERRERS = ("HOUSE^GREGORY", "GREY^MEREDITH", "KILDARE^JAMES", "QUINN^MICHAELA", "ROSS^DOUG", "WELBY^MARCUS")


@dataclass
class Catalog:
    """What was generated: enough to compute the expected C-FIND matches."""

    patient_ids: list[str] = field(default_factory=list)
    surnames: list[str] = field(default_factory=list)  # per patient
    study_patient: list[int] = field(default_factory=list)  # per study (pk - 1): patient index
    study_dates: list[str] = field(default_factory=list)  # YYYYMMDD
    study_modalities: list[frozenset[str]] = field(default_factory=list)
    series: int = 0
    instances: int = 0
    seconds: float = 0.0


def surname_pool(rng: random.Random, size: int) -> list[str]:
    """``size`` distinct upper-case surnames: a few real ones (3 starting with SMI) and generated ones,
    none of which starts with SMI."""
    pool = list(SMI_SURNAMES) + list(REAL_SURNAMES[: max(0, min(len(REAL_SURNAMES), size // 10))])
    seen = set(pool)
    while len(pool) < size:
        syllables = rng.choice((2, 2, 3))
        name = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables))
        if name not in seen and not name.startswith("SMI"):
            seen.add(name)
            pool.append(name)
    return pool


def allocate(total: int, weights: list[int]) -> list[int]:
    """``total`` instances over the series: each gets one, the rest by weight (largest remainder)."""
    counts = [1] * len(weights)
    rest = total - len(weights)
    wsum = sum(weights)
    if rest <= 0 or wsum == 0:
        return counts
    shares = [rest * w / wsum for w in weights]
    floors = [int(s) for s in shares]
    left = rest - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (floors[i] - shares[i], i))
    for i in order[:left]:
        floors[i] += 1
    return [c + f for c, f in zip(counts, floors, strict=True)]


def uid(*parts: int) -> str:
    return UID_ROOT + ".".join(str(p) for p in parts)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _chunks(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def fill(url: str, studies: int = 10_000, instances: int | None = None, seed: int = 20261122) -> Catalog:
    """Bulk-insert ``studies`` studies (~0.4 patients and ~3 series per study, ``instances`` in all:
    10 per study by default) into the empty, upgraded index at ``url``."""
    started = time.perf_counter()
    rng = random.Random(seed)
    n_instances = instances if instances is not None else 10 * studies
    n_patients = max(1, round(studies * 0.4))
    cat = Catalog()
    pool = surname_pool(rng, max(60, n_patients * 3 // 8))
    for p in range(n_patients):
        cat.patient_ids.append(f"PID{p + 1:07d}")
        cat.surnames.append(rng.choice(pool))
    given = [rng.choice(GIVEN) for _ in range(n_patients)]
    births = [(dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(90 * 365))).strftime("%Y%m%d")
              for _ in range(n_patients)]
    sexes = ["O" if rng.random() < 0.02 else rng.choice("MF") for _ in range(n_patients)]

    # Plan the studies (every patient has one; the rest at random), then number them by date.
    kinds, weights = list(PRIMARY), [v[0] for v in PRIMARY.values()]
    plans = []
    for s in range(studies):
        patient = s if s < n_patients else rng.randrange(n_patients)
        day = FIRST_DAY + dt.timedelta(days=rng.randrange(DAYS))
        hhmmss = f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
        primary = rng.choices(kinds, weights)[0]
        lo, hi = PRIMARY[primary][1]
        mods = [primary] * rng.randint(lo, hi) + (["CT"] if primary == "PT" else [])
        mods += ["SR"] if rng.random() < 0.25 else []
        mods += ["OT"] if rng.random() < 0.05 else []
        plans.append((day.strftime("%Y%m%d"), hhmmss, patient, primary, mods))
    plans.sort(key=lambda x: (x[0], x[1]))
    series_mods = [m for plan in plans for m in plan[4]]
    per_series = allocate(n_instances, [MODALITY[m][1] for m in series_mods])

    pat_counts = [[0, 0, 0] for _ in range(n_patients)]  # studies, series, instances
    study_rows, series_rows = [], []
    first_study: set[int] = set()
    se_pk = 0
    for st_pk, (date, hhmmss, patient, primary, mods) in enumerate(plans, start=1):
        st_uid = uid(1, st_pk)
        pid = cat.patient_ids[patient]
        p_id, st_id, _, _ = hierarchy_ids(pid, st_uid, "", "")
        st_instances = 0
        for j, mod in enumerate(mods, start=1):
            se_pk += 1
            n = per_series[se_pk - 1]
            st_instances += n
            se_uid = uid(2, st_pk, j)
            desc = f"{mod} SERIES {j}"
            body = PRIMARY[primary][3]
            tags = {"SeriesDate": date, "SeriesTime": hhmmss, "Modality": mod, "Manufacturer": "RISHUB BENCH",
                    "StationName": f"{mod}01", "SeriesDescription": desc, "BodyPartExamined": body,
                    "SeriesNumber": str(j), "SeriesInstanceUID": se_uid}
            series_rows.append({
                "pk": se_pk, "public_id": hierarchy_ids(pid, st_uid, se_uid, "")[2], "study_pk": st_pk,
                "series_uid": se_uid, "modality": mod, "series_number": j, "series_description": desc,
                "series_description_norm": normalize_name(desc), "body_part_examined": body, "series_date": date,
                "series_time": f"{hhmmss}.000000", "station_name": f"{mod}01", "manufacturer": "RISHUB BENCH",
                "num_instances": n, "main_tags": _dumps(tags), "created_at": STAMP, "updated_at": STAMP,
                "_pid": pid, "_st_uid": st_uid, "_first": j == 1 and patient not in first_study, "_st_id": st_id,
                "_p_id": p_id, "_new_study": j == 1,
            })
            first_study.add(patient)
        desc = PRIMARY[primary][2]
        referrer = REFERRERS[st_pk % len(REFERRERS)]
        tags = {"StudyDate": date, "StudyTime": hhmmss, "StudyID": str(st_pk), "StudyDescription": desc,
                "AccessionNumber": f"A{st_pk:08d}", "StudyInstanceUID": st_uid, "InstitutionName": "BENCH HOSPITAL",
                "ReferringPhysicianName": referrer}
        modalities = "\\".join(sorted(set(mods)))
        study_rows.append({
            "pk": st_pk, "public_id": st_id, "patient_pk": patient + 1, "study_uid": st_uid, "study_date": date,
            "study_time": f"{hhmmss}.000000", "accession_number": f"A{st_pk:08d}", "study_id": str(st_pk),
            "study_description": desc, "study_description_norm": normalize_name(desc),
            "referring_physician_name": referrer, "referring_physician_norm": normalize_name(referrer),
            "institution_name": "BENCH HOSPITAL", "modalities_in_study": modalities, "num_series": len(mods),
            "num_instances": st_instances, "main_tags": _dumps(tags), "created_at": STAMP, "updated_at": STAMP,
        })
        counts = pat_counts[patient]
        counts[0] += 1
        counts[1] += len(mods)
        counts[2] += st_instances
        cat.study_patient.append(patient)
        cat.study_dates.append(date)
        cat.study_modalities.append(frozenset(mods))
    cat.series, cat.instances = se_pk, sum(per_series)

    patient_rows = []
    for p in range(n_patients):
        name = f"{cat.surnames[p]}^{given[p]}"
        pid = cat.patient_ids[p]
        tags = {"PatientName": name, "PatientID": pid, "PatientBirthDate": births[p], "PatientSex": sexes[p]}
        patient_rows.append({
            "pk": p + 1, "public_id": hierarchy_ids(pid, "", "", "")[0], "patient_id": pid,
            "issuer_of_patient_id": None, "patient_name": name, "patient_name_norm": normalize_name(name),
            "birth_date": births[p], "sex": sexes[p], "num_studies": pat_counts[p][0],
            "num_series": pat_counts[p][1], "num_instances": pat_counts[p][2], "main_tags": _dumps(tags),
            "created_at": STAMP, "updated_at": STAMP,
        })

    changes: list[dict[str, Any]] = []

    def instance_rows() -> Iterator[dict[str, Any]]:
        i_pk = 0
        for se in series_rows:
            mod = se["modality"]
            sop_class, _, size = MODALITY[mod]
            for k in range(1, se["num_instances"] + 1):
                i_pk += 1
                sop = uid(3, se["study_pk"], se["series_number"], k)
                i_id = hierarchy_ids(se["_pid"], se["_st_uid"], se["series_uid"], sop)[3]
                meta = {"00080016": {"vr": "UI", "Value": [sop_class]}, "00080018": {"vr": "UI", "Value": [sop]},
                        "00080060": {"vr": "CS", "Value": [mod]}, "0020000D": {"vr": "UI", "Value": [se["_st_uid"]]},
                        "0020000E": {"vr": "UI", "Value": [se["series_uid"]]},
                        "00200013": {"vr": "IS", "Value": [k]}}
                changes.append({"change_type": "NewInstance", "resource_type": "Instance", "public_id": i_id,
                                "created_at": STAMP})
                if k == 1:  # Orthanc logs the instance first, then each new parent upwards
                    changes.append({"change_type": "NewSeries", "resource_type": "Series",
                                    "public_id": se["public_id"], "created_at": STAMP})
                    if se["_new_study"]:
                        changes.append({"change_type": "NewStudy", "resource_type": "Study",
                                        "public_id": se["_st_id"], "created_at": STAMP})
                    if se["_first"]:
                        changes.append({"change_type": "NewPatient", "resource_type": "Patient",
                                        "public_id": se["_p_id"], "created_at": STAMP})
                yield {
                    "pk": i_pk, "public_id": i_id, "series_pk": se["pk"], "sop_instance_uid": sop,
                    "sop_class_uid": sop_class, "instance_number": k, "number_of_frames": 1,
                    "transfer_syntax_uid": "1.2.840.10008.1.2.1", "blob_key": f"bench-{i_pk:012d}",
                    "file_size": size, "pixel_data_offset": None if mod == "SR" else 1200,
                    "main_tags": _dumps({"InstanceNumber": str(k), "SOPInstanceUID": sop}),
                    "metadata_json": _dumps(meta), "origin_protocol": "dimse", "origin_remote_aet": "BENCH",
                    "origin_remote_ip": "127.0.0.1", "origin_called_aet": "RISHUB", "origin_user": None,
                    "received_at": STAMP,
                }

    db = Database(url)
    try:
        tables = [(Patient.__table__, iter(patient_rows)), (Study.__table__, iter(study_rows)),
                  (Series.__table__, ({k: v for k, v in r.items() if not k.startswith("_")} for r in series_rows)),
                  (Instance.__table__, instance_rows())]
        for table, rows in tables:
            for batch in _chunks(rows):
                with db.write() as conn:
                    conn.execute(table.insert(), batch)  # type: ignore[attr-defined]
                    if changes:  # the change rows of these instances, in the same transaction
                        conn.execute(Change.__table__.insert(), changes)  # type: ignore[attr-defined]
                        changes.clear()
        with db.write() as conn:
            if not db.is_sqlite:  # explicit pks: move the sequences past them; statistics as autovacuum would
                for name in ("patients", "studies", "series", "instances"):
                    conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{name}', 'pk'), "
                                         f"(SELECT max(pk) FROM {name}))")
        if not db.is_sqlite:
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
    finally:
        db.dispose()
    cat.seconds = time.perf_counter() - started
    return cat
