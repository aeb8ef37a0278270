"""Every statistic of the cohort analysis against a direct numpy/scipy computation (rel 1e-9),
on a synthetic cohort with ties (integer CT scores) and missing values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from cohort_factory import make_cohort
from scipy import stats

from serialct.config import defaults
from serialct.stats.cohort import prepare_scans
from serialct.stats.correlation import correlation_table, mann_whitney, partial_spearman, spearman
from serialct.stats.describe import quartiles
from serialct.stats.tables import _contingency_p

REL = 1e-9


@pytest.fixture(scope="module")
def scans() -> pd.DataFrame:
    raw, clinical = make_cohort(30, seed=11)
    raw.loc[raw.index[::7], "ct_score"] = np.nan  # missing readings
    return prepare_scans(raw, clinical, defaults()["timepoints"])


def _ranks_partial(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """Partial Spearman the long way: average ranks, residuals from an OLS on [1, rank z]."""
    rx, ry, rz = (stats.rankdata(v) for v in (x, y, z))
    design = np.column_stack([np.ones_like(rz), rz])
    hat = design @ np.linalg.inv(design.T @ design) @ design.T
    ex, ey = rx - hat @ rx, ry - hat @ ry
    rho = float(np.corrcoef(ex, ey)[0, 1])
    t = rho * math.sqrt((x.size - 3) / (1 - rho**2))
    return rho, float(2 * stats.t.sf(abs(t), x.size - 3))


def test_correlations_tsv_against_scipy(scans: pd.DataFrame) -> None:
    table = correlation_table(scans)
    checked = 0
    for row in table.itertuples(index=False):
        sub = scans if row.group == "all" else scans[scans["severity"] == row.group]
        if row.timepoint != "all":
            sub = sub[sub["timepoint"] == row.timepoint]
        cols = [row.x, row.y, "days_since_onset"]
        data = sub[cols].apply(pd.to_numeric, errors="coerce").dropna()
        assert row.n == len(data)
        if math.isnan(row.rho):
            continue
        x, y, z = (data[c].to_numpy(float) for c in cols)
        if row.method == "spearman":
            ref = stats.spearmanr(x, y)
            rho, p = float(ref.statistic), float(ref.pvalue)
            # Spearman = Pearson of average ranks; p from t with n - 2 df
            assert rho == pytest.approx(
                np.corrcoef(stats.rankdata(x), stats.rankdata(y))[0, 1], rel=REL
            )
        else:
            rho, p = _ranks_partial(x, y, z)
        assert row.rho == pytest.approx(rho, rel=REL)
        assert row.p == pytest.approx(p, rel=REL, abs=1e-300)
        checked += 1
    assert checked > 100


def test_spearman_partial_spearman_functions(scans: pd.DataFrame) -> None:
    x, y, z = (scans[c].to_numpy(float) for c in ("ct_score", "lesion_percent", "days_since_onset"))
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    ref = stats.spearmanr(x[keep], y[keep])
    got = spearman(x, y)
    assert (got.rho, got.p) == pytest.approx((ref.statistic, ref.pvalue), rel=REL)
    rho, p = _ranks_partial(x[keep], y[keep], z[keep])
    got = partial_spearman(x, y, z)
    assert (got.rho, got.p) == pytest.approx((rho, p), rel=REL)


def test_mann_whitney_against_scipy_exact_and_asymptotic(scans: pd.DataFrame) -> None:
    for column in ("ct_score", "lesion_percent", "days_since_onset"):
        values = pd.to_numeric(scans[column], errors="coerce")
        a = values[scans["severity"] == "moderate"].dropna().to_numpy()
        b = values[scans["severity"] == "severe"].dropna().to_numpy()
        ref = stats.mannwhitneyu(a, b, alternative="two-sided").pvalue
        assert mann_whitney(a, b) == pytest.approx(ref, rel=REL)
    small_a, small_b = np.array([1.0, 4.0, 2.5]), np.array([3.0, 5.0, 6.0, 7.5])
    exact = stats.mannwhitneyu(small_a, small_b, alternative="two-sided", method="exact")
    assert mann_whitney(small_a, small_b) == pytest.approx(exact.pvalue, rel=REL)


def test_chi_square_and_fisher_against_scipy() -> None:
    big = np.array([[30, 12], [14, 25]])
    p, test = _contingency_p(big)
    assert test == "chi-square"
    assert p == pytest.approx(stats.chi2_contingency(big, correction=False).pvalue, rel=REL)
    # Pearson chi-square by hand
    expected = big.sum(1, keepdims=True) * big.sum(0, keepdims=True) / big.sum()
    chi2 = float(((big - expected) ** 2 / expected).sum())
    assert p == pytest.approx(float(stats.chi2.sf(chi2, 1)), rel=REL)
    small = np.array([[1, 9], [8, 2]])  # expected 4.5 < 5
    p, test = _contingency_p(small)
    assert test == "Fisher exact"
    assert p == pytest.approx(stats.fisher_exact(small).pvalue, rel=REL)
    three = np.array([[10, 7, 3], [4, 9, 12]])
    p, test = _contingency_p(three)
    assert test == "chi-square"
    assert p == pytest.approx(stats.chi2_contingency(three, correction=False).pvalue, rel=REL)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 31])
def test_quartiles_spss_weighted_average_by_hand(n: int) -> None:
    values = np.random.default_rng(n).normal(10, 3, n)
    s = np.sort(values)

    def spss(p: float) -> float:  # position p (n + 1), clamped to the ends
        pos = p * (n + 1)
        k = int(math.floor(pos))
        if k < 1:
            return float(s[0])
        if k >= n:
            return float(s[-1])
        return float(s[k - 1] + (pos - k) * (s[k] - s[k - 1]))

    q = quartiles(values)
    assert q is not None
    assert q == pytest.approx((spss(0.25), float(np.median(values)), spss(0.75)), rel=REL)
