"""A synthetic serial-CT cohort: DICOM series, clinical/readings/truth sheets and a config.

Synthetic, not patient data. Each patient gets one anatomy (``phantom.draw_anatomy``) and 3-7
scans about a week apart; the lesion burden of a scan follows the paper's Fig. 3 cubic curves
(Pan et al. 2020) for the patient's severity, times a patient factor and scan noise. The burden
is floored at ``MIN_LESION_PERCENT`` so every scan has a measurable lesion (the moderate cubic
turns negative after about day 46), and capped at ``MAX_LESION_PERCENT``.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import yaml
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from serialct.config import defaults, validate_config
from serialct.constants import LOBES, SEVERITIES
from serialct.histogram import lung_histogram, write_reference
from serialct.phantom import (
    DEFAULT_SHAPE,
    Anatomy,
    Phantom,
    add_lesions,
    draw_anatomy,
    draw_phantom,
    origin_for_shape,
    spacing_for_shape,
)
from serialct.shipped import PHANTOM_MODEL

log = logging.getLogger("serialct")

CENTER_ID: Final = "SYNTH"
RESCALE_INTERCEPT: Final = -1024
MANUFACTURER: Final = "serialct-synth"
KVP: Final = 120
CONVOLUTION_KERNEL: Final = "LUNG"
WINDOW: Final = (-600, 1500)  # lung window centre, width stored in the headers

# Fig. 3 of the paper: percent of lesion / consolidation vs days since onset, cubic through 0.
LESION_CUBIC: Final = {"moderate": (0.413, -0.0148, 0.000127), "severe": (2.89, -0.0912, 0.000794)}
CONSOLIDATION_CUBIC: Final = {
    "moderate": (0.0911, -0.00338, 0.0000297),
    "severe": (0.590, -0.0208, 0.000188),
}
MIN_LESION_PERCENT: Final = 0.5
MAX_LESION_PERCENT: Final = 60.0
CONSOLIDATION_FRACTION_RANGE: Final = (0.05, 0.5)
PATIENT_FACTOR_LOG_SD: Final = 0.35
SCAN_NOISE_LOG_SD: Final = 0.15
SCAN_DAY_RANGE: Final = (3, 45)  # days since onset
SEVERE_SHARE: Final = 0.4
# A synthetic reader perceives a lobe's involvement with a log-normal error of this spread
# (about +-40 %: visual estimates of percent involvement are rough) and scores the perceived
# percent on the paper's table with their own edges, not with serialct.ctscore, so reader-vs-AI
# agreement on a synthetic cohort is not the pipeline agreeing with itself. Synthetic, not
# measured on radiologists.
READER_PERCEPTION_LOG_SD: Final = 0.35
READER_EDGES: Final = (5.0, 25.0, 50.0, 75.0)  # the paper: 1 <5 %, 2 6-25, 3 26-49, 4 50-75, 5 >75

# Clinical draws, roughly Table 1 of the paper (per severity).
ONSET_START: Final = dt.date(2020, 1, 10)
ONSET_SPREAD_DAYS: Final = 30
ADMISSION_DELAY: Final = {"moderate": (8.0, 4.4), "severe": (10.0, 4.4)}  # normal mean, sd (d)
ADMISSION_DELAY_RANGE: Final = (2, 20)
HOSPITAL_DAYS: Final = {"moderate": (18.0, 8.0), "severe": (29.0, 9.0)}
SCANS: Final = {"moderate": (5.0, 1.3), "severe": (4.5, 1.2)}  # normal mean, sd; clipped 3-7
SCAN_COUNT_RANGE: Final = (3, 7)
SCAN_INTERVAL: Final = (8.0, 3.0)
SCAN_INTERVAL_RANGE: Final = (4, 14)
LUNG_SCALE: Final = {"moderate": 1.0, "severe": 0.85}
LUNG_SCALE_LOG_SD: Final = 0.08
AGE: Final = {"moderate": (41.0, 14.0), "severe": (56.0, 15.0)}
AGE_RANGE: Final = (18, 90)
P_MALE: Final = {"moderate": 0.44, "severe": 0.59}
P_YES: Final = {
    "hypertension": {"moderate": 0.066, "severe": 0.176},
    "diabetes": {"moderate": 0.016, "severe": 0.118},
    "fever": {"moderate": 0.82, "severe": 0.91},
    "cough": {"moderate": 0.557, "severe": 0.706},
}
LYMPHOCYTE: Final = {"moderate": (1.36, 0.43), "severe": (0.85, 0.74)}  # median G/L, log sd
CRP: Final = {"moderate": (7.67, 1.10), "severe": (47.63, 0.81)}  # median mg/L, log sd

LOBE_PERCENT_COLUMNS: Final = tuple(f"lesion_percent_{lobe}" for lobe in LOBES)
SCORE_COLUMNS: Final = tuple(f"score_{lobe}" for lobe in LOBES)


@dataclass
class PatientPlan:
    """One synthetic patient: clinical row and the days (since onset) of the scans."""

    patient_id: str
    severity: str
    onset: dt.date
    admission: dt.date
    clinical: dict[str, Any]
    lung_scale: float
    factor: float
    scan_days: list[int] = field(default_factory=list)


def cubic(coefs: tuple[float, float, float], x: float) -> float:
    """b1 x + b2 x^2 + b3 x^3 (a cubic through the origin)."""
    b1, b2, b3 = coefs
    return b1 * x + b2 * x**2 + b3 * x**3


def scan_burden(
    severity: str, day: float, factor: float, rng: np.random.Generator
) -> tuple[float, float]:
    """(lesion percent, consolidation fraction of the lesion) of a scan on ``day`` after onset."""
    mean = cubic(LESION_CUBIC[severity], day)
    noisy = mean * factor * float(np.exp(rng.normal(0.0, SCAN_NOISE_LOG_SD)))
    percent = float(np.clip(noisy, MIN_LESION_PERCENT, MAX_LESION_PERCENT))
    cons = cubic(CONSOLIDATION_CUBIC[severity], day)
    ratio = cons / mean if mean > 0 else CONSOLIDATION_FRACTION_RANGE[0]
    return percent, float(np.clip(ratio, *CONSOLIDATION_FRACTION_RANGE))


def _severities(rng: np.random.Generator, patients: int) -> list[str]:
    n_severe = int(round(SEVERE_SHARE * patients))
    if patients >= 2:
        n_severe = min(max(n_severe, 1), patients - 1)
    labels = [SEVERITIES[1]] * n_severe + [SEVERITIES[0]] * (patients - n_severe)
    return [labels[i] for i in rng.permutation(patients)]


def _scan_days(rng: np.random.Generator, severity: str, admission_day: int) -> list[int]:
    lo, hi = SCAN_DAY_RANGE
    n = int(np.clip(round(rng.normal(*SCANS[severity])), *SCAN_COUNT_RANGE))
    first = int(np.clip(admission_day + rng.integers(-1, 3), lo, hi))
    steps = np.clip(np.rint(rng.normal(*SCAN_INTERVAL, size=n - 1)), *SCAN_INTERVAL_RANGE)
    days = first + np.concatenate([[0], np.cumsum(steps)])
    if days[-1] > hi:  # squeeze the follow-up into the window, keeping the order
        days = first + (days - first) * (hi - first) / (days[-1] - first)
    return sorted({int(d) for d in np.rint(days)})


def plan_patient(rng: np.random.Generator, patient_id: str, severity: str) -> PatientPlan:
    """Draw a patient's clinical sheet row and scan schedule."""
    onset = ONSET_START + dt.timedelta(days=int(rng.integers(ONSET_SPREAD_DAYS)))
    delay = int(np.clip(round(rng.normal(*ADMISSION_DELAY[severity])), *ADMISSION_DELAY_RANGE))
    admission = onset + dt.timedelta(days=delay)
    stay = max(7, int(round(rng.normal(*HOSPITAL_DAYS[severity]))))
    age = int(np.clip(round(rng.normal(*AGE[severity])), *AGE_RANGE))
    clinical: dict[str, Any] = {
        "patient_id": patient_id,
        "severity": severity,
        "onset_date": onset.isoformat(),
        "admission_date": admission.isoformat(),
        "age": age,
        "sex": "male" if rng.random() < P_MALE[severity] else "female",
    }
    for name, probs in P_YES.items():
        clinical[name] = "yes" if rng.random() < probs[severity] else "no"
    lym_med, lym_sd = LYMPHOCYTE[severity]
    crp_med, crp_sd = CRP[severity]
    clinical["lymphocyte"] = round(lym_med * float(np.exp(rng.normal(0, lym_sd))), 2)
    clinical["crp"] = round(crp_med * float(np.exp(rng.normal(0, crp_sd))), 2)
    clinical["discharge_date"] = (admission + dt.timedelta(days=stay)).isoformat()
    lung_scale = LUNG_SCALE[severity] * float(np.exp(rng.normal(0, LUNG_SCALE_LOG_SD)))
    factor = float(np.exp(rng.normal(0, PATIENT_FACTOR_LOG_SD)))
    plan = PatientPlan(patient_id, severity, onset, admission, clinical, lung_scale, factor)
    plan.scan_days = _scan_days(rng, severity, delay)
    return plan


