"""A deterministic synthetic archive of small instances (no pixel data) for the HTTP benchmarks:
``--studies`` studies of ~0.4 patients per study, 1-3 series each, one instance per series; written
once and cached in the temp dir, then stored into each target over C-STORE."""

from __future__ import annotations

import calendar
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import harness as h

QUERIES = ("PatientID exact", "PatientName SMI*", "StudyDate one month", "ModalitiesInStudy=CT")

UID_ROOT = "1.2.826.0.1.3680043.10.1419.9."  # the project's test UID root, REST bench branch
MODALITIES = (("CT", 30), ("MR", 15), ("CR", 20), ("US", 12), ("DX", 12), ("MG", 6), ("PT", 5))
SOP = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4", "CR": "1.2.840.10008.5.1.4.1.1.1",
       "US": "1.2.840.10008.5.1.4.1.1.6.1", "DX": "1.2.840.10008.5.1.4.1.1.1.1", "MG": "1.2.840.10008.5.1.4.1.1.1.2",
       "PT": "1.2.840.10008.5.1.4.1.1.128", "SR": "1.2.840.10008.5.1.4.1.1.88.22"}
SURNAMES = ("SMITH", "SMIRNOV", "JONES", "BROWN", "TAYLOR", "WILSON", "MULLER", "ROSSI", "TANAKA", "NOWAK", "GARCIA",
            "MARTIN", "DUBOIS", "SCHMIDT", "LEE", "WALKER", "PETROV", "KOWALSKI", "FISCHER", "YOUNG")

@dataclass
class Plan:
    """What was generated: per study (patient index, date, modalities), for the expected match counts."""

    patient_ids: list[str]
    surnames: list[str]
    studies: list[tuple[int, str, list[str]]]


def plan(studies: int, seed: int) -> Plan:
    rng = random.Random(seed)
    n_pat = max(1, round(studies * 0.4))
    pids = [f"RPID{i + 1:07d}" for i in range(n_pat)]
    surnames = [rng.choice(SURNAMES) + ("" if rng.random() < 0.05 else f"{rng.randrange(1000):03d}X")
                for _ in range(n_pat)]
    mods, weights = [m for m, _ in MODALITIES], [w for _, w in MODALITIES]
    out = []
    for s in range(studies):
        pat = s if s < n_pat else rng.randrange(n_pat)
        year, month = 2006 + rng.randrange(20), 1 + rng.randrange(12)
        day = f"{year}{month:02d}{1 + rng.randrange(calendar.monthrange(year, month)[1]):02d}"
        primary = rng.choices(mods, weights)[0]
        series = [primary] * rng.randint(1, 2) + (["SR"] if rng.random() < 0.25 else [])
        out.append((pat, day, series))
    return Plan(pids, surnames, out)


def generate(pl: Plan, seed: int) -> list[Path]:
    """Write (or reuse) one small Part 10 file per series of the plan."""
    cache = Path(tempfile.gettempdir()) / f"rishub-bench-rest-{len(pl.studies)}-{seed}"
    done = cache.with_name(cache.name + ".complete")
    expected = sum(len(s[2]) for s in pl.studies)
    if done.exists() and len(list(cache.glob("*.dcm"))) == expected:
        return sorted(cache.glob("*.dcm"))
    h.log(f"generating {expected} files into {cache}")
    from pydicom.dataset import Dataset, FileMetaDataset

    cache.mkdir(parents=True, exist_ok=True)
    files = []
    for s, (pat, day, series) in enumerate(pl.studies):
        for n, mod in enumerate(series):
            ds = Dataset()
            sop_uid = f"{UID_ROOT}{s + 1}.{n + 1}.1"
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = SOP[mod]
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = SOP[mod], sop_uid
            ds.PatientID, ds.PatientName = pl.patient_ids[pat], f"{pl.surnames[pat]}^PAT{pat}"
            ds.PatientBirthDate, ds.PatientSex = "19700101", "MF"[pat % 2]
            ds.StudyInstanceUID = f"{UID_ROOT}{s + 1}"
            ds.SeriesInstanceUID = f"{UID_ROOT}{s + 1}.{n + 1}"
            ds.StudyDate, ds.StudyTime, ds.AccessionNumber = day, "101010", f"RACC{s + 1:07d}"
            ds.StudyID, ds.StudyDescription = str(s + 1), f"{series[0]} STUDY"
            ds.ReferringPhysicianName, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "", mod, n + 1, 1
            path = cache / f"{s + 1:06d}_{n + 1}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
    done.write_text("ok\n")
    return sorted(files)


def query_plan(pl: Plan, reps: int, seed: int) -> dict[str, list[tuple[dict[str, str], int]]]:
    rng = random.Random(seed + 1)
    per_pat: dict[int, int] = {}
    for pat, _, _ in pl.studies:
        per_pat[pat] = per_pat.get(pat, 0) + 1
    pats = [rng.randrange(len(pl.patient_ids)) for _ in range(reps)]
    months = sorted({d[:6] for _, d, _ in pl.studies})
    picked = [rng.choice(months) for _ in range(reps)]
    smi = sum(1 for pat, _, _ in pl.studies if pl.surnames[pat].startswith("SMI"))
    ct = sum(1 for _, _, mods in pl.studies if "CT" in mods)
    return {
        QUERIES[0]: [({"PatientID": pl.patient_ids[i]}, per_pat.get(i, 0)) for i in pats],
        QUERIES[1]: [({"PatientName": "SMI*"}, smi)] * reps,
        QUERIES[2]: [({"StudyDate": f"{m}01-{m}{calendar.monthrange(int(m[:4]), int(m[4:]))[1]:02d}"},
                      sum(1 for _, d, _ in pl.studies if d[:6] == m)) for m in picked],
        QUERIES[3]: [({"ModalitiesInStudy": "CT"}, ct)] * reps,
    }
