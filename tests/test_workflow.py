"""Integration: the whole workflow on a tiny synthetic cohort, checked against its ground truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pydicom
import pytest
import yaml
from dicom_factory import add_patient

from serialct.cli import main as serialct
from serialct.dicom.readback import check_seg
from serialct.provenance import sha256

ROOT = Path(__file__).resolve().parents[1]
CHECK_CONTRACT = ROOT.parent / "shared" / "tools" / "check_contract.py"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
DCIODVFY = Path(sys.executable).with_name("dciodvfy")
LUNG_TOLERANCE = 0.05
# worst measured -33 % (a 45 cm3 lesion, 1.6 % of the smallest lung, 6.7 mm slices); -29 % before
# the phantoms' lung shapes varied (issue 17): the phantom model undersegments small lesions
LESION_TOLERANCE = 0.35

pytestmark = pytest.mark.integration


def snakemake(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SNAKEMAKE), "--cores", "2", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    assert serialct(["synth", str(out), "--patients", "3", "--seed", "11"]) == 0
    run = snakemake("--configfile", str(out / "config.yaml"))
    assert run.returncode == 0, run.stderr[-5000:]
    return out


def test_contract_files_and_columns(cohort):
    run = subprocess.run(
        [sys.executable, str(CHECK_CONTRACT), str(cohort / "results")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout


def test_volumes_match_truth(cohort):
    scans = pd.read_csv(
        cohort / "results" / "tables" / "scans.tsv", sep="\t", dtype={"scan_id": str}
    )
    truth = pd.read_csv(cohort / "truth.tsv", sep="\t", dtype={"scan_id": str})
    both = truth.merge(scans, on=["patient_id", "scan_id"], suffixes=("_true", ""))
    assert len(both) == len(truth) == len(scans)
    lung_err = (both["lung_volume_cm3"] / both["lung_volume_cm3_true"] - 1).abs()
    lesion_err = (both["lesion_volume_cm3"] / both["lesion_volume_cm3_true"] - 1).abs()
    print(f"worst lung error {lung_err.max():.3f}, worst lesion error {lesion_err.max():.3f}")
    assert lung_err.max() <= LUNG_TOLERANCE, both.loc[lung_err.idxmax()].to_dict()
    assert lesion_err.max() <= LESION_TOLERANCE, both.loc[lesion_err.idxmax()].to_dict()


def test_scans_table_is_joined_with_sheets(cohort):
    scans = pd.read_csv(cohort / "results" / "tables" / "scans.tsv", sep="\t")
    assert set(scans["severity"]) <= {"moderate", "severe"}
    assert scans["days_since_onset"].notna().all()
    assert scans["ct_score"].between(0, 25).all()
    assert scans["ai_ct_score"].between(0, 25).all()
    assert (scans["qc_status"].str.startswith("ok")).all()


def test_provenance_beside_every_output(cohort):
    results = cohort / "results"
    records = sorted(results.glob("scans/*/*/*/provenance.json"))
    assert records and len(records) == len(list(results.glob("scans/*/*/*/metrics.json")))
    for path in records:
        record = json.loads(path.read_text())
        manifest = Path(record["inputs"]["manifest"]["path"])
        assert record["inputs"]["manifest"]["sha256"] == sha256(manifest)
        assert record["model"]["sha256"] == sha256(record["model"]["path"])
        assert record["time"] and record["host"]
    root = json.loads((results / "provenance.json").read_text())
    assert any(i["path"].endswith("scans.tsv") for i in root["inputs"])
    assert root["config"]["sha256"] in (results / "report.html").read_text()


def test_dicom_seg_and_sr_beside_every_scan(cohort):
    """dicom_export (default on): every scan's SEG holds its NIfTI labels voxel for voxel and
    passes dciodvfy; its SR carries the scan's AI CT score."""
    results = cohort / "results"
    scans = sorted(p.parent for p in results.glob("scans/*/*/*/metrics.json"))
    assert scans
    for scan in scans:
        checks = check_seg(scan / "seg.dcm", scan)
        assert checks and all(c.exact for c in checks), (scan, checks)
        for name in ("seg.dcm", "sr.dcm"):
            check = subprocess.run(
                [str(DCIODVFY), str(scan / name)], capture_output=True, text=True
            )
            errors = [x for x in check.stderr.splitlines() if x.startswith("Error")]
            assert not errors, (scan / name, errors)
        score = json.loads((scan / "metrics.json").read_text())["ai_ct_score"]
        assert _sr_values(pydicom.dcmread(scan / "sr.dcm"))["ai-ct-score"] == score


