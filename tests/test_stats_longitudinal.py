"""Fig. 3B peak recovery, the patient bootstrap (vectorised == loop) and the mixed model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from serialct.stats.curves import curve_fit_table, peak_x, polyfit
from serialct.stats.longitudinal import (
    MIXED_COLUMNS,
    PEAK_COLUMNS,
    _bootstrap_one,
    bootstrap_peaks,
    cubic_peaks,
    mixed_model,
)

# Pan et al. 2020, Fig. 3B: percent lesion = b1 x + b2 x^2 + b3 x^3 (x: days since onset)
FIG3B = {"moderate": (0.413, -0.0148, 0.000127), "severe": (2.89, -0.0912, 0.000794)}
PAPER_PEAK = {"moderate": (18.0, 3.37), "severe": (22.5, 27.91)}  # day ~18 / ~22-23


def fig3b_cohort(n_moderate: int = 60, n_severe: int = 34, seed: int = 0) -> pd.DataFrame:
    """Scans whose percent lesion follows Fig. 3B per group: patient effect + additive noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_moderate + n_severe):
        group = "moderate" if i < n_moderate else "severe"
        b1, b2, b3 = FIG3B[group]
        effect = 1.0 + rng.normal(0, 0.15)
        noise = 0.4 if group == "moderate" else 3.0
        days = np.sort(rng.uniform(2, 45, size=int(rng.integers(3, 8))))
        for j, d in enumerate(days):
            percent = (b1 * d + b2 * d**2 + b3 * d**3) * effect + rng.normal(0, noise)
            rows.append(
                {
                    "center": "A",
                    "patient_id": f"P{i:03d}",
                    "scan_id": f"S{j}",
                    "severity": group,
                    "days_since_onset": float(round(d)),
                    "lesion_percent": max(percent, 0.0),
                }
            )
    return pd.DataFrame(rows)


def test_fig3b_cohort_recovers_paper_peaks() -> None:
    scans = fig3b_cohort()
    fits = curve_fit_table(scans)
    cubic = fits.query(
        "x == 'days_since_onset' and y == 'lesion_percent' and model == 'cubic' and not constant"
    ).set_index("group")
    peaks = bootstrap_peaks(scans, 300, 0).query("y == 'lesion_percent'").set_index("group")
    for group, (day, value) in PAPER_PEAK.items():
        b = FIG3B[group]
        true_day = peak_x([0.0, *b], 0, 45)
        assert abs(true_day - day) < 0.5  # 18.2 and 22.4: the paper's equations
        row = cubic.loc[group]
        assert abs(row["peak_x"] - day) < 2.0
        fitted = row["b1"] * row["peak_x"] + row["b2"] * row["peak_x"] ** 2
        fitted += row["b3"] * row["peak_x"] ** 3
        assert fitted == pytest.approx(value, rel=0.10)
        assert peaks.loc[group, "peak_x"] == pytest.approx(row["peak_x"], rel=1e-12)
        assert peaks.loc[group, "peak_y"] == pytest.approx(fitted, rel=1e-9)
        assert peaks.loc[group, "ci_low"] < true_day < peaks.loc[group, "ci_high"]
        assert peaks.loc[group, "ci_high"] - peaks.loc[group, "ci_low"] < 8
    assert list(peaks.reset_index().columns) == [
        "group",
        *[c for c in PEAK_COLUMNS if c != "group"],
    ]


