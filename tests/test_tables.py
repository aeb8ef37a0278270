import datetime as dt

import numpy as np
import pandas as pd
import pytest

from serialct.config import defaults
from serialct.tables import SCAN_COLUMNS, build_patients_table, build_scans_table


def _metrics():
    rows = []
    scans = [("P1", "2020-01-05", 2.0), ("P1", "2020-01-12", 4.0), ("P9", "2020-02-01", 1.0)]
    for pid, date, pct in scans:
        rows.append(
            {
                "center": "A",
                "patient_id": pid,
                "scan_id": date.replace("-", ""),
                "study_date": dt.date.fromisoformat(date),
                "qc_status": "ok",
                "lesion_percent": pct,
                "lung_volume_cm3": 4000.0,
            }  # fmt: skip
        )
    return pd.DataFrame(rows)


def _clinical():
    return pd.DataFrame(
        {
            "patient_id": ["P1", "P2"],
            "severity": ["moderate", "severe"],
            "onset_date": pd.to_datetime(["2020-01-01", "2020-01-01"]),
            "admission_date": pd.to_datetime(["2020-01-05", "2020-01-03"]),
        }  # fmt: skip
    )


def _readings():
    return pd.DataFrame(
        {
            "patient_id": ["P1", "P1"],
            "study_date": pd.to_datetime(["2020-01-05", "2020-03-01"]),
            "ct_score": [3.0, 1.0],
            "involved_lobes": [2.0, 1.0],
        }  # fmt: skip
    )


def test_scans_are_joined_and_nothing_is_dropped():
    scans, issues = build_scans_table(
        _metrics(), {"A": _clinical()}, {"A": _readings()}, defaults()
    )
    assert list(scans.columns[: len(SCAN_COLUMNS)]) == SCAN_COLUMNS
    assert len(scans) == 3  # P9 has no clinical row but stays, with empty severity
    p1 = scans[scans["patient_id"] == "P1"].set_index("scan_id")
    assert p1.loc["20200105", "days_since_onset"] == 4
    assert p1.loc["20200112", "days_since_admission"] == 7
    assert p1.loc["20200105", "timepoint"] == "admission"
    assert p1.loc["20200112", "timepoint"] == "week1"
    assert p1.loc["20200105", "ct_score"] == 3
    assert pd.isna(p1.loc["20200112", "ct_score"])
    assert pd.isna(scans.loc[scans["patient_id"] == "P9", "severity"]).all()
    reported = set(zip(issues["patient_id"], issues["issue"], strict=True))
    assert ("P9", "images without a clinical row") in reported
    assert ("P2", "clinical row without images") in reported
    assert ("P1", "reading without a CT") in reported


def test_patients_table():
    scans, _ = build_scans_table(_metrics(), {"A": _clinical()}, {"A": None}, defaults())
    patients = build_patients_table(scans).set_index("patient_id")
    assert patients.loc["P1", "n_scans"] == 2
    assert patients.loc["P1", "peak_lesion_percent"] == pytest.approx(4.0)
    assert patients.loc["P1", "median_interval_days"] == 7
    assert patients.loc["P1", "lesion_percent_admission"] == pytest.approx(2.0)


def test_patients_longitudinal_features():
    dates = pd.to_datetime(["2020-02-01", "2020-02-05", "2020-02-09", "2020-02-15", "2020-02-20"])
    scans = pd.DataFrame(
        {
            "center": "A",
            "patient_id": ["P1"] * 5 + ["P2"],
            "study_date": [*dates, dates[0]],
            "severity": ["severe"] * 5 + ["moderate"],
            "days_since_onset": [3.0, 7.0, 11.0, 17.0, 22.0, 5.0],
            "lesion_percent": [2.0, 10.0, 6.0, 4.0, 3.0, np.nan],
            "timepoint": [pd.NA] * 6,
            "ct_score": np.nan,
        }
    )
    patients = build_patients_table(scans).set_index("patient_id")
    p1 = patients.loc["P1"]
    assert p1["peak_lesion_percent"] == 10.0 and p1["peak_day_since_onset"] == 7.0
    assert p1["slope_first_to_peak"] == pytest.approx((10.0 - 2.0) / (7.0 - 3.0))
    assert p1["resolution_ratio"] == pytest.approx(0.3)
    assert p1["days_peak_to_half"] == 10.0  # 4 % < 5 % on day 17
    p2 = patients.loc["P2"]  # one scan without a value: empty features, no crash
    assert pd.isna(p2["peak_lesion_percent"]) and pd.isna(p2["slope_first_to_peak"])
