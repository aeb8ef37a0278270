"""The paper's Tables 1-5 as DataFrames of formatted cells (median (IQR), n (%), p).

Every table starts with the display columns and ends with machine columns (``variable``, ``n``,
``test``). Cells that cannot be computed are empty strings.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from scipy import stats

from serialct.constants import SEVERITIES, TIMEPOINTS
from serialct.stats.correlation import CONTROL, mann_whitney, partial_spearman, spearman
from serialct.stats.describe import format_p, format_rho, median_iqr, n_percent

log = logging.getLogger("serialct")

MAX_LEVELS = 10  # categorical clinical columns with more levels are skipped (free text)
MIN_EXPECTED = 5  # 2x2 tables with a smaller expected count use Fisher's exact test
CLINICAL_KEYS = (
    "patient_id",
    "center",
    "severity",
    "onset_date",
    "admission_date",
    "discharge_date",
)
YES = frozenset({"yes", "y", "true", "1", "1.0", "positive", "+"})
NO = frozenset({"no", "n", "false", "0", "0.0", "negative", "-"})
TIMEPOINT_LABELS = {
    "admission": "On admission",
    "week1": "1 week after admission",
    "week2": "2 weeks after admission",
}
QUANT_ROWS = (
    ("Hellinger distance", "hellinger"),
    ("Intersection over union (IOU)", "iou"),
    ("Volume of bilateral lungs (cm3)", "lung_volume_cm3"),
    ("Volume of pulmonary lesions (cm3)", "lesion_volume_cm3"),
    ("Volume of GGO lesions (cm3)", "ggo_volume_cm3"),
    ("Volume of consolidation lesions (cm3)", "consolidation_volume_cm3"),
    ("Percent of pulmonary lesions (%)", "lesion_percent"),
    ("Percent of GGO lesions (%)", "ggo_percent"),
    ("Percent of consolidation lesions (%)", "consolidation_percent"),
)
TABLE4_ROWS = (("Conventional CT score", "ct_score"), *QUANT_ROWS[2:])
PARTIAL_NOTE = f"controlling for {CONTROL}"


def _num(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def _group_headers(counts: dict[str, int], unit: str = "") -> dict[str, str]:
    suffix = f" {unit}" if unit else ""
    return {
        "all": f"Total, n={counts['all']}{suffix}",
        "moderate": f"Moderate group, n={counts['moderate']}{suffix}",
        "severe": f"Severe group, n={counts['severe']}{suffix}",
    }


def _contingency_p(table: np.ndarray) -> tuple[float, str]:
    """p of a groups x levels count table: Fisher (2x2 with small expected counts) or chi-square."""
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2:
        return math.nan, ""
    expected = stats.contingency.expected_freq(table)
    if table.shape == (2, 2) and expected.min() < MIN_EXPECTED:
        return float(stats.fisher_exact(table).pvalue), "Fisher exact"
    res = stats.chi2_contingency(table, correction=False)
    return float(res.pvalue), "chi-square"


# ---------------------------------------------------------------- Table 1


def _yes_no(series: pd.Series) -> pd.Series | None:
    """Booleans (NaN kept) when every filled cell reads as yes/no, else None."""
    filled = series.dropna().astype(str).str.strip().str.lower()
    if filled.empty or not filled.isin(YES | NO).all():
        return None
    mapped = (
        series.astype(str)
        .str.strip()
        .str.lower()
        .map(lambda v: True if v in YES else (False if v in NO else np.nan))
    )
    return mapped.where(series.notna())


def _numeric_row(label: str, values: pd.Series, severity: pd.Series, variable: str) -> dict:
    row = {"characteristic": label, "all": median_iqr(values)}
    for group in SEVERITIES:
        row[group] = median_iqr(values[severity == group])
    p = mann_whitney(values[severity == "moderate"], values[severity == "severe"])
    test = "" if math.isnan(p) else "Mann-Whitney U"
    return {**row, "p": format_p(p), "test": test, "variable": variable}


def _count_rows(label: str, levels: pd.Series, severity: pd.Series, variable: str) -> list[dict]:
    """n (%) rows of a yes/no (one row) or categorical (header + one row per level) column."""
    filled = levels.notna()
    groups = {"all": filled, **{g: filled & (severity == g) for g in SEVERITIES}}
    table = np.array(
        [
            [
                int(((severity == g) & (levels == lv)).sum())
                for lv in sorted(levels.dropna().unique())
            ]
            for g in SEVERITIES
        ]
    ).reshape(len(SEVERITIES), -1)
    p, test = _contingency_p(table)
    if set(levels.dropna().unique()) <= {True, False}:
        row = {"characteristic": label, "p": format_p(p), "test": test, "variable": variable}
        for g, mask in groups.items():
            row[g] = n_percent(int((levels[mask] == True).sum()), int(mask.sum()))  # noqa: E712
        return [row]
    rows = [
        {
            "characteristic": label,
            "all": "",
            "moderate": "",
            "severe": "",
            "p": format_p(p),
            "test": test,
            "variable": variable,
        }
    ]
    for level in sorted(levels.dropna().unique(), key=str):
        row = {"characteristic": f"  {level}", "p": "", "test": "", "variable": variable}
        for g, mask in groups.items():
            row[g] = n_percent(int((levels[mask] == level).sum()), int(mask.sum()))
        rows.append(row)
    return rows


def _clinical_rows(clinical: pd.DataFrame) -> list[dict]:
    severity = clinical["severity"]
    rows: list[dict] = []
    for column in clinical.columns:
        if column in CLINICAL_KEYS:
            continue
        series = clinical[column]
        if pd.api.types.is_datetime64_any_dtype(series):
            log.info("Table 1: date column %s skipped", column)
            continue
        binary = _yes_no(series)
        if binary is not None:
            rows += _count_rows(column, binary, severity, column)
        elif pd.api.types.is_numeric_dtype(series):
            rows.append(_numeric_row(column, series.astype(float), severity, column))
        elif series.dropna().nunique() <= MAX_LEVELS:
            rows += _count_rows(column, series.where(series.notna()), severity, column)
        else:
            log.info("Table 1: column %s has more than %d values; skipped", column, MAX_LEVELS)
    return rows


def _days(later: pd.Series, earlier: pd.Series) -> pd.Series:
    return (pd.to_datetime(later) - pd.to_datetime(earlier)).dt.days.astype(float)


def _scan_rows(clinical: pd.DataFrame, scans: pd.DataFrame) -> list[dict]:
    severity = clinical.set_index("patient_id")["severity"]
    per_patient = scans.groupby("patient_id")
    counts = per_patient.size().reindex(severity.index).fillna(0).astype(float)
    rows = [_numeric_row("Numbers of chest CT scans", counts, severity, "n_scans")]
    ordered = scans.assign(_date=pd.to_datetime(scans["study_date"])).sort_values(
        ["patient_id", "_date"]
    )
    gaps = ordered.groupby("patient_id")["_date"].diff().dt.days.astype(float)
    gap_severity = ordered["patient_id"].map(severity)
    keep = gaps.notna()
    rows.append(
        _numeric_row(
            "Interval between two adjacent chest CT scans (d)",
            gaps[keep],
            gap_severity[keep],
            "scan_interval_days",
        )
    )
    by_id = clinical.set_index("patient_id")
    onset_admission = _days(by_id["admission_date"], by_id["onset_date"])
    rows.append(
        _numeric_row(
            "Interval between symptom onset and hospitalization (d)",
            onset_admission,
            severity,
            "onset_to_admission_days",
        )
    )
    if "discharge_date" in by_id.columns:
        stay = _days(by_id["discharge_date"], by_id["admission_date"])
        rows.append(_numeric_row("Hospitalized period (d)", stay, severity, "hospital_days"))
    follow = per_patient["days_since_onset"].max().reindex(severity.index).astype(float)
    rows.append(
        _numeric_row(
            "Period of CT follow-up from symptom onset (d)", follow, severity, "followup_days"
        )
    )
    return rows


def table1(clinical: pd.DataFrame, scans: pd.DataFrame) -> pd.DataFrame:
    """Basic characteristics per group with Mann-Whitney / chi-square / Fisher p values."""
    counts = {"all": len(clinical)} | {
        g: int((clinical["severity"] == g).sum()) for g in SEVERITIES
    }
    rows = _clinical_rows(clinical) + _scan_rows(clinical, scans)
    frame = pd.DataFrame(
        rows, columns=["characteristic", "all", "moderate", "severe", "p", "test", "variable"]
    )
    return frame.rename(columns=_group_headers(counts)).fillna("")


# ---------------------------------------------------------------- Tables 2-5


def table2(scans: pd.DataFrame) -> pd.DataFrame:
    """Quantification results over all scans: median (IQR) and n per variable."""
    header = f"Value, n={len(scans)} scans"
    rows = []
    for label, column in QUANT_ROWS:
        values = _num(scans, column)
        rows.append(
            {
                "characteristic": label,
                header: median_iqr(values),
                "n": int(values.notna().sum()),
                "variable": column,
            }
        )
    return pd.DataFrame(rows, columns=["characteristic", header, "n", "variable"])


def table3(scans: pd.DataFrame) -> pd.DataFrame:
    """Involved lobes (radiologists vs AI) and CT score vs percent lesion: Spearman and partial."""
    header = f"Value, n={len(scans)} scans"
    control = _num(scans, CONTROL)
    blocks = []
    reader = _num(scans, "reader_involved_lobes")
    if reader.notna().any():
        blocks.append(
            (
                ("Numbers of involved lobes - Radiologists", "reader_involved_lobes"),
                (
                    "Numbers of involved lobes - Deep learning-based quantification",
                    "involved_lobes",
                ),
            )
        )
    else:
        log.info("Table 3: no radiologists' involved lobes; lobe rows left out")
    blocks.append(
        (("CT score", "ct_score"), ("Percent of pulmonary lesions (%)", "lesion_percent"))
    )
    rows = []
    for (label_a, col_a), (label_b, col_b) in blocks:
        a, b = _num(scans, col_a), _num(scans, col_b)
        rho = spearman(a, b)
        partial = partial_spearman(a, b, control)
        rows.append(
            {
                "characteristic": label_a,
                header: median_iqr(a),
                "Spearman rho": format_rho(rho.rho),
                "p": format_p(rho.p),
                f"Partial rho ({PARTIAL_NOTE})": format_rho(partial.rho),
                "Partial p": format_p(partial.p),
                "n": rho.n,
                "variable": col_a,
            }
        )
        rows.append(
            {"characteristic": label_b, header: median_iqr(b), "n": rho.n, "variable": col_b}
        )
    columns = [
        "characteristic",
        header,
        "Spearman rho",
        "p",
        f"Partial rho ({PARTIAL_NOTE})",
        "Partial p",
        "n",
        "variable",
    ]
    return pd.DataFrame(rows, columns=columns).fillna("")


def _patients(scans: pd.DataFrame, group: str) -> int:
    return int(scans.loc[scans["severity"] == group, "patient_id"].nunique())


def table4(scans: pd.DataFrame) -> pd.DataFrame:
    """Per time point: moderate vs severe median (IQR), Mann-Whitney p, n per group."""
    headers = {g: f"{g.capitalize()} group, n={_patients(scans, g)} patients" for g in SEVERITIES}
    rows = []
    for tp in TIMEPOINTS:
        at = scans[scans["timepoint"] == tp]
        for label, column in TABLE4_ROWS:
            values = _num(at, column)
            parts = {g: values[at["severity"] == g] for g in SEVERITIES}
            p = mann_whitney(parts["moderate"], parts["severe"])
            row = {"timepoint": TIMEPOINT_LABELS[tp], "characteristic": label, "p": format_p(p)}
            for g in SEVERITIES:
                row[headers[g]] = median_iqr(parts[g])
                row[f"n_{g}"] = int(parts[g].notna().sum())
            rows.append({**row, "variable": column})
    columns = [
        "timepoint",
        "characteristic",
        *headers.values(),
        "p",
        *(f"n_{g}" for g in SEVERITIES),
        "variable",
    ]
    return pd.DataFrame(rows, columns=columns)


def table5(scans: pd.DataFrame) -> pd.DataFrame:
    """Per time point and group: CT score and percent lesion median (IQR), Spearman rho and p."""
    rows = []
    for tp in TIMEPOINTS:
        at = scans[scans["timepoint"] == tp]
        score_row = {
            "timepoint": TIMEPOINT_LABELS[tp],
            "characteristic": "CT score",
            "variable": "ct_score",
        }
        lesion_row = {
            "timepoint": TIMEPOINT_LABELS[tp],
            "characteristic": "Percent of pulmonary lesions (%)",
            "variable": "lesion_percent",
        }
        for g in SEVERITIES:
            sub = at[at["severity"] == g]
            score, lesion = _num(sub, "ct_score"), _num(sub, "lesion_percent")
            rho = spearman(score, lesion)
            name = g.capitalize()
            score_row |= {
                f"{name} value": median_iqr(score),
                f"{name} rho": format_rho(rho.rho),
                f"{name} p": format_p(rho.p),
                f"n_{g}": rho.n,
            }
            lesion_row |= {
                f"{name} value": median_iqr(lesion),
                f"{name} rho": "",
                f"{name} p": "",
                f"n_{g}": rho.n,
            }
        rows += [score_row, lesion_row]
    columns = ["timepoint", "characteristic"]
    columns += [f"{g.capitalize()} {k}" for g in SEVERITIES for k in ("value", "rho", "p")]
    columns += [f"n_{g}" for g in SEVERITIES] + ["variable"]
    return pd.DataFrame(rows, columns=columns)
