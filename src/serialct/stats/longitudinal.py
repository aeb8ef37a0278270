"""Beyond the paper: bootstrap intervals of the Fig. 3 peak days and a mixed-effects model.

Bootstrap: within each group the PATIENTS are resampled with replacement (all scans of a drawn
patient come along, a patient drawn twice counts twice); each replicate refits the cubic through
the origin (as Fig. 3) and takes its peak (local maximum inside the replicate's observed days).
The 95 % interval is the 2.5th-97.5th percentile of the replicates that have a peak; ``n_valid``
says how many did. Each replicate's normal equations are sums of per-patient cross products, so
all replicates are solved at once (a batched 3 x 3 solve).

Mixed model: percent lesion ~ cubic in t = days since onset / 10 (scaled for conditioning),
severity (severe vs moderate) and their interactions, random intercept per patient (statsmodels
MixedLM, REML). A model that fails or does not converge gives an empty table with a note; a
variance on the boundary or a non-positive-definite Hessian is named in the note.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from serialct.stats.curves import GROUPS, ONSET, fit_curve

log = logging.getLogger("serialct")

PEAK_COLUMNS = [
    "x",
    "y",
    "group",
    "model",
    "constant",
    "peak_x",
    "peak_y",
    "ci_low",
    "ci_high",
    "n_boot",
    "n_valid",
    "n_patients",
    "n",
    "note",
]
PEAK_YS = ("ct_score", "lesion_percent", "ggo_percent", "consolidation_percent")
MIN_PATIENTS_BOOT = 4
MAX_COND = 1e12  # replicates with a worse-conditioned normal matrix have no peak
CI = (2.5, 97.5)
MIXED_COLUMNS = ["term", "coef", "se", "p", "n_obs", "n_groups", "converged", "note"]
TIME_SCALE = 10.0  # days per unit of t in the mixed model
MIXED_Y = "lesion_percent"


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def cubic_peaks(coef: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Vectorised peak of b1 x + b2 x^2 + b3 x^3 (rows of ``coef``) inside [lo, hi]; NaN if none.

    The local maximum is where 3 b3 x^2 + 2 b2 x + b1 = 0 and 6 b3 x + 2 b2 < 0, i.e.
    x = (-2 b2 - sqrt(D)) / (6 b3) with D = 4 b2^2 - 12 b1 b3 (x = -b1 / (2 b2) when b3 = 0).
    """
    b1, b2, b3 = coef[:, 0], coef[:, 1], coef[:, 2]
    disc = 4 * b2**2 - 12 * b1 * b3
    with np.errstate(divide="ignore", invalid="ignore"):
        cubic = (-2 * b2 - np.sqrt(np.where(disc >= 0, disc, np.nan))) / (6 * b3)
        quadratic = np.where(b2 < 0, -b1 / (2 * b2), np.nan)
    peak = np.where(b3 == 0, quadratic, cubic)
    inside = np.isfinite(peak) & (peak >= lo) & (peak <= hi)
    return np.where(inside, peak, np.nan)


