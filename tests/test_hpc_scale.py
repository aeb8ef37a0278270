"""Index-only synthetic cohorts (``serialct synth --index-only``) and the DAG-scale benchmark."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from serialct.cli import main as serialct
from serialct.config import load_config
from serialct.synth import synth_index_only

ROOT = Path(__file__).resolve().parents[1]


def _dag_scale():
    spec = importlib.util.spec_from_file_location("dag_scale", ROOT / "benchmarks" / "dag_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_index_only_cohort_has_exactly_n_scans_and_no_images(tmp_path):
    config_path = synth_index_only(tmp_path / "c", scans=23, seed=4)
    config = load_config(config_path)  # validates against the schema
    index = pd.read_csv(tmp_path / "c" / "results" / "index" / "SYNTH.tsv", sep="\t", dtype=str)
    assert len(index) == 23
    assert not index.duplicated(["patient_id", "scan_id"]).any()
    manifests = sorted((tmp_path / "c" / "results" / "index" / "SYNTH").glob("*/*.json"))
    assert len(manifests) == 23
    first = json.loads(manifests[0].read_text())
    assert first["files"] == [] and first["center"] == "SYNTH"
    assert list((tmp_path / "c" / "dicom").iterdir()) == []
    clinical = pd.read_csv(config["centers"]["SYNTH"]["clinical"], sep="\t", dtype=str)
    readings = pd.read_csv(config["centers"]["SYNTH"]["readings"], sep="\t", dtype=str)
    assert set(index["patient_id"]) == set(clinical["patient_id"])
    assert len(readings) == 23
    series = pd.read_csv(tmp_path / "c" / "results" / "index" / "SYNTH.series.tsv", sep="\t")
    assert series["chosen"].all() and len(series) == 23


@pytest.fixture
def own_log_handlers():
    """The CLI adds a handler on the (captured, later closed) stderr: remove it afterwards."""
    logger = logging.getLogger("serialct")
    before = list(logger.handlers)
    yield
    for handler in [h for h in logger.handlers if h not in before]:
        logger.removeHandler(handler)


def test_cli_index_only_needs_scans(tmp_path, capsys, own_log_handlers):
    assert serialct(["synth", str(tmp_path / "a"), "--index-only"]) != 0
    assert "--scans" in capsys.readouterr().err
    assert serialct(["synth", str(tmp_path / "b"), "--index-only", "--scans", "7"]) == 0
    config = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    assert Path(config["results"]) == tmp_path / "b" / "results"


@pytest.mark.integration
def test_dry_run_plans_every_scan_and_writes_nothing(tmp_path):
    dag_scale = _dag_scale()
    seconds = dag_scale.measure(31, tmp_path)
    assert seconds > 0
    cohort = tmp_path / "index-only-31"
    before = {str(p): p.stat().st_mtime_ns for p in cohort.rglob("*")}
    _, counts = dag_scale.dry_run(cohort / "config.yaml")
    assert {r: counts[r] for r in dag_scale.PER_SCAN_RULES} == dict.fromkeys(
        dag_scale.PER_SCAN_RULES, 31
    )
    assert counts["tables"] == counts["report"] == 1
    assert {str(p): p.stat().st_mtime_ns for p in cohort.rglob("*")} == before


@pytest.mark.integration
def test_user_lobes_become_an_input_of_that_scans_lung_job(tmp_path):
    config_path = synth_index_only(tmp_path / "c", scans=2, seed=1)
    config = yaml.safe_load(config_path.read_text())
    index = pd.read_csv(Path(config["results"]) / "index" / "SYNTH.tsv", sep="\t", dtype=str)
    patient, scan = index.iloc[0][["patient_id", "scan_id"]]
    lobes = tmp_path / "lobes" / f"{patient}_{scan}.nii.gz"
    lobes.parent.mkdir()
    lobes.write_bytes(b"")
    config["lobes_from"] = str(lobes.parent)
    config_path.write_text(yaml.safe_dump(config))
    run = subprocess.run(
        [str(Path(sys.executable).with_name("snakemake")), "--cores", "1", "--configfile",
         str(config_path), "--dry-run", "scans"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count(str(lobes)) == 1  # the one scan that has user lobes, and only it
