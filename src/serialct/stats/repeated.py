"""Correlations that respect repeated scans of one patient (stats/repeated_measures.tsv).

The paper's all-scan Spearman treats a patient's 3-7 scans as independent, so its p-value is too
small. Beside it, for CT score vs lesion percent:

- ``rm_corr``: the repeated-measures correlation (Bakdash & Marusich 2017, Front. Psychol. 8:456;
  Bland & Altman 1995): the Pearson correlation of x and y after removing each patient's mean
  (the common within-patient slope of an ANCOVA with patient as factor), df = N - k - 1 (N scans,
  k patients), p from t, 95 % interval from Fisher's z with df - 1 (as R's rmcorr). On Bland &
  Altman's pH / PaCO2 data it gives rmcorr's r -0.5068, df 38, p 0.00085 (tests).
- ``clustered_spearman_ci``: the all-scan Spearman with a 95 % percentile interval from a
  bootstrap that resamples patients, not scans.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from serialct.stats.correlation import GROUPS, spearman
from serialct.stats.describe import numeric_column

PAIRS = (("lesion_percent", "ct_score"),)  # (x, y)
REPEATED_COLUMNS = [
    "x", "y", "group", "method", "r", "ci_low", "ci_high", "p", "df", "n_scans", "n_patients",
]  # fmt: skip
Z_95 = stats.norm.ppf(0.975)


class RepeatedCorrelation(NamedTuple):
    r: float
    df: int
    p: float
    ci_low: float
    ci_high: float


def rm_corr(x: np.ndarray, y: np.ndarray, subject: np.ndarray) -> RepeatedCorrelation:
    """Repeated-measures correlation of x and y over subjects (NaN when undefined)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, subject = x[keep], y[keep], np.asarray(subject)[keep]
    codes = pd.factorize(subject)[0]
    k = int(codes.max()) + 1 if codes.size else 0
    df = x.size - k - 1
    nan = RepeatedCorrelation(math.nan, max(df, 0), math.nan, math.nan, math.nan)
    if df < 2:
        return nan
    xc = x - (np.bincount(codes, x) / np.bincount(codes))[codes]
    yc = y - (np.bincount(codes, y) / np.bincount(codes))[codes]
    sxx, syy = float(np.sum(xc * xc)), float(np.sum(yc * yc))
    if sxx <= 0 or syy <= 0:
        return nan
    r = float(np.sum(xc * yc) / math.sqrt(sxx * syy))
    r = min(max(r, -1.0), 1.0)
    t = r * math.sqrt(df / max(1.0 - r * r, 1e-300))
    p = float(2 * stats.t.sf(abs(t), df))
    half = Z_95 / math.sqrt(df - 1)
    z = math.atanh(min(max(r, -0.999999), 0.999999))
    return RepeatedCorrelation(r, df, p, math.tanh(z - half), math.tanh(z + half))


def clustered_spearman_ci(
    x: np.ndarray, y: np.ndarray, subject: np.ndarray, n_boot: int, rng: np.random.Generator
) -> tuple[float, float]:
    """95 % percentile interval of the all-scan Spearman rho, patients resampled with
    replacement (each drawn patient brings all its scans)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, subject = x[keep], y[keep], np.asarray(subject)[keep]
    codes = pd.factorize(subject)[0]
    k = int(codes.max()) + 1 if codes.size else 0
    if n_boot <= 0 or k < 3:
        return math.nan, math.nan
    rows = [np.flatnonzero(codes == c) for c in range(k)]
    rhos = []
    for _ in range(n_boot):
        pick = np.concatenate([rows[c] for c in rng.integers(0, k, k)])
        rho = spearman(x[pick], y[pick]).rho
        if math.isfinite(rho):
            rhos.append(rho)
    if len(rhos) < n_boot / 2:
        return math.nan, math.nan
    low, high = np.percentile(rhos, [2.5, 97.5])
    return float(low), float(high)


def repeated_measures_table(scans: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """stats/repeated_measures.tsv: per pair and group, the all-scan Spearman with its
    patient-clustered bootstrap interval, and the repeated-measures correlation."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for xname, yname in PAIRS:
        for group in GROUPS:
            sub = scans if group == "all" else scans[scans["severity"] == group]
            x, y = numeric_column(sub, xname), numeric_column(sub, yname)
            subject = sub["patient_id"].astype(str).to_numpy()
            both = np.isfinite(x) & np.isfinite(y)
            counts = {"n_scans": int(both.sum()), "n_patients": int(len(set(subject[both])))}
            rho = spearman(x, y)
            low, high = clustered_spearman_ci(x, y, subject, n_boot, rng)
            rows.append({"x": xname, "y": yname, "group": group,
                         "method": "spearman_patient_bootstrap", "r": rho.rho, "ci_low": low,
                         "ci_high": high, "p": rho.p, "df": rho.n - 2, **counts})  # fmt: skip
            rm = rm_corr(x, y, subject)
            rows.append({"x": xname, "y": yname, "group": group, "method": "rm_corr",
                         "r": rm.r, "ci_low": rm.ci_low, "ci_high": rm.ci_high, "p": rm.p,
                         "df": rm.df, **counts})  # fmt: skip
    return pd.DataFrame(rows, columns=REPEATED_COLUMNS)
