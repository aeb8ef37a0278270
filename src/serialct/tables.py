"""Fan-in: per-scan metrics + clinical + readings -> tables/scans.tsv and tables/patients.tsv.

Scans and patients that cannot be matched are never dropped silently: a scan without a clinical
row stays in scans.tsv with empty severity and days, a patient without scans is listed in
issues.tsv, and both are logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serialct.constants import LOBES
from serialct.readers import read_json
from serialct.sheets import attach_readings
from serialct.timepoints import assign_timepoints

log = logging.getLogger("serialct")

SCAN_COLUMNS = [
    "center", "patient_id", "scan_id", "study_date", "severity", "days_since_onset",
    "days_since_admission", "timepoint", "lung_volume_cm3", "lesion_volume_cm3",
    "ggo_volume_cm3", "consolidation_volume_cm3", "lesion_percent", "ggo_percent",
    "consolidation_percent", *[f"lesion_percent_{lobe}" for lobe in LOBES], "involved_lobes",
    "ai_ct_score", "hellinger", "iou", "histogram_outside_percent", "ct_score",
    "reader_involved_lobes", "qc_status",
]  # fmt: skip


def read_metrics(paths: Iterable[Path]) -> pd.DataFrame:
    """One row per metrics.json."""
    rows = [read_json(p, "scan metrics") for p in paths]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["study_date"] = pd.to_datetime(frame["study_date"]).dt.date
    return frame


def _days(later: pd.Series, earlier: pd.Series) -> pd.Series:
    delta = pd.to_datetime(later) - pd.to_datetime(earlier)
    return delta.dt.days.astype("Float64")


def build_scans_table(
    metrics: pd.DataFrame,
    clinical: Mapping[str, pd.DataFrame],
    readings: Mapping[str, pd.DataFrame | None],
    config: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Join metrics with each centre's sheets. Returns (scans, issues)."""
    parts, issues = [], []
    for center, sheet in clinical.items():
        scans = metrics[metrics["center"] == center] if not metrics.empty else metrics
        if scans.empty:
            log.warning("centre %s: no scans", center)
            continue
        clin = sheet[["patient_id", "severity", "onset_date", "admission_date"]]
        merged = scans.merge(clin, on="patient_id", how="left", validate="many_to_one")
        for pid in sorted(set(scans["patient_id"]) - set(sheet["patient_id"])):
            log.warning("centre %s: patient %s has images but no clinical row", center, pid)
            issues.append((center, pid, "", "images without a clinical row"))
        for pid in sorted(set(sheet["patient_id"]) - set(scans["patient_id"])):
            log.warning("centre %s: patient %s is in the clinical sheet but has no CT", center, pid)
            issues.append((center, pid, "", "clinical row without images"))
        sheet_readings = readings.get(center)
        if sheet_readings is not None:
            merged = attach_readings(merged, sheet_readings)
            seen = set(zip(merged["patient_id"], pd.to_datetime(merged["study_date"]), strict=True))
            for pid, date in zip(
                sheet_readings["patient_id"],
                pd.to_datetime(sheet_readings["study_date"]),
                strict=True,
            ):
                if (pid, date) not in seen:
                    issues.append((center, pid, date.date().isoformat(), "reading without a CT"))
        if "qc_messages" in scans.columns:  # e.g. a DICOM export that failed (numbers kept)
            for row in scans.itertuples():
                messages = row.qc_messages if isinstance(row.qc_messages, list) else []
                for line in (m for m in messages if str(m).startswith("export:")):
                    issues.append((center, row.patient_id, str(row.study_date), line))
        merged["days_since_onset"] = _days(merged["study_date"], merged["onset_date"])
        merged["days_since_admission"] = _days(merged["study_date"], merged["admission_date"])
        parts.append(merged)
    scans = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SCAN_COLUMNS)
    for column in SCAN_COLUMNS:
        if column not in scans.columns:
            scans[column] = np.nan
    scans["timepoint"] = assign_timepoints(scans, config["timepoints"])
    extra = [c for c in scans.columns if c not in SCAN_COLUMNS]
    extra = [c for c in extra if c not in ("onset_date", "admission_date", "qc_messages")]
    scans = scans[SCAN_COLUMNS + extra].sort_values(["center", "patient_id", "study_date"])
    issue_frame = pd.DataFrame(issues, columns=["center", "patient_id", "study_date", "issue"])
    return scans.reset_index(drop=True), issue_frame


def _longitudinal(group: pd.DataFrame) -> dict[str, float]:
    """Peak, day of peak, first-to-peak slope and resolution of one patient's percent lesion.

    slope: (peak - first) / (peak day - first day) in percentage points per day (empty when
    the first scan is the peak); resolution_ratio: last / peak (empty when the peak is 0);
    days_peak_to_half: days from the peak to the first later scan below half the peak (empty
    when none)."""
    data = group[["days_since_onset", "lesion_percent"]].apply(pd.to_numeric, errors="coerce")
    data = data.dropna()
    out = dict.fromkeys(
        (
            "peak_lesion_percent",
            "peak_day_since_onset",
            "first_lesion_percent",
            "slope_first_to_peak",
            "resolution_ratio",
            "days_peak_to_half",
        ),
        np.nan,
    )
    if data.empty:
        return out
    days, values = data["days_since_onset"].to_numpy(float), data["lesion_percent"].to_numpy(float)
    top = int(np.argmax(values))
    peak, peak_day = float(values[top]), float(days[top])
    out |= {
        "peak_lesion_percent": peak,
        "peak_day_since_onset": peak_day,
        "first_lesion_percent": float(values[0]),
    }
    if peak_day > days[0]:
        out["slope_first_to_peak"] = (peak - float(values[0])) / (peak_day - float(days[0]))
    if peak > 0:
        out["resolution_ratio"] = float(values[-1]) / peak
        later = np.flatnonzero((days > peak_day) & (values < 0.5 * peak))
        if later.size:
            out["days_peak_to_half"] = float(days[later[0]]) - peak_day
    return out


def build_patients_table(scans: pd.DataFrame) -> pd.DataFrame:
    """One row per (center, patient): scan count, follow-up, longitudinal features of percent
    lesion (see ``_longitudinal``), last value and the values at each time point."""
    rows = []
    for (center, pid), group in scans.groupby(["center", "patient_id"], sort=True, dropna=False):
        group = group.sort_values("study_date")
        row: dict[str, Any] = {
            "center": center,
            "patient_id": pid,
            "severity": group["severity"].iloc[0],
            "n_scans": len(group),
            "first_study_date": group["study_date"].iloc[0],
            "last_study_date": group["study_date"].iloc[-1],
            "median_interval_days": float(
                np.median(
                    np.diff(pd.to_datetime(group["study_date"]))
                    .astype("timedelta64[D]")
                    .astype(float)
                )
            )
            if len(group) > 1
            else np.nan,
            "followup_days_since_onset": group["days_since_onset"].max(),
            **_longitudinal(group),
            "last_lesion_percent": group["lesion_percent"].iloc[-1],
        }
        for tp in ("admission", "week1", "week2"):
            hit = group[group["timepoint"] == tp]
            row[f"lesion_percent_{tp}"] = hit["lesion_percent"].iloc[0] if len(hit) else np.nan
            row[f"ct_score_{tp}"] = hit["ct_score"].iloc[0] if len(hit) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
