"""Curve Estimation: exact recovery of the paper's Fig. 3 cubic, and agreement with statsmodels."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm
from cohort_factory import make_cohort
from scipy import stats

from serialct.stats.curves import FIT_COLUMNS, curve_fit_table, fit_curve, peak_x, polyfit

SEVERE_LESION = (2.89, -0.0912, 0.000794)  # Fig. 3B, severe group


def test_cubic_through_origin_recovers_fig3_equation() -> None:
    x = np.arange(0.0, 46.0)
    b1, b2, b3 = SEVERE_LESION
    y = b1 * x + b2 * x**2 + b3 * x**3
    fit = fit_curve(x, y, "cubic", constant=False)
    assert math.isnan(fit["b0"])
    assert [fit["b1"], fit["b2"], fit["b3"]] == pytest.approx(SEVERE_LESION, rel=1e-8)
    assert fit["r2"] == pytest.approx(1.0, abs=1e-12)
    # dy/dx = b1 + 2 b2 x + 3 b3 x^2 = 0, smaller root is the maximum
    a, b, c = 3 * b3, 2 * b2, b1
    expected = (-b - math.sqrt(b * b - 4 * a * c)) / (2 * a)
    assert expected == pytest.approx(22.39, abs=0.01)
    assert fit["peak_x"] == pytest.approx(expected, rel=1e-6)
    peak_value = b1 * expected + b2 * expected**2 + b3 * expected**3
    assert peak_value == pytest.approx(27.91, abs=0.02)  # the paper's peak percent lesion


@pytest.mark.parametrize("model", ["linear", "quadratic", "cubic"])
@pytest.mark.parametrize("constant", [True, False])
def test_matches_statsmodels_with_noise(model: str, constant: bool) -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 45, 80)
    y = 2.89 * x - 0.0912 * x**2 + 0.000794 * x**3 + rng.normal(0, 4, x.size)
    k = {"linear": 1, "quadratic": 2, "cubic": 3}[model]
    X = np.column_stack([x**p for p in range(1, k + 1)])
    if constant:
        X = sm.add_constant(X)
    ref = sm.OLS(y, X, hasconst=constant).fit()
    fit = fit_curve(x, y, model, constant)
    coefs = [fit[f"b{i}"] for i in range(0 if constant else 1, k + 1)]
    assert coefs == pytest.approx(ref.params, rel=1e-7)
    assert fit["r2"] == pytest.approx(ref.rsquared, rel=1e-10)
    assert fit["f"] == pytest.approx(ref.fvalue, rel=1e-8)
    assert fit["p"] == pytest.approx(ref.f_pvalue, rel=1e-6, abs=1e-300)
    assert fit["n"] == 80
    # the uncentered r2 and F by hand for the through-origin fits
    if not constant:
        sse = float(np.sum(ref.resid**2))
        r2 = 1 - sse / float(np.sum(y**2))
        assert fit["r2"] == pytest.approx(r2)
        assert fit["f"] == pytest.approx((r2 / k) / ((1 - r2) / (80 - k)))
    for i in range(k + 1, 4):
        assert math.isnan(fit[f"b{i}"])


def test_peak_only_inside_range_and_maximum() -> None:
    assert math.isnan(peak_x([0.0, 1.0], 0, 10))  # linear: no peak
    assert peak_x([0.0, 10.0, -1.0], 0, 10) == pytest.approx(5.0)
    assert math.isnan(peak_x([0.0, 10.0, -1.0], 0, 4))  # maximum outside the observed range
    assert math.isnan(peak_x([0.0, -10.0, 1.0], 0, 10))  # a minimum is not a peak


def test_too_few_points_give_empty_fit() -> None:
    fit = fit_curve(np.array([1.0, 2.0, np.nan]), np.array([1.0, 2.0, 3.0]), "cubic", True)
    assert fit["n"] == 2 and math.isnan(fit["r2"]) and math.isnan(fit["b1"])


def test_table_rows_and_columns() -> None:
    scans, _ = make_cohort(6, seed=2)
    table = curve_fit_table(scans)
    assert list(table.columns) == FIT_COLUMNS
    assert len(table) == (1 + 4 * 3) * 3 * 2  # pairs x groups x models x constant
    no_scores = curve_fit_table(scans.assign(ct_score=np.nan))
    uses_score = (no_scores["y"] == "ct_score") | (no_scores["x"] == "ct_score")
    assert no_scores.loc[uses_score, "r2"].isna().all()
    assert no_scores.loc[~uses_score, "r2"].notna().all()


NIST = Path(__file__).parent / "data" / "nist"


def _read_nist(name: str) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Certified values (key -> number) and the y, x columns of a tests/data/nist file."""
    certified: dict[str, float] = {}
    rows: list[tuple[float, float]] = []
    data = False
    for line in (NIST / f"{name}.dat").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("data"):
            data = True
            continue
        key, value = line.split()
        if data:
            rows.append((float(key), float(value)))
        else:
            certified[key] = 1.0 if value == "true" else 0.0 if value == "false" else float(value)
    y, x = np.array(rows).T
    return certified, x, y


@pytest.mark.parametrize(
    ("name", "rel"), [("NoInt1", 1e-12), ("NoInt2", 1e-12), ("Pontius", 1e-9), ("Wampler1", 0)]
)
def test_nist_strd_certified_values(name: str, rel: float) -> None:
    cert, x, y = _read_nist(name)
    degree, constant = int(cert["degree"]), bool(cert["constant"])
    fit = polyfit(x, y, degree, constant)
    assert fit is not None
    for i in range(0 if constant else 1, degree + 1):
        if rel == 0:  # Wampler1: exact fit, every coefficient 1
            assert fit.coef[i] == pytest.approx(cert[f"B{i}"], rel=1e-9)
        else:
            assert fit.coef[i] == pytest.approx(cert[f"B{i}"], rel=rel)
    if not constant:
        assert fit.coef[0] == 0.0
    if cert["residual_sd"] == 0.0:
        assert fit.residual_sd < 1e-6 * float(np.abs(y).max())
        assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    else:
        assert fit.residual_sd == pytest.approx(cert["residual_sd"], rel=max(rel, 1e-9))
        assert fit.r2 == pytest.approx(cert["r2"], rel=max(rel, 1e-12))
    # the public API gives the same numbers for the models it offers
    model = {1: "linear", 2: "quadratic"}.get(degree)
    if model:
        row = fit_curve(x, y, model, constant)
        assert row["r2"] == pytest.approx(cert["r2"], rel=1e-12)
        assert row["b1"] == pytest.approx(cert["B1"], rel=max(rel, 1e-9))


def test_nist_noint_uncentered_r2_and_f_by_hand() -> None:
    _, x, y = _read_nist("NoInt2")
    row = fit_curve(x, y, "linear", constant=False)
    # certified ANOVA: regression SS 40.7272727272727, residual SS 0.272727272727273, F 298.667
    assert row["r2"] == pytest.approx(40.7272727272727 / 41.0, rel=1e-12)
    assert row["f"] == pytest.approx(298.666666666667, rel=1e-12)
    assert row["p"] == pytest.approx(float(stats.f.sf(298.666666666667, 1, 2)), rel=1e-9)