def reader_scores(lobe_percent: dict[str, float], rng: np.random.Generator) -> dict[str, int]:
    """A radiologist's 0-5 lobe scores from their own noisy perception of the true percents
    (READER_PERCEPTION_LOG_SD), on the paper's table (READER_EDGES); a lobe without lesion is
    scored 0."""
    scores = {}
    for lobe in LOBES:
        true = float(lobe_percent[lobe])
        if true <= 0:
            scores[lobe] = 0
            continue
        seen = true * float(np.exp(rng.normal(0.0, READER_PERCEPTION_LOG_SD)))
        scores[lobe] = 1 + sum(seen > edge for edge in READER_EDGES)
    return scores


def _ds(value: float) -> str:
    """A decimal string (DICOM DS, at most 16 characters) precise enough for exact geometry."""
    return f"{value:.10g}"


def _uid(*parts: object) -> str:
    return generate_uid(prefix=None, entropy_srcs=[str(p) for p in parts])


def write_series(
    folder: Path,
    phantom: Phantom,
    plan: PatientPlan,
    study_date: dt.date,
    seed: int,
    rng: np.random.Generator,
) -> list[Path]:
    """Write one CT series (one file per slice, random file names) into ``folder``."""
    nz, ny, nx = phantom.hu.shape
    dz, dy, dx = phantom.spacing
    z0, y0, x0 = origin_for_shape(phantom.hu.shape)
    date = study_date.strftime("%Y%m%d")
    key = (seed, plan.patient_id, date)
    study_uid, series_uid = _uid(*key, "study"), _uid(*key, "series")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "SERIALCT_SYNTH"
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PatientID = plan.patient_id
    ds.PatientName = plan.patient_id
    ds.PatientSex = "M" if plan.clinical["sex"] == "male" else "F"
    ds.PatientAge = f"{plan.clinical['age']:03d}Y"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = _uid(*key, "frame")
    ds.StudyID = date
    ds.AccessionNumber = f"{plan.patient_id}{date}"
    for tag in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        setattr(ds, tag, date)
    for tag in ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime"):
        setattr(ds, tag, "093000")
    ds.StudyDescription = "CT CHEST (synthetic)"
    ds.SeriesDescription = "synthetic chest phantom"
    ds.Modality = "CT"
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "phantom"
    ds.KVP = KVP
    ds.ConvolutionKernel = CONVOLUTION_KERNEL
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = 1
    ds.SliceThickness = _ds(dz)
    ds.SpacingBetweenSlices = _ds(dz)
    ds.PixelSpacing = [_ds(dy), _ds(dx)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.Rows, ds.Columns = ny, nx
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = RESCALE_INTERCEPT
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = WINDOW

    stored = (phantom.hu.astype(np.int32) - RESCALE_INTERCEPT).astype("<i2")
    paths = []
    for k in range(nz):
        sop_uid = _uid(*key, "slice", k)
        meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        z = z0 + k * dz
        ds.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(z)]
        ds.SliceLocation = _ds(z)
        ds.PixelData = stored[k].tobytes()
        path = folder / f"{rng.bytes(16).hex()}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _truth_row(plan: PatientPlan, date: dt.date, day: int, phantom: Phantom) -> dict[str, Any]:
    vol = phantom.volumes_cm3()
    row: dict[str, Any] = {
        "patient_id": plan.patient_id,
        "study_date": date.isoformat(),
        "scan_id": date.strftime("%Y%m%d"),
        "days_since_onset": day,
        "lung_volume_cm3": round(vol["lung"], 3),
        "lesion_volume_cm3": round(vol["lesion"], 3),
        "ggo_volume_cm3": round(vol["ggo"], 3),
        "consolidation_volume_cm3": round(vol["consolidation"], 3),
        "lesion_percent": round(100 * vol["lesion"] / vol["lung"], 4),
        "ggo_percent": round(100 * vol["ggo"] / vol["lung"], 4),
        "consolidation_percent": round(100 * vol["consolidation"] / vol["lung"], 4),
    }
    lobe = phantom.lobe_lesion_percent()
    row.update(
        {col: round(lobe[name], 4) for col, name in zip(LOBE_PERCENT_COLUMNS, LOBES, strict=True)}
    )
    return row


