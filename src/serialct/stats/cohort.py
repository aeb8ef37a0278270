"""Run the whole cohort analysis: Tables 1-5, correlations.tsv, curve_fits.tsv, peaks.tsv,
mixed_model.tsv, centers.tsv, timepoints.tsv and summary.json.

Pooling: patients are keyed by (center, patient_id), so the same id at two centres is two
patients. With more than one centre the internal ``patient_id`` becomes ``center/patient_id``.
Clinical sheets without a ``center`` column are matched to the centre whose scans carry the
patient id (an id found at several centres cannot be matched and is left out of Table 1). The
scans table's own severity (and days) win over the clinical sheet's; the sheet fills gaps.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd

from serialct.constants import SEVERITIES, TIMEPOINTS
from serialct.stats.correlation import correlation_table, spearman
from serialct.stats.curves import curve_fit_table
from serialct.stats.describe import median_iqr
from serialct.stats.longitudinal import bootstrap_peaks, mixed_model
from serialct.stats.repeated import repeated_measures_table
from serialct.stats.tables import table1, table2, table3, table4, table5
from serialct.timepoints import assign_timepoints

log = logging.getLogger("serialct")

QC_EXCLUDED = ("error", "fail")  # qc_status prefixes of scans left out of the statistics
EXCLUDED_COLUMNS = ("center", "patient_id", "scan_id", "study_date")  # of stats/excluded.tsv
NUMERIC = ("days_since_onset", "days_since_admission", "ct_score", "lesion_percent")


CENTER_SEP = "/"


def pool(scans: pd.DataFrame, clinical: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scans and clinical rows keyed per (center, patient_id) (see the module docstring)."""
    scans = scans.reset_index(drop=True).copy()
    if "center" not in scans.columns:
        scans["center"] = ""
    scans["center"] = scans["center"].fillna("").astype(str)
    scans["patient_id"] = scans["patient_id"].astype(str)
    clinical = clinical.reset_index(drop=True).copy()
    clinical["patient_id"] = clinical["patient_id"].astype(str)
    sites = scans.groupby("patient_id")["center"].agg(lambda c: sorted(set(c)))
    own = clinical["center"].astype("string") if "center" in clinical.columns else None
    guess = clinical["patient_id"].map(
        lambda p: sites[p][0] if len(sites.get(p, [])) == 1 else None
    )
    if scans["center"].nunique() == 1:
        guess = guess.fillna(scans["center"].iloc[0]) if len(scans) else guess
    center = guess if own is None else own.fillna(guess)
    ambiguous = center.isna() & clinical["patient_id"].isin(sites.index)
    if ambiguous.any():
        log.warning(
            "%d clinical rows match patient ids at several centres and have no center column; "
            "left out of Table 1 (the scans' own severity is used): %s",
            int(ambiguous.sum()),
            ", ".join(sorted(clinical.loc[ambiguous, "patient_id"])),
        )
    clinical = clinical.assign(center=center.fillna("").astype(str))[~ambiguous]
    pooled = scans["center"].nunique() > 1
    if pooled:
        log.info("pooling %d centres: patients keyed center/patient_id", scans["center"].nunique())
        for frame in (scans, clinical):
            frame["source_patient_id"] = frame["patient_id"]
            frame["patient_id"] = frame["center"] + CENTER_SEP + frame["patient_id"]
    return scans, clinical.reset_index(drop=True)


