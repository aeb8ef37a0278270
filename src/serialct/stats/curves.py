"""SPSS Curve Estimation: linear, quadratic and cubic least squares, with or without constant.

With a constant, r2 is the usual (centered) R^2 and F = (R^2/k) / ((1-R^2)/(n-k-1)). Through the
origin (no constant) r2 is the UNCENTERED R^2 = 1 - SSE / sum(y^2), as SPSS reports it, and
F = (R^2/k) / ((1-R^2)/(n-k)); k is the number of x terms. p is the upper tail of F(k, df).
peak_x is the x of a local maximum of the fitted polynomial (derivative 0, second derivative < 0)
inside the observed x range; with several, the one with the highest fitted value.
"""

from __future__ import annotations

import logging
import math
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from serialct.stats.describe import numeric_column

log = logging.getLogger("serialct")

MODELS = {"linear": 1, "quadratic": 2, "cubic": 3}
FIT_COLUMNS = [
    "x",
    "y",
    "group",
    "model",
    "constant",
    "b0",
    "b1",
    "b2",
    "b3",
    "r2",
    "f",
    "p",
    "n",
    "peak_x",
]
GROUPS = ("all", "moderate", "severe")
ONSET = "days_since_onset"
# (x, y, groups): Fig. 2 (CT score vs percent lesion) and Fig. 3 (each measure vs days since onset)
FIT_PAIRS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("ct_score", "lesion_percent", ("all",)),
    (ONSET, "ct_score", GROUPS),
    (ONSET, "lesion_percent", GROUPS),
    (ONSET, "ggo_percent", GROUPS),
    (ONSET, "consolidation_percent", GROUPS),
)


def design(x: np.ndarray, degree: int, constant: bool) -> np.ndarray:
    """Columns [1,] x, x^2, ... x^degree."""
    powers = range(0 if constant else 1, degree + 1)
    return np.column_stack([x**p for p in powers])


class PolyFit(NamedTuple):
    """A least-squares polynomial: coef[i] multiplies x^i (coef[0] = 0 without a constant)."""

    coef: list[float]
    sse: float
    r2: float
    f: float
    p: float
    df_resid: int
    residual_sd: float


def polyfit(x: np.ndarray, y: np.ndarray, degree: int, constant: bool) -> PolyFit | None:
    """Least squares of y on x^1..x^degree (and 1), any degree; None when it cannot be fitted
    (too few finite pairs, rank deficient, or all-zero / constant y). Columns are scaled to unit
    norm before the solve, which keeps wide-range x (NIST Pontius, Wampler) accurate."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n, params = int(x.size), degree + int(constant)
    if n <= params:
        return None
    # x scaled by a power of two (exact) and columns to unit norm, plus one refinement step
    span = float(np.abs(x).max())
    if span == 0.0:
        return None
    scale = 2.0 ** math.ceil(math.log2(span))
    Z = design(x / scale, degree, constant)
    norms = np.linalg.norm(Z, axis=0)
    A = Z / norms
    scaled, _, rank, _ = np.linalg.lstsq(A, y, rcond=None)
    if rank < A.shape[1]:
        return None
    scaled = scaled + np.linalg.lstsq(A, y - A @ scaled, rcond=None)[0]
    powers = np.arange(0 if constant else 1, degree + 1)
    coef = scaled / norms / scale**powers
    X = design(x, degree, constant)
    sse = float(np.sum((y - X @ coef) ** 2))
    total = float(np.sum((y - y.mean()) ** 2)) if constant else float(np.sum(y**2))
    if total == 0.0:
        return None
    r2 = 1.0 - sse / total
    df2 = n - params
    f = math.inf if r2 >= 1.0 else (r2 / degree) / ((1.0 - r2) / df2)
    p = 0.0 if math.isinf(f) else float(stats.f.sf(f, degree, df2))
    full = [float(c) for c in coef] if constant else [0.0, *(float(c) for c in coef)]
    return PolyFit(full, sse, r2, f, p, df2, math.sqrt(sse / df2))


def peak_x(coefs: list[float], lo: float, hi: float) -> float:
    """x of the highest local maximum of sum(coefs[i] x^i) inside [lo, hi]; NaN if none."""
    poly = np.polynomial.Polynomial(coefs)
    d1, d2 = poly.deriv(1), poly.deriv(2)
    if d1.degree() < 1:
        return math.nan
    best, best_y = math.nan, -math.inf
    for root in d1.roots():
        if abs(root.imag) > 1e-9 * max(1.0, abs(root.real)):
            continue
        r = float(root.real)
        if lo <= r <= hi and d2(r) < 0 and poly(r) > best_y:
            best, best_y = r, float(poly(r))
    return best


def fit_curve(x: np.ndarray, y: np.ndarray, model: str, constant: bool) -> dict[str, Any]:
    """One Curve Estimation fit over complete pairs; NaN statistics when it cannot be fitted."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    out: dict[str, Any] = {
        "model": model,
        "constant": constant,
        "n": int(x.size),
        "b0": math.nan,
        "b1": math.nan,
        "b2": math.nan,
        "b3": math.nan,
        "r2": math.nan,
        "f": math.nan,
        "p": math.nan,
        "peak_x": math.nan,
    }
    fit = polyfit(x, y, MODELS[model], constant)
    if fit is None:
        return out
    for i, value in enumerate(fit.coef):
        if i == 0 and not constant:
            continue
        out[f"b{i}"] = value
    out.update(r2=fit.r2, f=fit.f, p=fit.p, peak_x=peak_x(fit.coef, float(x.min()), float(x.max())))
    return out


def curve_fit_table(scans: pd.DataFrame) -> pd.DataFrame:
    """All contract rows of curve_fits.tsv (every model, with and without constant)."""
    rows = []
    for xname, yname, groups in FIT_PAIRS:
        for group in groups:
            sub = scans if group == "all" else scans[scans["severity"] == group]
            xs, ys = numeric_column(sub, xname), numeric_column(sub, yname)
            for model in MODELS:
                for constant in (True, False):
                    fit = fit_curve(xs, ys, model, constant)
                    rows.append({"x": xname, "y": yname, "group": group, **fit})
    table = pd.DataFrame(rows)[FIT_COLUMNS]
    empty = int(table["r2"].isna().sum())
    if empty:
        log.info("curve fits: %d of %d rows left empty (too few scans)", empty, len(table))
    return table