def _reading_row(
    plan: PatientPlan, date: dt.date, phantom: Phantom, rng: np.random.Generator
) -> dict[str, Any]:
    scores = reader_scores(phantom.lobe_lesion_percent(), rng)
    row: dict[str, Any] = {"patient_id": plan.patient_id, "study_date": date.isoformat()}
    row["ct_score"] = sum(scores.values())
    row.update({col: scores[lobe] for col, lobe in zip(SCORE_COLUMNS, LOBES, strict=True)})
    row["involved_lobes"] = sum(s > 0 for s in scores.values())
    return row


def _write_reference_histogram(
    path: Path,
    n: int,
    seed_seq: np.random.SeedSequence,
    shape: tuple[int, int, int],
    hist_cfg: dict[str, Any],
) -> None:
    """Pooled true-lung HU histogram of ``n`` normal phantoms."""
    values = []
    for child in seed_seq.spawn(n):
        normal = draw_phantom(np.random.default_rng(child), shape, lesion_percent=0.0)
        values.append(normal.hu[normal.lung > 0])
    pooled = np.concatenate(values)
    edges, density = lung_histogram(pooled, np.ones(pooled.shape, bool), hist_cfg)
    write_reference(path, edges, density)


def synth_cohort(
    out: Path,
    patients: int,
    seed: int = 0,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    normal_scans: int = 3,
) -> Path:
    """Write a synthetic cohort under ``out`` and return the path of its ``config.yaml``.

    ``out/dicom`` holds one random folder per patient with all its CT series (random file
    names; group by tags). Sheets: clinical.tsv, readings.tsv, truth.tsv and
    reference_histogram.tsv (true lungs of ``normal_scans`` lesion-free phantoms).
    """
    if patients < 1:
        raise ValueError(f"patients must be at least 1, got {patients}")
    out = Path(out).resolve()
    dicom_root = out / "dicom"
    dicom_root.mkdir(parents=True, exist_ok=True)
    cfg = defaults()
    root_seq = np.random.SeedSequence(seed)
    cohort_seq, patient_seq, normal_seq = root_seq.spawn(3)
    cohort_rng = np.random.default_rng(cohort_seq)
    severities = _severities(cohort_rng, patients)

    clinical, readings, truth = [], [], []
    for i, (child, severity) in enumerate(
        zip(patient_seq.spawn(patients), severities, strict=True)
    ):
        rng = np.random.default_rng(child)
        plan = plan_patient(rng, f"P{i + 1:03d}", severity)
        anatomy: Anatomy = draw_anatomy(rng, shape, plan.lung_scale)
        folder = dicom_root / rng.bytes(8).hex()
        folder.mkdir(exist_ok=True)
        for day in plan.scan_days:
            date = plan.onset + dt.timedelta(days=day)
            percent, cons_fraction = scan_burden(severity, day, plan.factor, rng)
            phantom = add_lesions(anatomy, rng, percent, cons_fraction)
            write_series(folder, phantom, plan, date, seed, rng)
            truth.append(_truth_row(plan, date, day, phantom))
            readings.append(_reading_row(plan, date, phantom, rng))
        clinical.append(plan.clinical)
        log.info("patient %s: %d scans written", plan.patient_id, len(plan.scan_days))

    paths = {name: out / f"{name}.tsv" for name in ("clinical", "readings", "truth")}
    for name, rows in (("clinical", clinical), ("readings", readings), ("truth", truth)):
        pd.DataFrame(rows).to_csv(paths[name], sep="\t", index=False)
    reference = out / "reference_histogram.tsv"
    _write_reference_histogram(reference, normal_scans, normal_seq, shape, cfg["histogram"])

    config = {
        "results": str(out / "results"),
        "centers": {
            CENTER_ID: {
                "dicom": str(dicom_root),
                "clinical": str(paths["clinical"]),
                "readings": str(paths["readings"]),
            }
        },
        "reference_histogram": str(reference),
        "model": str(PHANTOM_MODEL),  # phantom lesions: the phantom-trained weights
    }
    thickness = spacing_for_shape(shape)[0]
    if thickness > cfg["series"]["max_slice_thickness_mm"]:
        # the demo's coarse slices are thicker than a diagnostic series: accept them explicitly
        config["series"] = {"max_slice_thickness_mm": float(np.ceil(thickness))}
    validate_config(copy.deepcopy(config), source="synthetic config")
    config_path = out / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log.info("synthetic cohort: %d patients, %d scans in %s", patients, len(truth), out)
    return config_path


