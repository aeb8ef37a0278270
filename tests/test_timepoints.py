"""Time points: one scan per patient per window, nearest the target, ties to the earlier scan."""

from __future__ import annotations

import pandas as pd

from serialct.config import defaults
from serialct.timepoints import assign_timepoints


def scans(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["center", "patient_id", "days_since_admission"])


def test_nearest_target_and_tie_goes_earlier() -> None:
    frame = scans(
        [
            ("A", "P1", -2),
            ("A", "P1", 1),
            ("A", "P1", 6),
            ("A", "P1", 8),
            ("A", "P1", 12),
            ("A", "P1", 16),
            ("A", "P1", 30),
        ]
    )
    result = assign_timepoints(frame, defaults()["timepoints"])
    # admission: day 1 (|1| < |-2|); week1: days 6 and 8 tie at 1 day from 7 -> 6;
    # week2: days 12 and 16 tie at 2 days from 14 -> 12; day 30 is in no window
    assert result.fillna("-").tolist() == ["-", "admission", "week1", "-", "week2", "-", "-"]
    assert result.index.equals(frame.index)


def test_per_patient_and_center_and_empty_windows() -> None:
    frame = scans([("A", "P1", 0), ("B", "P1", 0), ("A", "P2", 20), ("A", "P2", None)])
    result = assign_timepoints(frame, defaults()["timepoints"]).fillna("-").tolist()
    assert result == ["admission", "admission", "-", "-"]


def test_window_bounds_inclusive_and_one_timepoint_per_scan() -> None:
    cfg = {"admission": {"target": 0, "window": [-3, 3]}, "week1": {"target": 3, "window": [3, 10]}}
    frame = scans([("A", "P1", 3), ("A", "P1", 10)])
    result = assign_timepoints(frame, cfg).fillna("-").tolist()
    assert result == ["admission", "week1"]  # day 3 is taken by admission, not offered again
    assert assign_timepoints(frame.iloc[:0], cfg).empty
