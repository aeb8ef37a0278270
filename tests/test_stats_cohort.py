"""run_cohort_stats + figures + report on a 20-patient synthetic cohort, checked by the contract
script, and on a tiny cohort with missing CT scores."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cohort_factory import make_cohort
from scipy import stats

from serialct.config import defaults
from serialct.figures import figure2, figure3
from serialct.report import write_report
from serialct.stats import run_cohort_stats
from serialct.stats.correlation import CORRELATION_COLUMNS
from serialct.stats.curves import FIT_COLUMNS
from serialct.stats.describe import median_iqr

CHECK = Path(__file__).resolve().parents[2] / "shared" / "tools" / "check_contract.py"


def test_full_cohort_pipeline(tmp_path: Path) -> None:
    scans, clinical = make_cohort(20, seed=0)
    scans.loc[3, "qc_status"] = "error: 2 slices"
    stats_dir = tmp_path / "stats"
    run_cohort_stats(scans, clinical, defaults(), stats_dir)
    if CHECK.is_file():
        done = subprocess.run(
            [sys.executable, str(CHECK), str(stats_dir), "--stats-only"],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    corr = pd.read_csv(stats_dir / "correlations.tsv", sep="\t")
    fits = pd.read_csv(stats_dir / "curve_fits.tsv", sep="\t")
    assert list(corr.columns) == CORRELATION_COLUMNS
    assert list(fits.columns) == FIT_COLUMNS
    main = corr.query(
        "x == 'lesion_percent' and group == 'all' and timepoint == 'all' and method == 'spearman'"
    ).iloc[0]
    assert main["rho"] > 0.9 and main["n"] == len(scans) - 1
    summary = json.loads((stats_dir / "summary.json").read_text())
    assert summary["scans_excluded"] == 1 and summary["patients"] == 20
    severe = summary["peaks_cubic_no_constant"]["lesion_percent"]["severe"]["peak_day"]
    assert 17 < severe < 28  # the generating curve peaks at day 22.4
    figures = tmp_path / "figures"
    figure2(scans, fits, figures / "figure2.png")
    figure3(scans, fits, figures / "figure3.png")
    tables = tmp_path / "tables"
    tables.mkdir()
    scans.assign(qc_status=scans["qc_status"].where(scans.index != 5, "<warn> lung small")).to_csv(
        tables / "scans.tsv", sep="\t", index=False
    )
    out = tmp_path / "report.html"
    first = scans.iloc[0]  # a QC picture where the workflow puts it: scans/CENTER/PATIENT/SCAN
    qc = tmp_path / "scans" / first["center"] / first["patient_id"] / str(first["scan_id"])
    qc.mkdir(parents=True)
    shutil.copy(figures / "figure2.png", qc / "qc.png")
    write_report(out, stats_dir, tables, figures, [qc / "qc.png"], defaults())
    html = out.read_text()
    assert html.count("data:image/png;base64,") == 2  # figures
    assert html.count("data:image/jpeg;base64,") == 1  # QC thumbnail
    assert "&lt;warn&gt; lung small" in html and "<warn>" not in html
    for text in (
        "Table 5.",
        "Key numbers vs the paper",
        "0.920",
        "[-750, -300]",
        "[6, 26, 50, 76]",
    ):
        assert text in html


def test_tiny_cohort_without_scores(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    scans, clinical = make_cohort(4, seed=9)
    scans = scans.groupby("patient_id").head(4).assign(ct_score=np.nan)
    scans = scans.drop(columns="reader_involved_lobes")
    scans = scans[scans["days_since_admission"] < 11]  # no week-2 scans
    with caplog.at_level("INFO", logger="serialct"):
        run_cohort_stats(scans, clinical, defaults(), tmp_path)
    assert "no CT scores" in caplog.text
    corr = pd.read_csv(tmp_path / "correlations.tsv", sep="\t")
    assert corr.loc[corr["y"] == "ct_score", "rho"].isna().all()
    assert corr.loc[corr["timepoint"] == "week2", "n"].eq(0).all()
    fits = pd.read_csv(tmp_path / "curve_fits.tsv", sep="\t")
    assert fits.loc[fits["x"] == "ct_score", ["b0", "r2", "f", "p"]].isna().all(axis=None)
    t4 = pd.read_csv(tmp_path / "table4.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert (t4.loc[t4["variable"] == "ct_score"].iloc[:, 2:5] == "").all(axis=None)
    write_report(
        tmp_path / "r.html", tmp_path, tmp_path / "none", tmp_path / "none", [], defaults()
    )
    assert "Table 1." in (tmp_path / "r.html").read_text()


NEW_FILES = ("peaks.tsv", "mixed_model.tsv", "centers.tsv")


def _two_centres_same_ids() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    scans_a, clin_a = make_cohort(10, seed=1, center="A")
    scans_b, clin_b = make_cohort(8, seed=2, center="B")
    rename = {f"B{i:03d}": f"A{i:03d}" for i in range(1, 9)}  # the same ids at both centres
    scans_b["patient_id"] = scans_b["patient_id"].map(rename)
    clin_b["patient_id"] = clin_b["patient_id"].map(rename)
    return scans_a, clin_a, scans_b, clin_b


def test_pooled_centres_keep_duplicate_ids_apart(tmp_path: Path) -> None:
    from cohort_factory import write_sheets

    from serialct.steps import cohort_stats

    scans_a, clin_a, scans_b, clin_b = _two_centres_same_ids()
    paths_a = write_sheets(scans_a, clin_a, tmp_path / "A")
    paths_b = write_sheets(scans_b, clin_b, tmp_path / "B")
    out = tmp_path / "stats"
    cohort_stats([paths_a[0], paths_b[0]], [paths_a[1], paths_b[1]], [], defaults(), out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["patients"] == 18 and summary["scans"] == len(scans_a) + len(scans_b)
    assert summary["centers"] == {
        "A": {"patients": 10, "scans": len(scans_a)},
        "B": {"patients": 8, "scans": len(scans_b)},
    }
    table1 = pd.read_csv(out / "table1.tsv", sep="\t")
    assert table1.columns[1] == "Total, n=18"
    ages = pd.concat([clin_a["age"], clin_b["age"]])
    age_row = table1[table1["variable"] == "age"].iloc[0]
    assert age_row.iloc[1] == median_iqr(ages)  # every clinical row used once, per centre
    centers = pd.read_csv(out / "centers.tsv", sep="\t").set_index("center")
    assert list(centers.index) == ["A", "B", "all"]
    assert centers.loc["B", "patients"] == 8 and centers.loc["all", "patients"] == 18
    b = scans_b
    rho = stats.spearmanr(b["ct_score"], b["lesion_percent"]).statistic
    assert centers.loc["B", "spearman_rho"] == pytest.approx(rho, rel=1e-9)
    tp = pd.read_csv(out / "timepoints.tsv", sep="\t")
    assert set(tp.loc[tp["patient_id"] == "A001", "center"]) == {"A", "B"}
    mixed = pd.read_csv(out / "mixed_model.tsv", sep="\t")
    assert (mixed["n_groups"] == 18).all()
    peaks = pd.read_csv(out / "peaks.tsv", sep="\t")
    assert peaks.loc[peaks["group"] == "all", "n_patients"].eq(18).all()


def test_pooled_table_without_clinical_sheet_uses_its_own_severity(tmp_path: Path) -> None:
    scans_a, clin_a, scans_b, _ = _two_centres_same_ids()
    written = run_cohort_stats(
        pd.concat([scans_a, scans_b], ignore_index=True), clin_a, defaults(), tmp_path
    )
    assert {p.name for p in written} >= set(NEW_FILES)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["scans"] == len(scans_a) + len(scans_b) and summary["patients"] == 18
    # A001..A008 exist at both centres: without a center column those clinical rows are ambiguous
    assert summary["patients_clinical"] == 2


def _odd(case: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    scans, clinical = make_cohort(6, seed=3)
    if case == "one_group_empty":
        scans, clinical = scans.assign(severity="moderate"), clinical.assign(severity="moderate")
    elif case == "fewer_scans_than_parameters":
        scans = scans.groupby("severity").head(2)
    elif case == "constant_values":
        scans = scans.assign(lesion_percent=2.0, ct_score=5.0, ggo_percent=1.0)
    elif case == "missing_readings":
        scans = scans.assign(ct_score=np.nan).drop(columns="reader_involved_lobes")
        scans.loc[scans.index[::3], "lesion_percent"] = np.nan
    elif case == "single_scan":
        scans = scans.head(1)
    return scans, clinical


@pytest.mark.parametrize(
    "case",
    [
        "one_group_empty",
        "fewer_scans_than_parameters",
        "constant_values",
        "missing_readings",
        "single_scan",
    ],
)
def test_odd_cohorts_give_empty_cells_with_notes(case: str, tmp_path: Path) -> None:
    scans, clinical = _odd(case)
    config = defaults()
    config["stats"]["bootstrap"] = 50
    run_cohort_stats(scans, clinical, config, tmp_path)
    for name in ("table1.tsv", "table3.tsv", "table4.tsv", "table5.tsv", *NEW_FILES):
        assert (tmp_path / name).is_file()
    fits = pd.read_csv(tmp_path / "curve_fits.tsv", sep="\t")
    peaks = pd.read_csv(tmp_path / "peaks.tsv", sep="\t", keep_default_na=False)
    mixed = pd.read_csv(tmp_path / "mixed_model.tsv", sep="\t")
    corr = pd.read_csv(tmp_path / "correlations.tsv", sep="\t")
    t4 = pd.read_csv(tmp_path / "table4.tsv", sep="\t", dtype=str, keep_default_na=False)
    # no made-up number: an empty p wherever a group is empty or values are constant
    if case == "one_group_empty":
        assert (t4["p"] == "").all()
        assert fits.loc[fits["group"] == "severe", "r2"].isna().all()
        assert "no severity terms" in mixed["note"].fillna("").iloc[0]
        severe = peaks[peaks["group"] == "severe"]
        assert (severe["peak_x"] == "").all() and (severe["note"] != "").all()
    if case == "fewer_scans_than_parameters":
        cubic = fits[(fits["model"] == "cubic") & (fits["group"] != "all")]
        assert cubic["r2"].isna().all()
        assert mixed["coef"].isna().all() and "fewer than" in mixed["note"].iloc[0]
    if case == "constant_values":
        assert corr.loc[corr["x"] == "lesion_percent", "rho"].isna().all()
        assert (t4.loc[t4["variable"] == "lesion_percent", "p"] == "").all()
        assert "constant" in mixed["note"].iloc[0]
        lesion = fits[(fits["y"] == "lesion_percent") & fits["constant"]]
        assert lesion["r2"].isna().all()  # constant y: centred R squared undefined
    if case == "missing_readings":
        assert corr.loc[corr["y"] == "ct_score", "rho"].isna().all()
        assert peaks.loc[peaks["y"] == "ct_score", "note"].str.len().gt(0).all()
    if case == "single_scan":
        assert fits["r2"].isna().all() and corr["rho"].isna().all()
    write_report(tmp_path / "r.html", tmp_path, tmp_path / "none", tmp_path / "none", [], config)
    assert "Table 5." in (tmp_path / "r.html").read_text()


def test_pooled_readings_attach_to_their_own_centre(tmp_path: Path) -> None:
    from cohort_factory import write_sheets

    from serialct.steps import cohort_stats

    scans_a, clin_a, scans_b, clin_b = _two_centres_same_ids()
    scans_b = scans_b.assign(ct_score=np.nan)  # B's scores come in its readings sheet
    paths_a = write_sheets(scans_a, clin_a, tmp_path / "A")
    paths_b = write_sheets(scans_b, clin_b, tmp_path / "B")
    readings_b = tmp_path / "B" / "readings.tsv"
    pd.DataFrame(
        {
            "patient_id": scans_b["patient_id"],
            "study_date": pd.to_datetime(scans_b["study_date"]).dt.strftime("%Y-%m-%d"),
            "ct_score": 25,
        }
    ).drop_duplicates(["patient_id", "study_date"]).to_csv(readings_b, sep="\t", index=False)
    out = tmp_path / "stats"
    cohort_stats([paths_a[0], paths_b[0]], [paths_a[1], paths_b[1]], [readings_b], defaults(), out)
    centers = pd.read_csv(out / "centers.tsv", sep="\t").set_index("center")
    assert centers.loc["B", "ct_score"] == "25 (25-25)"
    assert centers.loc["A", "ct_score"] == median_iqr(scans_a["ct_score"])  # untouched
