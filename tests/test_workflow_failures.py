"""Integration: a scan whose DICOM cannot be read does not stop the cohort (issue 19, point 1).

A synthetic cohort in which every file of one scan's series has truncated pixel data (a bad
export): the workflow finishes, the other scans are measured, and the one line that says what
broke reaches the convert job's log, the scan's metrics.json, stats/excluded.tsv and the
report, and figure 4 (which shows that scan's patient) leaves it out. Once the files are
replaced by good ones, the next run measures that scan and reruns no other scan's jobs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from test_workflow import snakemake

from serialct.cli import main as serialct

pytestmark = pytest.mark.integration

BROKEN = "the pixel data of no file of this series is readable"


def _series_files(dicom: Path) -> dict[str, list[Path]]:
    """Files per (patient, study date) of a synthetic cohort's DICOM tree."""
    out: dict[str, list[Path]] = {}
    for path in sorted(dicom.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out.setdefault(f"{ds.PatientID}/{ds.StudyDate}", []).append(path)
    return out


def test_a_broken_scan_is_listed_and_the_others_go_on(tmp_path: Path) -> None:
    assert serialct(["synth", str(tmp_path), "--patients", "2", "--seed", "5",
                     "--shape", "64,96,96"]) == 0  # fmt: skip
    config = str(tmp_path / "config.yaml")
    series = _series_files(tmp_path / "dicom")
    # a scan of the patient that figure 4 shows (the first with the most scans)
    counts = {}
    for k in sorted(series):
        counts[k.split("/")[0]] = counts.get(k.split("/")[0], 0) + 1
    shown = max(sorted(counts), key=lambda p: counts[p])
    key = min(k for k in series if k.startswith(f"{shown}/"))
    files = series[key]
    good = tmp_path / "good"
    good.mkdir()
    for path in files:
        shutil.copy2(path, good / path.name)
        with path.open("r+b") as fh:
            fh.truncate(path.stat().st_size - 2000)

    run = snakemake("--configfile", config)
    assert run.returncode == 0, run.stderr[-5000:]
    results = tmp_path / "results"
    metrics = [json.loads(p.read_text()) for p in sorted(results.glob("scans/*/*/*/metrics.json"))]
    broken = [m for m in metrics if m["qc_status"].startswith("error:")]
    assert len(broken) == 1 and len(metrics) > 1
    line = broken[0]["qc_messages"][0]
    assert line.startswith("convert: ") and BROKEN in line and "\n" not in line
    patient, _ = key.split("/")
    assert broken[0]["patient_id"] == patient
    assert all(m.get("lung_volume_cm3", 0) > 0 for m in metrics if m is not broken[0])
    logs = list((results / "logs" / "convert").rglob(f"{broken[0]['scan_id']}.log"))
    assert logs and BROKEN in logs[0].read_text()
    excluded = pd.read_csv(results / "stats" / "excluded.tsv", sep="\t")
    assert excluded["reason"].str.contains(BROKEN, regex=False).any()
    assert BROKEN in (results / "report.html").read_text()
    assert all((results / "figures" / f"figure{i}.png").stat().st_size > 0 for i in (2, 3, 4))

    for path in files:  # the site re-exports the scan
        shutil.copy(good / path.name, path)
    run = snakemake("--configfile", config)
    assert run.returncode == 0, run.stderr[-5000:]
    started = [
        line.split()[-1]
        for line in (run.stdout + run.stderr).splitlines()
        if line.startswith(("rule ", "localrule "))
    ]
    assert started.count("convert:") == 1 and started.count("quantify:") == 1, started
    scan_dir = next(results.glob(f"scans/*/{patient}/{broken[0]['scan_id']}"))
    fixed = json.loads((scan_dir / "metrics.json").read_text())
    assert not fixed["qc_status"].startswith("error") and fixed["lung_volume_cm3"] > 0