def _sr_values(items) -> dict[str, float]:  # noqa: ANN001
    """Code value -> numeric value of every measurement in an SR content tree."""
    found = {}
    for item in items.ContentSequence if hasattr(items, "ContentSequence") else items:
        if "MeasuredValueSequence" in item:
            code = item.ConceptNameCodeSequence[0].CodeValue
            found[code] = float(item.MeasuredValueSequence[0].NumericValue)
        found.update(_sr_values(item.get("ContentSequence", [])))
    return found


def test_second_run_has_nothing_to_do(cohort):
    run = snakemake("--configfile", str(cohort / "config.yaml"), "--dry-run")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Nothing to be done" in run.stdout + run.stderr


def test_unknown_config_key_stops_the_run(cohort, tmp_path):
    bad = tmp_path / "config.yaml"
    bad.write_text((cohort / "config.yaml").read_text() + "resluts: x\n")
    run = snakemake("--configfile", str(bad), "--dry-run")
    assert run.returncode != 0
    assert "resluts" in run.stdout + run.stderr


def test_new_patient_reruns_only_its_scans_and_the_fan_in(cohort):
    """Runs last: it changes the cohort."""
    n_new = add_patient(cohort, "P001", "P900")
    run = snakemake("--configfile", str(cohort / "config.yaml"))
    assert run.returncode == 0, run.stderr[-5000:]
    log = run.stdout + run.stderr
    started = [
        line.strip()
        for line in log.splitlines()
        if line.startswith(("rule ", "localrule ", "checkpoint ", "localcheckpoint "))
    ]
    for rule in ("convert", "lung", "lesion", "quantify"):
        jobs = [line for line in started if line.split()[-1] == f"{rule}:"]
        assert len(jobs) == n_new, f"{rule}: {len(jobs)} jobs for {n_new} new scans"
    for rule in ("index", "tables", "cohort_stats", "report"):
        assert any(line.split()[-1] == f"{rule}:" for line in started), f"{rule} did not rerun"
    scans = pd.read_csv(cohort / "results" / "tables" / "scans.tsv", sep="\t")
    assert (scans["patient_id"] == "P900").sum() == n_new


def test_contract_only_config_runs_end_to_end(tmp_path):
    """Exactly the contract's keys (results, centers.*.dicom, centers.*.clinical): every other
    setting, the default lesion model and the shipped normal-lung reference included, comes
    from the schema's defaults, from the repository, with the cwd elsewhere for serialct."""
    synth = tmp_path / "synth"
    # 64 slices over 313 mm: 4.9 mm, inside the default series limits (0.5-5 mm)
    assert (
        serialct(["synth", str(synth), "--patients", "1", "--seed", "5", "--shape", "64,96,96"])
        == 0
    )
    made = yaml.safe_load((synth / "config.yaml").read_text())
    centers = {
        name: {"dicom": c["dicom"], "clinical": c["clinical"]}
        for name, c in made["centers"].items()
    }
    config = tmp_path / "contract.yaml"
    config.write_text(yaml.safe_dump({"results": str(tmp_path / "results"), "centers": centers}))
    run = snakemake("--configfile", str(config))
    assert run.returncode == 0, run.stderr[-5000:]
    check = subprocess.run(
        [sys.executable, str(CHECK_CONTRACT), str(tmp_path / "results")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout
    scans = pd.read_csv(tmp_path / "results" / "tables" / "scans.tsv", sep="\t")
    assert scans["hellinger"].between(0, 1).all() and scans["iou"].between(0, 1).all()
    report = (tmp_path / "results" / "report.html").read_text()
    assert "normal_lung_histogram.tsv" in report and "normal scan(s)" in report
