"""Run the whole cohort analysis: Tables 1-5, correlations.tsv, curve_fits.tsv, summary.json."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd

from serialct.constants import SEVERITIES, TIMEPOINTS
from serialct.stats.correlation import correlation_table
from serialct.stats.curves import curve_fit_table
from serialct.stats.tables import table1, table2, table3, table4, table5
from serialct.timepoints import assign_timepoints

log = logging.getLogger("serialct")

QC_EXCLUDED = ("error", "fail")  # qc_status prefixes of scans left out of the statistics
NUMERIC = ("days_since_onset", "days_since_admission", "ct_score", "lesion_percent")


def prepare_scans(scans: pd.DataFrame, clinical: pd.DataFrame, tp_cfg: dict) -> pd.DataFrame:
    """Scans of patients in the clinical sheet, failed QC dropped, with a ``timepoint`` column."""
    frame = scans.reset_index(drop=True).copy()
    for column in NUMERIC:
        if column not in frame.columns:
            frame[column] = math.nan
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    if "qc_status" in frame.columns:
        status = frame["qc_status"].fillna("").astype(str).str.strip().str.lower()
        failed = status.str.startswith(QC_EXCLUDED)
        if failed.any():
            log.warning(
                "%d scans with qc_status error/fail left out of the statistics",
                int(failed.sum()),
            )
        frame = frame[~failed].reset_index(drop=True)
    # severity: the clinical sheet's, else the scans table's own (pooled centres bring theirs)
    from_sheet = frame["patient_id"].map(clinical.set_index("patient_id")["severity"])
    own = frame["severity"] if "severity" in frame.columns else pd.Series(pd.NA, index=frame.index)
    differ = own.notna() & from_sheet.notna() & (own != from_sheet)
    if differ.any():
        log.warning(
            "%d scans: severity differs from the clinical sheet; the sheet wins", int(differ.sum())
        )
    severity = from_sheet.fillna(own)
    known = severity.isin(SEVERITIES)
    if not known.all():
        log.warning(
            "%d scans without a clinical row or severity left out: %s",
            int((~known).sum()),
            ", ".join(sorted(frame.loc[~known, "patient_id"].astype(str).unique())),
        )
    frame = frame.assign(severity=severity)[known].reset_index(drop=True)
    has_tp = (
        "timepoint" in frame.columns
        and frame["timepoint"].notna().any()
        and (frame["timepoint"].astype(str).str.strip() != "").any()
    )
    if not has_tp:
        frame["timepoint"] = assign_timepoints(frame, tp_cfg)
    if frame["ct_score"].isna().all():
        log.warning("no CT scores (readings): CT score statistics are left empty")
    return frame


def _fmt(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


def summary(
    scans: pd.DataFrame,
    clinical: pd.DataFrame,
    corr: pd.DataFrame,
    fits: pd.DataFrame,
    n_input: int,
) -> dict[str, Any]:
    """Counts and the key numbers the report holds against the paper."""
    centers = {}
    if "center" in scans.columns:
        for center, sub in scans.groupby("center"):
            centers[str(center)] = {
                "patients": int(sub["patient_id"].nunique()),
                "scans": int(len(sub)),
            }
    qc = (
        scans["qc_status"].fillna("").astype(str).value_counts().to_dict()
        if ("qc_status" in scans.columns)
        else {}
    )
    tp_counts = {
        tp: {
            g: int(((scans["timepoint"] == tp) & (scans["severity"] == g)).sum())
            for g in SEVERITIES
        }
        for tp in TIMEPOINTS
    }
    main = corr[
        (corr["x"] == "lesion_percent")
        & (corr["y"] == "ct_score")
        & (corr["group"] == "all")
        & (corr["timepoint"] == "all")
    ]
    spearman = main[main["method"] == "spearman"].iloc[0]
    partial = main[main["method"] == "partial_spearman"].iloc[0]
    fig2 = fits[(fits["x"] == "ct_score") & fits["constant"]].set_index("model")
    peaks: dict[str, dict[str, Any]] = {}
    cubic = fits[(fits["x"] == "days_since_onset") & (fits["model"] == "cubic") & ~fits["constant"]]
    for _, row in cubic.iterrows():
        peaks.setdefault(row["y"], {})[row["group"]] = {
            "peak_day": _fmt(row["peak_x"]),
            "r2": _fmt(row["r2"]),
            "n": int(row["n"]),
        }
    return {
        "patients": int(scans["patient_id"].nunique()),
        "patients_clinical": int(len(clinical)),
        "scans": int(len(scans)),
        "scans_input": n_input,
        "scans_excluded": n_input - int(len(scans)),
        "patients_by_severity": {g: int((clinical["severity"] == g).sum()) for g in SEVERITIES},
        "scans_by_severity": {g: int((scans["severity"] == g).sum()) for g in SEVERITIES},
        "centers": centers,
        "qc_status": {str(k): int(v) for k, v in qc.items()},
        "timepoint_scans": tp_counts,
        "ct_scores": int(scans["ct_score"].notna().sum()),
        "spearman_ct_score_lesion_percent": {
            "rho": _fmt(spearman["rho"]),
            "p": _fmt(spearman["p"]),
            "n": int(spearman["n"]),
        },
        "partial_spearman_ct_score_lesion_percent": {
            "rho": _fmt(partial["rho"]),
            "p": _fmt(partial["p"]),
            "n": int(partial["n"]),
        },
        "fig2_r2": {m: _fmt(fig2.loc[m, "r2"]) for m in ("linear", "quadratic", "cubic")},
        "peaks_cubic_no_constant": peaks,
    }


def _write(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, sep="\t", index=False, na_rep="")


def run_cohort_stats(
    scans: pd.DataFrame, clinical: pd.DataFrame, config: dict, out_dir: Path
) -> None:
    """Write table1.tsv ... table5.tsv, correlations.tsv, curve_fits.tsv, timepoints.tsv and
    summary.json into ``out_dir`` (created). Scans of patients missing from ``clinical`` and
    scans with failed QC are left out; the clinical sheet is limited to patients with scans."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    repeated = clinical["patient_id"].duplicated()
    if repeated.any():
        log.warning(
            "%d repeated patient_id rows in the clinical sheets; the first row is used",
            int(repeated.sum()),
        )
        clinical = clinical[~repeated].reset_index(drop=True)
    frame = prepare_scans(scans, clinical, config["timepoints"])
    with_scans = clinical["patient_id"].isin(frame["patient_id"])
    if not with_scans.all():
        log.warning(
            "%d patients in the clinical sheet have no scans; left out of Table 1",
            int((~with_scans).sum()),
        )
    patients = clinical[with_scans].reset_index(drop=True)
    log.info("cohort statistics: %d patients, %d scans", len(patients), len(frame))
    _write(table1(patients, frame), out_dir / "table1.tsv")
    _write(table2(frame), out_dir / "table2.tsv")
    _write(table3(frame), out_dir / "table3.tsv")
    _write(table4(frame), out_dir / "table4.tsv")
    _write(table5(frame), out_dir / "table5.tsv")
    corr = correlation_table(frame)
    _write(corr, out_dir / "correlations.tsv")
    fits = curve_fit_table(frame)
    _write(
        fits.assign(constant=fits["constant"].map({True: "true", False: "false"})),
        out_dir / "curve_fits.tsv",
    )
    keep = [
        c
        for c in (
            "center",
            "patient_id",
            "scan_id",
            "study_date",
            "severity",
            "days_since_admission",
            "timepoint",
        )
        if c in frame.columns
    ]
    _write(
        frame[keep].assign(study_date=pd.to_datetime(frame["study_date"]).dt.strftime("%Y-%m-%d")),
        out_dir / "timepoints.tsv",
    )
    info = summary(frame, patients, corr, fits, len(scans))
    (out_dir / "summary.json").write_text(json.dumps(info, indent=2) + "\n")
