"""run_cohort_stats + figures + report on a 20-patient synthetic cohort, checked by the contract
script, and on a tiny cohort with missing CT scores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cohort_factory import make_cohort

from serialct.config import defaults
from serialct.figures import figure2, figure3
from serialct.report import write_report
from serialct.stats import run_cohort_stats
from serialct.stats.correlation import CORRELATION_COLUMNS
from serialct.stats.curves import FIT_COLUMNS

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
    write_report(out, stats_dir, tables, figures, [figures / "figure2.png"], defaults())
    html = out.read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "&lt;warn&gt; lung small" in html and "<warn>" not in html
    for text in (
        "Table 5.",
        "Key numbers vs the paper",
        "0.920",
        "[-750, -300]",
        "[0, 5, 25, 50, 75]",
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