def _bootstrap_one(
    d: np.ndarray, y: np.ndarray, codes: np.ndarray, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Peak days of ``n_boot`` patient-resampled cubic-through-origin fits."""
    n_pat = int(codes.max()) + 1
    scale = 2.0 ** math.ceil(math.log2(float(np.abs(d).max())))
    X = np.column_stack([(d / scale) ** k for k in (1, 2, 3)])
    xtx = np.zeros((n_pat, 3, 3))
    xty = np.zeros((n_pat, 3))
    np.add.at(xtx, codes, X[:, :, None] * X[:, None, :])
    np.add.at(xty, codes, X * y[:, None])
    lo_p = np.full(n_pat, np.inf)
    hi_p = np.full(n_pat, -np.inf)
    np.minimum.at(lo_p, codes, d)
    np.maximum.at(hi_p, codes, d)
    counts = rng.multinomial(n_pat, np.full(n_pat, 1.0 / n_pat), size=n_boot).astype(float)
    A = np.tensordot(counts, xtx, axes=(1, 0))
    b = counts @ xty
    ok = np.linalg.cond(A) < MAX_COND
    A[~ok] = np.eye(3)
    coef = np.linalg.solve(A, b[:, :, None])[:, :, 0] / scale ** np.arange(1, 4)
    drawn = counts > 0
    lo = np.where(drawn, lo_p, np.inf).min(axis=1)
    hi = np.where(drawn, hi_p, -np.inf).max(axis=1)
    peaks = cubic_peaks(coef, lo, hi)
    peaks[~ok] = np.nan
    return peaks


def bootstrap_peaks(scans: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """stats/peaks.tsv: each Fig. 3 peak (cubic through the origin) with its bootstrap 95 % CI.

    ``scans`` needs ``patient_id`` unique per patient (pooled centres: a centre-qualified key).
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for yname in PEAK_YS:
        for group in GROUPS:
            sub = scans if group == "all" else scans[scans["severity"] == group]
            d, y = _numbers(sub, ONSET), _numbers(sub, yname)
            keep = np.isfinite(d) & np.isfinite(y)
            codes = pd.factorize(sub["patient_id"].to_numpy()[keep])[0]
            d, y = d[keep], y[keep]
            fit = fit_curve(d, y, "cubic", constant=False)
            row: dict[str, Any] = {
                "x": ONSET,
                "y": yname,
                "group": group,
                "model": "cubic",
                "constant": "false",
                "peak_x": fit["peak_x"],
                "peak_y": math.nan,
                "ci_low": math.nan,
                "ci_high": math.nan,
                "n_boot": n_boot,
                "n_valid": 0,
                "n_patients": int(codes.max()) + 1 if codes.size else 0,
                "n": int(d.size),
                "note": "",
            }
            if math.isnan(fit["r2"]):
                row["note"] = "too few scans for a cubic fit"
            elif math.isnan(fit["peak_x"]):
                row["note"] = "no maximum of the fitted curve inside the observed days"
            else:
                px = fit["peak_x"]
                row["peak_y"] = fit["b1"] * px + fit["b2"] * px**2 + fit["b3"] * px**3
            if row["note"] or n_boot == 0:
                row["note"] = row["note"] or "bootstrap off (stats.bootstrap = 0)"
            elif row["n_patients"] < MIN_PATIENTS_BOOT:
                row["note"] = f"fewer than {MIN_PATIENTS_BOOT} patients: no bootstrap interval"
            else:
                peaks = _bootstrap_one(d, y, codes, n_boot, rng)
                valid = peaks[np.isfinite(peaks)]
                row["n_valid"] = int(valid.size)
                if valid.size:
                    row["ci_low"], row["ci_high"] = (float(v) for v in np.percentile(valid, CI))
                if valid.size < n_boot:
                    row["note"] = (
                        f"{n_boot - valid.size} of {n_boot} replicates without a peak in range"
                    )
            rows.append(row)
    return pd.DataFrame(rows, columns=PEAK_COLUMNS)


def _empty_mixed(note: str, n_obs: int = 0, n_groups: int = 0) -> pd.DataFrame:
    log.warning("mixed model left empty: %s", note)
    row = {
        "term": "",
        "coef": math.nan,
        "se": math.nan,
        "p": math.nan,
        "n_obs": n_obs,
        "n_groups": n_groups,
        "converged": False,
        "note": note,
    }
    return pd.DataFrame([row], columns=MIXED_COLUMNS)


def mixed_model(scans: pd.DataFrame, min_patients: int) -> pd.DataFrame:
    """stats/mixed_model.tsv: fixed effects (coef, se, Wald p) of the model in the docstring."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    t = _numbers(scans, ONSET) / TIME_SCALE
    y = _numbers(scans, MIXED_Y)
    severe = (scans["severity"] == "severe").to_numpy(dtype=float)
    keep = np.isfinite(t) & np.isfinite(y)
    t, y, severe = t[keep], y[keep], severe[keep]
    groups = scans["patient_id"].astype(str).to_numpy()[keep]
    n_obs, n_groups = int(y.size), int(pd.unique(groups).size)
    if n_groups < min_patients:
        return _empty_mixed(f"{n_groups} patients (fewer than {min_patients})", n_obs, n_groups)
    unit = f"days/{TIME_SCALE:g}"
    columns = {
        "intercept": np.ones_like(t),
        unit: t,
        f"({unit})^2": t**2,
        f"({unit})^3": t**3,
    }
    both = 0 < severe.sum() < severe.size
    if both:
        columns |= {
            "severe": severe,
            f"severe x {unit}": severe * t,
            f"severe x ({unit})^2": severe * t**2,
            f"severe x ({unit})^3": severe * t**3,
        }
    exog = pd.DataFrame(columns)
    if n_obs <= exog.shape[1] + 1:
        return _empty_mixed(f"{n_obs} scans for {exog.shape[1]} terms", n_obs, n_groups)
    if np.linalg.matrix_rank(exog.to_numpy()) < exog.shape[1] or np.ptp(y) == 0:
        return _empty_mixed("design rank deficient or constant percent lesion", n_obs, n_groups)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = sm.MixedLM(y, exog, groups=groups).fit(reml=True)
        except (np.linalg.LinAlgError, ValueError) as exc:
            return _empty_mixed(f"fit failed: {exc}", n_obs, n_groups)
    if not result.converged:
        return _empty_mixed("did not converge", n_obs, n_groups)
    messages = {str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)}
    notes = [] if both else ["one severity group only: no severity terms"]
    if any("boundary" in m for m in messages):
        notes.append("patient variance on the boundary (near 0)")
    if any("Hessian" in m for m in messages):
        notes.append("Hessian not positive definite: standard errors unreliable")
    fe = result.fe_params
    se = result.bse_fe
    z = fe / se
    p = 2 * stats.norm.sf(np.abs(z))
    note = "; ".join(notes)
    rows = [
        {
            "term": name,
            "coef": float(fe[name]),
            "se": float(se[name]),
            "p": float(p[i]),
            "n_obs": n_obs,
            "n_groups": n_groups,
            "converged": True,
            "note": note,
        }
        for i, name in enumerate(exog.columns)
    ]
    rows.append(
        {
            "term": "patient intercept variance",
            "coef": float(np.asarray(result.cov_re)[0, 0]),
            "se": math.nan,
            "p": math.nan,
            "n_obs": n_obs,
            "n_groups": n_groups,
            "converged": True,
            "note": "random effect",
        }
    )
    rows.append(
        {
            "term": "residual variance",
            "coef": float(result.scale),
            "se": math.nan,
            "p": math.nan,
            "n_obs": n_obs,
            "n_groups": n_groups,
            "converged": True,
            "note": "",
        }
    )
    return pd.DataFrame(rows, columns=MIXED_COLUMNS)