def synth_index_only(out: Path, scans: int, seed: int = 0) -> Path:
    """An index-only cohort of exactly ``scans`` scans: what the index checkpoint would have
    written (``results/index/SYNTH.tsv``, ``.series.tsv``, ``.fingerprint`` and one manifest
    per scan), the clinical and readings sheets, a flat reference histogram and a config,
    but no images and an empty DICOM folder. A dry run on it builds the full per-scan DAG
    (DAG-scale benchmark, ``benchmarks/dag_scale.py``); the per-scan jobs themselves cannot
    run. Returns the config.
    """
    from serialct.dicom.index import MANIFEST_SUFFIX, SERIES_TABLE_COLUMNS, series_table_path
    from serialct.dicom.tree import fingerprint_path, tree_fingerprint

    if scans < 1:
        raise ValueError(f"scans must be at least 1, got {scans}")
    out = Path(out).resolve()
    (out / "dicom").mkdir(parents=True, exist_ok=True)
    index_dir = out / "results" / "index"
    cfg = defaults()
    rng = np.random.default_rng(seed)
    clinical, readings, rows = [], [], []
    while len(rows) < scans:
        severity = SEVERITIES[int(rng.random() < SEVERE_SHARE)]
        plan = plan_patient(rng, f"P{len(clinical) + 1:05d}", severity)
        clinical.append(plan.clinical)
        for day in plan.scan_days[: scans - len(rows)]:
            date = plan.onset + dt.timedelta(days=day)
            scan_id = date.strftime("%Y%m%d")
            key = (seed, plan.patient_id, scan_id)
            rows.append(
                {
                    "center": CENTER_ID, "patient_id": plan.patient_id, "scan_id": scan_id,
                    "study_date": date.isoformat(), "study_uid": _uid(*key, "study"),
                    "series_uid": _uid(*key, "series"), "series_key": f"s{scan_id}",
                    "series_number": 2, "series_description": "index-only synthetic scan",
                    "manufacturer": MANUFACTURER, "kernel": CONVOLUTION_KERNEL, "n_files": 0,
                    "slice_thickness": 1.0,
                }
            )  # fmt: skip
            percent, _ = scan_burden(severity, day, plan.factor, rng)
            lobes = dict.fromkeys(LOBES, percent)
            phantom_free = {"patient_id": plan.patient_id, "study_date": date.isoformat()}
            scores = reader_scores(lobes, rng)
            readings.append(
                phantom_free
                | {"ct_score": sum(scores.values())}
                | {col: scores[lobe] for col, lobe in zip(SCORE_COLUMNS, LOBES, strict=True)}
                | {"involved_lobes": sum(s > 0 for s in scores.values())}
            )
    index = pd.DataFrame(rows)
    index_tsv = index_dir / f"{CENTER_ID}.tsv"
    index_tsv.parent.mkdir(parents=True, exist_ok=True)
    index.to_csv(index_tsv, sep="\t", index=False)
    series = index.assign(chosen=True, reason="index-only synthetic cohort")
    series.reindex(columns=list(SERIES_TABLE_COLUMNS)).to_csv(
        series_table_path(index_tsv), sep="\t", index=False
    )
    # the tree fingerprint the index step records last (an index-only cohort's tree is empty)
    fingerprint_path(index_tsv).write_text(tree_fingerprint(out / "dicom") + "\n")
    for row in rows:
        manifest = index_dir / CENTER_ID / row["patient_id"] / f"{row['scan_id']}{MANIFEST_SUFFIX}"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps(row | {"files": [], "sha1": ""}, indent=2) + "\n")

    paths = {name: out / f"{name}.tsv" for name in ("clinical", "readings")}
    pd.DataFrame(clinical).to_csv(paths["clinical"], sep="\t", index=False)
    pd.DataFrame(readings).to_csv(paths["readings"], sep="\t", index=False)
    hist = cfg["histogram"]
    edges = np.arange(hist["min_hu"], hist["max_hu"] + hist["bin_width_hu"], hist["bin_width_hu"])
    reference = out / "reference_histogram.tsv"
    write_reference(reference, edges, np.full(len(edges) - 1, 1.0 / (len(edges) - 1)))
    config = {
        "results": str(out / "results"),
        "centers": {
            CENTER_ID: {
                "dicom": str(out / "dicom"),
                "clinical": str(paths["clinical"]),
                "readings": str(paths["readings"]),
            }
        },
        "reference_histogram": str(reference),
    }
    validate_config(copy.deepcopy(config), source="index-only synthetic config")
    config_path = out / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log.info("index-only synthetic cohort: %d patients, %d scans in %s", len(clinical), scans, out)
    return config_path