def prepare_scans(
    scans: pd.DataFrame, clinical: pd.DataFrame, tp_cfg: dict,
    excluded: list[pd.DataFrame] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Scans of patients in the clinical sheet, failed QC dropped, with a ``timepoint`` column.
    The scans left out are appended to ``excluded`` (when given) with a ``reason`` column."""
    frame = scans.reset_index(drop=True).copy()

    def leave_out(rows: pd.Series, reason: pd.Series | str) -> None:
        if excluded is not None and rows.any():
            keep = [c for c in EXCLUDED_COLUMNS if c in frame.columns]
            excluded.append(frame.loc[rows, keep].assign(reason=reason))

    for column in NUMERIC:
        if column not in frame.columns:
            frame[column] = math.nan
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    if "qc_status" in frame.columns:
        status = frame["qc_status"].fillna("").astype(str).str.strip().str.lower()
        failed = status.str.startswith(QC_EXCLUDED)
        leave_out(failed, "qc_status: " + frame.loc[failed, "qc_status"].astype(str))
        if failed.any():
            log.warning(
                "%d scans with qc_status error/fail left out of the statistics",
                int(failed.sum()),
            )
        frame = frame[~failed].reset_index(drop=True)
    # severity: the scans table's own (authoritative for pooled centres), else the sheet's
    sheet = clinical.drop_duplicates("patient_id").set_index("patient_id")["severity"]
    from_sheet = frame["patient_id"].map(sheet)
    own = frame["severity"] if "severity" in frame.columns else pd.Series(pd.NA, index=frame.index)
    own = own.where(own.isin(SEVERITIES))
    differ = own.notna() & from_sheet.notna() & (own != from_sheet)
    if differ.any():
        log.warning(
            "%d scans: severity differs from the clinical sheet; the scans table's wins",
            int(differ.sum()),
        )
    severity = own.fillna(from_sheet)
    known = severity.isin(SEVERITIES)
    if not known.all():
        log.warning(
            "%d scans without a clinical row or severity left out: %s",
            int((~known).sum()),
            ", ".join(sorted(frame.loc[~known, "patient_id"].astype(str).unique())),
        )
    leave_out(~known, "no clinical row or severity for this patient")
    frame = frame.assign(severity=severity)[known].reset_index(drop=True)
    # rows that carry a time point keep it (a centre's own); every other row, whatever the rest
    # of a pooled table carries, gets one assigned from its days since admission
    given = frame["timepoint"] if "timepoint" in frame.columns else pd.Series(pd.NA, frame.index)
    given = given.astype("string").str.strip().replace("", pd.NA)
    missing = given.isna()
    if missing.any():
        given = given.copy()
        given[missing] = assign_timepoints(frame[missing], tp_cfg)
    frame["timepoint"] = given
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


CENTER_COLUMNS = [
    "center",
    "patients",
    "moderate",
    "severe",
    "scans",
    "scans_per_patient",
    "days_since_onset",
    "lesion_percent",
    "ct_score",
    "ct_scores",
    "spearman_rho",
    "spearman_p",
    "note",
]


def center_table(scans: pd.DataFrame) -> pd.DataFrame:
    """stats/centers.tsv: per centre (and all pooled) counts, median (IQR) of the main measures
    and the Spearman correlation of CT score vs percent lesion (empty with a note when n < 3)."""
    rows = []
    parts = [(str(c), sub) for c, sub in scans.groupby("center", sort=True)]
    if len(parts) != 1:
        parts.append(("all", scans))
    for center, sub in parts:
        patients = sub.groupby("patient_id")["severity"].first()
        rho = spearman(sub["ct_score"].to_numpy(float), sub["lesion_percent"].to_numpy(float))
        rows.append(
            {
                "center": center,
                "patients": int(patients.size),
                "moderate": int((patients == "moderate").sum()),
                "severe": int((patients == "severe").sum()),
                "scans": int(len(sub)),
                "scans_per_patient": median_iqr(sub.groupby("patient_id").size()),
                "days_since_onset": median_iqr(sub["days_since_onset"]),
                "lesion_percent": median_iqr(sub["lesion_percent"]),
                "ct_score": median_iqr(sub["ct_score"]),
                "ct_scores": int(sub["ct_score"].notna().sum()),
                "spearman_rho": rho.rho,
                "spearman_p": rho.p,
                "note": ""
                if math.isfinite(rho.rho)
                else "Spearman: fewer than 3 pairs or constant",
            }
        )
    return pd.DataFrame(rows, columns=CENTER_COLUMNS)


def _write(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, sep="\t", index=False, na_rep="")


def run_cohort_stats(
    scans: pd.DataFrame, clinical: pd.DataFrame, config: dict, out_dir: Path
) -> list[Path]:
    """Write table1.tsv ... table5.tsv, correlations.tsv, curve_fits.tsv, peaks.tsv,
    mixed_model.tsv, centers.tsv, repeated_measures.tsv, timepoints.tsv, excluded.tsv and
    summary.json into ``out_dir``
    (created); returns the paths. Scans without a severity (own or from ``clinical``) and scans
    whose qc_status is error or fail are left out, each listed in excluded.tsv with its reason;
    the clinical sheet is limited to patients with scans."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scans, clinical = pool(scans, clinical)
    repeated = clinical["patient_id"].duplicated()
    if repeated.any():
        log.warning(
            "%d repeated patient_id rows in the clinical sheets; the first row is used",
            int(repeated.sum()),
        )
        clinical = clinical[~repeated].reset_index(drop=True)
    left_out: list[pd.DataFrame] = []
    frame = prepare_scans(scans, clinical, config["timepoints"], left_out)
    with_scans = clinical["patient_id"].isin(frame["patient_id"])
    if not with_scans.all():
        log.warning(
            "%d patients in the clinical sheet have no scans; left out of Table 1",
            int((~with_scans).sum()),
        )
    patients = clinical[with_scans].reset_index(drop=True)
    log.info("cohort statistics: %d patients, %d scans", len(patients), len(frame))
    written: list[Path] = []

    def write(table: pd.DataFrame, name: str) -> None:
        _write(table, out_dir / name)
        written.append(out_dir / name)

    excluded = (
        pd.concat(left_out, ignore_index=True)
        if left_out
        else pd.DataFrame(columns=[*EXCLUDED_COLUMNS, "reason"])
    )
    write(excluded, "excluded.tsv")
    write(table1(patients, frame), "table1.tsv")
    write(table2(frame), "table2.tsv")
    write(table3(frame), "table3.tsv")
    write(table4(frame), "table4.tsv")
    write(table5(frame), "table5.tsv")
    corr = correlation_table(frame)
    write(corr, "correlations.tsv")
    fits = curve_fit_table(frame)
    write(
        fits.assign(constant=fits["constant"].map({True: "true", False: "false"})), "curve_fits.tsv"
    )
    opts = config["stats"]
    write(bootstrap_peaks(frame, int(opts["bootstrap"]), int(opts["seed"])), "peaks.tsv")
    write(mixed_model(frame, int(opts["min_patients_mixed"])), "mixed_model.tsv")
    write(center_table(frame), "centers.tsv")
    write(repeated_measures_table(frame, int(opts["bootstrap"]), int(opts["seed"])),
          "repeated_measures.tsv")  # fmt: skip
    out = frame.copy()
    if "source_patient_id" in out.columns:
        out["patient_id"] = out["source_patient_id"]
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
        if c in out.columns
    ]
    write(
        out[keep].assign(study_date=pd.to_datetime(out["study_date"]).dt.strftime("%Y-%m-%d")),
        "timepoints.tsv",
    )
    info = summary(frame, patients, corr, fits, len(scans))
    (out_dir / "summary.json").write_text(json.dumps(info, indent=2) + "\n")
    written.append(out_dir / "summary.json")
    return written
