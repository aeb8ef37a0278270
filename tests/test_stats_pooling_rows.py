"""Pooled tables and readings, row by row (issue 18 point 4): time points for every row that
lacks one, readings joined whatever the scans table carries, and a conflict named."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from cohort_factory import make_cohort

from serialct.config import defaults
from serialct.errors import InputError
from serialct.steps import cohort_stats
from serialct.timepoints import assign_timepoints


def _tables(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """Centre A's table with its time points, centre B's contract table without any."""
    cfg = defaults()
    a_scans, a_clin = make_cohort(8, seed=1, center="A")
    b_scans, b_clin = make_cohort(8, seed=2, center="B")
    a_scans = a_scans.assign(timepoint=assign_timepoints(a_scans, cfg["timepoints"]))
    b_scans = b_scans.drop(columns=[c for c in ("timepoint",) if c in b_scans.columns])
    paths = [tmp_path / n for n in ("a.tsv", "b.tsv", "a_clin.tsv", "b_clin.tsv")]
    for frame, path in zip((a_scans, b_scans, a_clin, b_clin), paths, strict=True):
        frame.to_csv(path, sep="\t", index=False)
    return tuple(paths)  # type: ignore[return-value]


def test_a_pooled_table_without_time_points_gets_them(tmp_path: Path) -> None:
    a, b, a_clin, b_clin = _tables(tmp_path)
    cohort_stats([a, b], [a_clin, b_clin], [], defaults(), tmp_path / "stats")
    points = pd.read_csv(tmp_path / "stats" / "timepoints.tsv", sep="\t")
    b_rows = points[points["patient_id"].astype(str).str.contains("B")]
    expected = assign_timepoints(pd.read_csv(b, sep="\t"), defaults()["timepoints"])
    assert b_rows["timepoint"].notna().sum() == expected.notna().sum() > 0


def test_readings_join_a_table_without_ct_score(tmp_path: Path) -> None:
    a, _, a_clin, _ = _tables(tmp_path)
    scans = pd.read_csv(a, sep="\t")
    readings = scans[["patient_id", "study_date", "ct_score"]].dropna()
    scans.drop(columns=["ct_score"]).to_csv(a, sep="\t", index=False)
    readings_path = tmp_path / "readings.tsv"
    readings.to_csv(readings_path, sep="\t", index=False)
    cohort_stats([a], [a_clin], [readings_path], defaults(), tmp_path / "stats")
    table3 = pd.read_csv(tmp_path / "stats" / "table3.tsv", sep="\t")
    assert not table3.empty


def test_a_reading_that_contradicts_the_table_names_both_files(tmp_path: Path) -> None:
    a, _, a_clin, _ = _tables(tmp_path)
    scans = pd.read_csv(a, sep="\t")
    readings = scans[["patient_id", "study_date", "ct_score"]].dropna().copy()
    readings.iloc[0, readings.columns.get_loc("ct_score")] = (readings["ct_score"].iloc[0] + 3) % 26
    readings_path = tmp_path / "readings.tsv"
    readings.to_csv(readings_path, sep="\t", index=False)
    with pytest.raises(InputError, match=r"readings\.tsv.*a\.tsv|a\.tsv.*readings\.tsv"):
        cohort_stats([a], [a_clin], [readings_path], defaults(), tmp_path / "stats")


def test_implausible_scans_fail_out_and_are_listed(tmp_path: Path) -> None:
    """Issue 18 point 6: a scan whose lung is implausible (qc_status fail) is left out of the
    statistics and listed in stats/excluded.tsv with why."""
    a, _, a_clin, _ = _tables(tmp_path)
    scans = pd.read_csv(a, sep="\t")
    scans.loc[0, "qc_status"] = "fail: lung volume 53 cm3 outside the plausible 1500-9000 cm3"
    scans.to_csv(a, sep="\t", index=False)
    cohort_stats([a], [a_clin], [], defaults(), tmp_path / "stats")
    excluded = pd.read_csv(tmp_path / "stats" / "excluded.tsv", sep="\t")
    assert len(excluded) == 1
    assert excluded["reason"].str.contains("lung volume 53 cm3").all()
    points = pd.read_csv(tmp_path / "stats" / "timepoints.tsv", sep="\t")
    assert len(points) == len(scans) - 1