def test_bootstrap_vectorised_equals_loop_over_replicates() -> None:
    scans = fig3b_cohort(15, 0, seed=3)
    d = scans["days_since_onset"].to_numpy(float)
    y = scans["lesion_percent"].to_numpy(float)
    codes = pd.factorize(scans["patient_id"])[0]
    fast = _bootstrap_one(d, y, codes, 40, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    n_pat = codes.max() + 1
    counts = rng.multinomial(n_pat, np.full(n_pat, 1.0 / n_pat), size=40)
    for b in range(40):
        weights = counts[b][codes]
        xs, ys = np.repeat(d, weights), np.repeat(y, weights)
        fit = polyfit(xs, ys, 3, constant=False)
        assert fit is not None
        expected = peak_x(fit.coef, xs.min(), xs.max())
        if math.isnan(expected):
            assert math.isnan(fast[b])
        else:
            assert fast[b] == pytest.approx(expected, rel=1e-8)


def test_cubic_peaks_formula_and_seed() -> None:
    coef = np.array([FIG3B["severe"], FIG3B["moderate"], (1.0, 0.0, 0.001), (2.0, -0.1, 0.0)])
    got = cubic_peaks(coef, np.zeros(4), np.full(4, 45.0))
    assert got[0] == pytest.approx(peak_x([0, *FIG3B["severe"]], 0, 45), rel=1e-12)
    assert got[1] == pytest.approx(peak_x([0, *FIG3B["moderate"]], 0, 45), rel=1e-12)
    assert math.isnan(got[2])  # increasing: no maximum
    assert got[3] == pytest.approx(10.0)  # quadratic: -b1 / (2 b2)
    scans = fig3b_cohort(20, 10, seed=5)
    one, two = bootstrap_peaks(scans, 100, 4), bootstrap_peaks(scans, 100, 4)
    pd.testing.assert_frame_equal(one, two)


def test_bootstrap_small_or_flat_groups_give_notes() -> None:
    scans = fig3b_cohort(3, 0, seed=1)
    table = bootstrap_peaks(scans, 50, 0)
    severe = table[(table["group"] == "severe") & (table["y"] == "lesion_percent")].iloc[0]
    assert math.isnan(severe["peak_x"]) and severe["note"] == "too few scans for a cubic fit"
    moderate = table[(table["group"] == "moderate") & (table["y"] == "lesion_percent")].iloc[0]
    assert math.isnan(moderate["ci_low"]) and moderate["note"]
    score = table[table["y"] == "ct_score"]
    assert score["peak_x"].isna().all() and (score["n"] == 0).all()


def test_mixed_model_matches_statsmodels_formula() -> None:
    scans = fig3b_cohort(30, 20, seed=2)
    table = mixed_model(scans, 6)
    assert list(table.columns) == MIXED_COLUMNS
    assert table["converged"].all() and (table["n_groups"] == 50).all()
    frame = scans.assign(
        t=scans["days_since_onset"] / 10, severe=(scans["severity"] == "severe").astype(float)
    )
    ref = smf.mixedlm(
        "lesion_percent ~ (t + I(t**2) + I(t**3)) * severe", frame, groups=frame["patient_id"]
    ).fit(reml=True)
    terms = table.set_index("term")
    assert terms.loc["severe x (days/10)^3", "coef"] == pytest.approx(
        ref.params["I(t ** 3):severe"], rel=1e-4
    )
    assert terms.loc["days/10", "se"] == pytest.approx(ref.bse["t"], rel=1e-4)
    assert terms.loc["severe x days/10", "p"] == pytest.approx(ref.pvalues["t:severe"], rel=1e-3)
    # the severe cubic term is positive and the linear term large, as in Fig. 3B
    assert terms.loc["severe x days/10", "coef"] > 10


def test_mixed_model_empty_with_note() -> None:
    few = mixed_model(fig3b_cohort(3, 1, seed=0), 6)
    assert len(few) == 1 and "fewer than 6" in few.loc[0, "note"] and math.isnan(few.loc[0, "coef"])
    flat = fig3b_cohort(8, 0, seed=0).assign(lesion_percent=1.0)
    assert "constant" in mixed_model(flat, 6).loc[0, "note"]
    one_group = mixed_model(fig3b_cohort(10, 0, seed=0), 6)
    assert one_group["converged"].all() and "severe" not in one_group["term"].tolist()
