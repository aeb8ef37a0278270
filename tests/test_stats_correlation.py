"""Spearman, partial Spearman (hand computation) and Mann-Whitney (scipy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from cohort_factory import make_cohort
from scipy import stats

from serialct.stats.correlation import (
    CORRELATION_COLUMNS,
    correlation_table,
    mann_whitney,
    partial_spearman,
    spearman,
)

X = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 7.0, 6.0, 9.0, 8.0, 10.0])
Y = np.array([2.0, 1.0, 4.0, 3.0, 6.0, 5.0, 9.0, 7.0, 10.0, 8.0])
Z = np.array([5.0, 1.0, 2.0, 8.0, 3.0, 9.0, 4.0, 10.0, 6.0, 7.0])


def test_spearman_matches_scipy_and_refuses_small_or_constant() -> None:
    res = spearman(X, Y)
    ref = stats.spearmanr(X, Y)
    assert (res.rho, res.p, res.n) == pytest.approx((ref.statistic, ref.pvalue, 10))
    assert math.isnan(spearman(X[:2], Y[:2]).rho)
    assert math.isnan(spearman(np.ones(5), Y[:5]).p)
    with_nan = spearman(np.append(X, np.nan), np.append(Y, 1.0))
    assert with_nan.n == 10 and with_nan.rho == pytest.approx(ref.statistic)


def test_partial_spearman_by_hand() -> None:
    # first-order partial correlation of the Spearman coefficients
    rxy = stats.spearmanr(X, Y).statistic
    rxz = stats.spearmanr(X, Z).statistic
    ryz = stats.spearmanr(Y, Z).statistic
    expected = (rxy - rxz * ryz) / math.sqrt((1 - rxz**2) * (1 - ryz**2))
    t = expected * math.sqrt((10 - 3) / (1 - expected**2))
    p = 2 * stats.t.sf(abs(t), 7)
    res = partial_spearman(X, Y, Z)
    assert res.rho == pytest.approx(expected, rel=1e-10)
    assert res.p == pytest.approx(p, rel=1e-8)
    assert res.n == 10
    assert math.isnan(partial_spearman(X[:3], Y[:3], Z[:3]).rho)


def test_mann_whitney_matches_scipy() -> None:
    a, b = X[:5], Y[5:] + 0.5
    ref = stats.mannwhitneyu(a, b, alternative="two-sided").pvalue
    assert mann_whitney(a, b) == pytest.approx(ref)
    assert math.isnan(mann_whitney(a, np.array([])))
    assert math.isnan(mann_whitney(np.ones(3), np.ones(4)))


def test_correlation_table_shape_and_empty_rows() -> None:
    scans, _ = make_cohort(8, seed=4)
    scans["timepoint"] = None
    scans.loc[scans.groupby("patient_id").head(1).index, "timepoint"] = "admission"
    table = correlation_table(scans.assign(ct_score=np.nan))
    assert list(table.columns) == CORRELATION_COLUMNS
    assert len(table) == 6 * 3 * 4 * 2
    score_rows = table[table["y"] == "ct_score"]
    assert score_rows["rho"].isna().all() and (score_rows["n"] == 0).all()
    lobes = table[(table["y"] == "reader_involved_lobes") & (table["timepoint"] == "all")]
    assert lobes["rho"].notna().all()
    week2 = table[table["timepoint"] == "week2"]
    assert week2["rho"].isna().all()
