"""Spearman, partial Spearman and Mann-Whitney tests, and the correlations table.

Partial Spearman (the paper's Table 3 note: controlling for time from symptom onset): x, y and
the control z are ranked (average ranks for ties); the ranks of x and of y are each regressed on
the ranks of z (least squares with an intercept); rho is the Pearson correlation of the two
residual vectors, and p is two-sided from t = rho * sqrt((n - 3) / (1 - rho^2)) with n - 3
degrees of freedom (one control variable). This is SPSS's partial correlation run on ranks.

Too few cases (n < 3, n < 4 for the partial) or a constant variable give NaN, never a number.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from serialct.stats.describe import numeric_column

log = logging.getLogger("serialct")

MIN_N = 3
MIN_N_PARTIAL = 4
CONTROL = "days_since_onset"
GROUPS = ("all", "moderate", "severe")
TIMEPOINTS_ALL = ("all", "admission", "week1", "week2")
CT_SCORE_PAIRS = (
    "lesion_percent",
    "ggo_percent",
    "consolidation_percent",
    "lesion_volume_cm3",
    "ai_ct_score",
)
LOBE_PAIR = ("involved_lobes", "reader_involved_lobes")  # (x: AI, y: radiologists)
CORRELATION_COLUMNS = ["x", "y", "group", "timepoint", "method", "rho", "p", "n"]


class Correlation(NamedTuple):
    rho: float
    p: float
    n: int


def _pairs(*arrays: np.ndarray) -> list[np.ndarray]:
    data = [np.asarray(a, dtype=float) for a in arrays]
    keep = np.logical_and.reduce([np.isfinite(a) for a in data])
    return [a[keep] for a in data]


def _constant(a: np.ndarray) -> bool:
    return a.size == 0 or bool(np.all(a == a[0]))


def spearman(x: np.ndarray, y: np.ndarray) -> Correlation:
    """Spearman's rho and two-sided p (t with n - 2 df) over complete pairs."""
    x, y = _pairs(x, y)
    n = int(x.size)
    if n < MIN_N or _constant(x) or _constant(y):
        return Correlation(math.nan, math.nan, n)
    res = stats.spearmanr(x, y)
    return Correlation(float(res.statistic), float(res.pvalue), n)


def _residuals(target: np.ndarray, control: np.ndarray) -> np.ndarray:
    design = np.column_stack([np.ones_like(control), control])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return target - design @ coef


def partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> Correlation:
    """Spearman correlation of x and y controlling for z (see the module docstring)."""
    x, y, z = _pairs(x, y, z)
    n = int(x.size)
    if n < MIN_N_PARTIAL or _constant(x) or _constant(y):
        return Correlation(math.nan, math.nan, n)
    rx, ry, rz = (stats.rankdata(a) for a in (x, y, z))
    ex, ey = _residuals(rx, rz), _residuals(ry, rz)
    denom = math.sqrt(float(ex @ ex) * float(ey @ ey))
    if denom == 0.0:
        return Correlation(math.nan, math.nan, n)
    rho = float(np.clip((ex @ ey) / denom, -1.0, 1.0))
    df = n - 3
    if abs(rho) == 1.0:
        return Correlation(rho, 0.0, n)
    t = rho * math.sqrt(df / (1.0 - rho * rho))
    return Correlation(rho, float(2.0 * stats.t.sf(abs(t), df)), n)


def mann_whitney(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Mann-Whitney U p value (scipy's default method); NaN if a group is empty."""
    a, b = (np.asarray(v, dtype=float) for v in (a, b))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return math.nan
    if _constant(np.concatenate([a, b])):
        return math.nan
    return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def _subset(scans: pd.DataFrame, group: str, timepoint: str) -> pd.DataFrame:
    sub = scans if group == "all" else scans[scans["severity"] == group]
    if timepoint != "all":
        sub = sub[sub["timepoint"] == timepoint]
    return sub


def correlation_table(scans: pd.DataFrame) -> pd.DataFrame:
    """All contract rows of correlations.tsv (timepoint rows use the assigned scan per patient).

    ``scans`` needs a ``timepoint`` column; missing variables give rows with n = 0.
    """
    pairs = [(x, "ct_score") for x in CT_SCORE_PAIRS] + [LOBE_PAIR]
    rows = []
    for x, y in pairs:
        for group in GROUPS:
            for timepoint in TIMEPOINTS_ALL:
                sub = _subset(scans, group, timepoint)
                xs, ys, zs = (
                    numeric_column(sub, x),
                    numeric_column(sub, y),
                    numeric_column(sub, CONTROL),
                )
                for method, result in (
                    ("spearman", spearman(xs, ys)),
                    ("partial_spearman", partial_spearman(xs, ys, zs)),
                ):
                    rows.append(
                        {
                            "x": x,
                            "y": y,
                            "group": group,
                            "timepoint": timepoint,
                            "method": method,
                            "rho": result.rho,
                            "p": result.p,
                            "n": result.n,
                        }
                    )
    table = pd.DataFrame(rows, columns=CORRELATION_COLUMNS)
    empty = int(table["rho"].isna().sum())
    if empty:
        log.info(
            "correlations: %d of %d rows left empty (n too small or constant)", empty, len(table)
        )
    return table
