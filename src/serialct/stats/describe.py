"""Descriptive formatting as in the paper: median (IQR), n (%), p values.

Quartiles use SPSS's default definition (weighted average at p(n+1), numpy's ``weibull``), since
the paper's statistics were computed in SPSS. Empty input gives an empty string, never a number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

QUARTILE_METHOD = "weibull"  # SPSS "weighted average at x(n+1)p"
DECIMALS = 2
P_FLOOR = 0.001


def _clean(values: Iterable[float]) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    return arr[np.isfinite(arr)]


def quartiles(values: Iterable[float]) -> tuple[float, float, float] | None:
    """(Q1, median, Q3) of the finite values, or None when there are none."""
    arr = _clean(values)
    if arr.size == 0:
        return None
    q1, med, q3 = np.percentile(arr, [25, 50, 75], method=QUARTILE_METHOD)
    return float(q1), float(med), float(q3)


def format_number(value: float, decimals: int = DECIMALS) -> str:
    """A number with ``decimals`` places; empty for NaN/None."""
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.{decimals}f}"


def _compact(value: float) -> str:
    """Up to two decimals without trailing zeros (3, 3.5, 3.25)."""
    return format_number(value, DECIMALS).rstrip("0").rstrip(".")


def median_iqr(values: Iterable[float], decimals: int | None = None) -> str:
    """'median (Q1-Q3)'. By default two decimals, or compact (``5 (4-6.5)``) for counts and
    other whole-number data; ``decimals`` forces a fixed number of places."""
    arr = _clean(values)
    stats = quartiles(arr)
    if stats is None:
        return ""
    if decimals is None and bool(np.all(arr == np.round(arr))):
        q1, med, q3 = (_compact(v) for v in stats)
    else:
        q1, med, q3 = (format_number(v, DECIMALS if decimals is None else decimals) for v in stats)
    return f"{med} ({q1}-{q3})"


def n_percent(count: int, total: int) -> str:
    """'n (%)' with one decimal; empty when the total is zero."""
    if total <= 0:
        return ""
    return f"{count} ({100.0 * count / total:.1f})"


def format_p(p: float | None) -> str:
    """'<0.001' below the floor, else three decimals; empty for a missing p."""
    if p is None or not math.isfinite(p):
        return ""
    return f"<{P_FLOOR}" if p < P_FLOOR else f"{p:.3f}"


def format_rho(rho: float | None) -> str:
    """Correlation coefficient with three decimals; empty when missing."""
    return format_number(rho, 3) if rho is not None else ""


def numeric_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """``frame[name]`` as floats (unparseable cells NaN); all NaN when the column is missing."""
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
