"""median (IQR), n (%) and p formatting."""

from __future__ import annotations

import numpy as np

from serialct.stats.describe import format_p, format_rho, median_iqr, n_percent, quartiles


def test_quartiles_spss_definition() -> None:
    # SPSS weighted average at p(n+1): Q1 of 1..8 at position 2.25
    assert quartiles(range(1, 9)) == (2.25, 4.5, 6.75)
    assert quartiles([np.nan]) is None


def test_median_iqr_formats() -> None:
    assert median_iqr(range(1, 9)) == "4.5 (2.25-6.75)"
    assert median_iqr([1, 2, 3, 4, 5]) == "3 (1.5-4.5)"
    assert median_iqr([0.1234, 0.2, 0.3]) == "0.20 (0.12-0.30)"
    assert median_iqr([1.0, 2.0, 3.0], decimals=1) == "2.0 (1.0-3.0)"
    assert median_iqr([]) == ""
    assert median_iqr([np.nan, np.nan]) == ""


def test_counts_and_p() -> None:
    assert n_percent(47, 95) == "47 (49.5)"
    assert n_percent(0, 0) == ""
    assert format_p(0.0004) == "<0.001"
    assert format_p(0.0161) == "0.016"
    assert format_p(float("nan")) == ""
    assert format_rho(0.91956) == "0.920"
    assert format_rho(float("nan")) == ""
