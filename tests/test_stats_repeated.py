"""Repeated-measures correlation and the patient-clustered bootstrap (issue 18 point 7)."""

from __future__ import annotations

import numpy as np
import pytest
from cohort_factory import make_cohort

from serialct.stats.correlation import spearman
from serialct.stats.repeated import clustered_spearman_ci, repeated_measures_table, rm_corr

# Bland & Altman (1995, BMJ 310:446): intramural pH and PaCO2, 47 measurements of 8 subjects,
# the data of R's rmcorr::bland1995. rmcorr 0.7.0 prints r -0.5067697, df 38,
# p 0.0008471081, 95 % CI -0.7067146 .. -0.2318631 for it (its test snapshot).
SUBJECT = [1] * 4 + [2] * 4 + [3] * 9 + [4] * 5 + [5] * 8 + [6] * 6 + [7] * 3 + [8] * 8
PH = [6.68, 6.53, 6.43, 6.33, 6.85, 7.06, 7.13, 7.17, 7.40, 7.42, 7.41, 7.37, 7.34, 7.35, 7.28,
      7.30, 7.34, 7.36, 7.33, 7.29, 7.30, 7.35, 7.35, 7.30, 7.30, 7.37, 7.27, 7.28, 7.32, 7.32,
      7.38, 7.30, 7.29, 7.33, 7.31, 7.33, 6.86, 6.94, 6.92, 7.19, 7.29, 7.21, 7.25, 7.20, 7.19,
      6.77, 6.82]  # fmt: skip
PACO2 = [3.97, 4.12, 4.09, 3.97, 5.27, 5.37, 5.41, 5.44, 5.67, 3.64, 4.32, 4.73, 4.96, 5.04,
         5.22, 4.82, 5.07, 5.67, 5.10, 5.53, 4.75, 5.51, 4.28, 4.44, 4.32, 3.23, 4.46, 4.72,
         4.75, 4.99, 4.78, 4.73, 5.12, 4.93, 5.03, 4.93, 6.85, 6.44, 6.52, 5.28, 4.56, 4.34,
         4.32, 4.41, 3.69, 6.09, 5.58]  # fmt: skip


def test_rm_corr_reproduces_rmcorr_on_bland_altman_1995() -> None:
    result = rm_corr(np.array(PH), np.array(PACO2), np.array(SUBJECT))
    assert result.r == pytest.approx(-0.5067697, abs=1e-7)
    assert result.df == 38
    assert result.p == pytest.approx(0.0008471081, rel=1e-6)
    assert result.ci_low == pytest.approx(-0.7067146, abs=1e-6)
    assert result.ci_high == pytest.approx(-0.2318631, abs=1e-6)


def test_between_patient_spread_does_not_make_a_within_patient_correlation() -> None:
    """Patients whose levels differ (x and y both higher in sicker patients) but whose scans
    vary independently: the all-scan Spearman is strong, the repeated-measures one is not."""
    rng = np.random.default_rng(0)
    level = np.repeat(np.arange(10) * 10.0, 5)
    x, y = level + rng.normal(0, 1, 50), level + rng.normal(0, 1, 50)
    subject = np.repeat(np.arange(10), 5)
    assert spearman(x, y).rho > 0.9
    assert abs(rm_corr(x, y, subject).r) < 0.3


def test_patient_bootstrap_interval_is_wider_than_pretending_scans_independent() -> None:
    rng = np.random.default_rng(1)
    level = np.repeat(rng.normal(0, 3, 12), 5)
    x, y = level + rng.normal(0, 1, 60), level + rng.normal(0, 1, 60)
    subject = np.repeat(np.arange(12), 5)
    low, high = clustered_spearman_ci(x, y, subject, 400, np.random.default_rng(0))
    scans_low, scans_high = clustered_spearman_ci(
        x, y, np.arange(60), 400, np.random.default_rng(0)
    )
    assert low <= spearman(x, y).rho <= high
    assert high - low > scans_high - scans_low


def test_table_has_both_methods_per_group() -> None:
    scans, _ = make_cohort(12, seed=3)
    table = repeated_measures_table(scans, 200, 0)
    assert set(table["method"]) == {"rm_corr", "spearman_patient_bootstrap"}
    assert set(table["group"]) == {"all", "moderate", "severe"}
    rm = table[(table["method"] == "rm_corr") & (table["group"] == "all")].iloc[0]
    assert rm["df"] == rm["n_scans"] - rm["n_patients"] - 1
