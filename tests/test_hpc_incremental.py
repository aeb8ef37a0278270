"""Incremental reruns and multi-centre pooling on one finished run (issue 7).

One tiny cohort is run once (module fixture, ``run0``). Each test works on its own copy, reached
through the same absolute path (a symlink ``live`` -> ``runN``) and run with the cohort folder as
Snakemake's working directory, so Snakemake's provenance records (``.snakemake/`` inside the copy)
and every mtime carry over exactly as if the user had changed the original folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from dicom_factory import add_patient

from serialct.cli import main as serialct
from serialct.synth import synth_cohort

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
SHAPE = (32, 96, 96)
PER_SCAN_RULES = {"convert", "lung", "lesion", "quantify"}
FAN_IN_RULES = {"tables", "cohort_stats", "figures", "report", "all"}

pytestmark = pytest.mark.integration


def snakemake(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SNAKEMAKE), *args, "--cores", "2", "--snakefile", str(ROOT / "Snakefile"),
         "--directory", str(config.parent), "--configfile", str(config)],  # targets first
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )  # fmt: skip


def planned_jobs(config: Path) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job a dry run plans."""
    run = snakemake(config, "--dry-run")
    assert run.returncode == 0, run.stderr[-3000:]
    jobs: list[tuple[str, dict[str, str]]] = []
    for line in (run.stdout + run.stderr).splitlines():
        start = re.match(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):$", line)
        if start:
            jobs.append((start.group(1), {}))
        elif jobs and line.strip().startswith("wildcards:"):
            pairs = line.split(":", 1)[1].split(",")
            jobs[-1][1].update(p.strip().split("=", 1) for p in pairs)  # type: ignore[arg-type]
    return jobs


def snapshot(folder: Path) -> dict[str, int]:
    """mtime of every file and folder, Snakemake's own bookkeeping (``.snakemake/``) aside."""
    return {
        str(p): p.stat().st_mtime_ns
        for p in sorted(folder.rglob("*"))
        if ".snakemake" not in p.relative_to(folder).parts
    }


def relocate_config(cohort: Path, old: Path, new: Path) -> None:
    config = cohort / "config.yaml"
    config.write_text(config.read_text().replace(str(old), str(new)))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run of a 2-patient cohort in ``base/run0``, configured through ``base/live``."""
    base = tmp_path_factory.mktemp("incremental")
    run0 = base / "run0"
    synth_cohort(run0, patients=2, seed=3, shape=SHAPE)
    live = base / "live"
    live.symlink_to(run0)
    relocate_config(run0, run0, live)
    config = yaml.safe_load((run0 / "config.yaml").read_text())
    config["model"] = str(ROOT / "resources" / "models" / "covid_lesion_net.pt")  # cwd: the cohort
    (run0 / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run = snakemake(live / "config.yaml")
    assert run.returncode == 0, run.stderr[-5000:]
    return run0


@pytest.fixture
def cohort(finished) -> Path:
    """A fresh copy of the finished run, at the same absolute path (``live``)."""
    base = finished.parent
    copy = base / f"run{len(list(base.glob('run*')))}"
    shutil.copytree(finished, copy, symlinks=True)
    live = base / "live"
    live.unlink()
    live.symlink_to(copy)
    return live


def test_dry_run_on_finished_run_writes_nothing(cohort):
    before = snapshot(cohort.resolve())
    run = snakemake(cohort / "config.yaml", "--dry-run")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Nothing to be done" in run.stdout + run.stderr
    assert snapshot(cohort.resolve()) == before  # no file created, none touched


def _plan_after_index(config: Path, center: str, what: str, n_new: int) -> tuple[list, list]:
    """Run ``center``'s index checkpoint, then the dry-run plan: (all jobs, per-scan jobs); the
    per-scan jobs are every per-scan rule once for each of the ``n_new`` new scans."""
    index = snakemake(config, str(config.parent / "results" / "index" / f"{center}.tsv"))
    assert index.returncode == 0, index.stderr[-3000:]
    jobs = planned_jobs(config)
    per_scan = [(rule, wc) for rule, wc in jobs if rule in PER_SCAN_RULES]
    print(f"{what} ({n_new} scans): {len(jobs)} jobs, {len(per_scan)} per-scan")
    assert len(per_scan) == len(PER_SCAN_RULES) * n_new
    return jobs, per_scan


def test_new_patient_plans_only_its_scans_and_the_fan_in(cohort):
    config = cohort / "config.yaml"
    n_new = add_patient(cohort, "P001", "P900")
    jobs, per_scan = _plan_after_index(config, "SYNTH", "new patient", n_new)
    assert {wc["patient"] for _, wc in per_scan} == {"P900"}
    for rule in PER_SCAN_RULES:
        assert sum(r == rule for r, _ in per_scan) == n_new, rule
    assert {rule for rule, _ in jobs} - PER_SCAN_RULES == FAN_IN_RULES


def _edit_clinical(cohort: Path) -> None:
    sheet = cohort / "clinical.tsv"
    table = pd.read_csv(sheet, sep="\t", dtype=str)
    table.loc[0, "age"] = str(int(table.loc[0, "age"]) + 1)
    table.to_csv(sheet, sep="\t", index=False)


def test_clinical_edit_reruns_only_the_fan_in(cohort):
    _edit_clinical(cohort)
    jobs = planned_jobs(cohort / "config.yaml")
    print(f"clinical edit: {len(jobs)} jobs: {sorted(r for r, _ in jobs)}")
    assert {rule for rule, _ in jobs} == FAN_IN_RULES
    assert len(jobs) == len(FAN_IN_RULES)


def test_stats_runs_from_tables_with_the_dicom_root_unmounted(cohort):
    """``snakemake stats`` and ``serialct stats`` need no images: the index keeps the
    fingerprint it recorded, so nothing upstream of the tables reruns."""
    config = cohort / "config.yaml"
    (cohort / "dicom").rename(cohort / "dicom-unmounted")
    before = snapshot(cohort.resolve())
    run = snakemake(config, "stats")
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert "Nothing to be done" in log
    assert f"DICOM root {cohort / 'dicom'} not found: using the index of" in log
    assert snapshot(cohort.resolve()) == before

    _edit_clinical(cohort)
    run = snakemake(config, "stats")
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    started = re.findall(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):$", log, flags=re.MULTILINE)
    assert sorted(started) == ["cohort_stats", "stats", "tables"]

    # the CLI too: the same tables, the same config with its DICOM root unmounted
    results, out = cohort / "results", cohort / "cli-stats"
    scans = results / "tables" / "scans.tsv"
    sheets = ["--scans", str(scans), "--clinical", str(cohort / "clinical.tsv")]
    assert serialct(["stats", *sheets, "--config", str(config), str(out)]) == 0
    written = sorted(p.name for p in (results / "stats").iterdir())
    assert sorted(p.name for p in out.iterdir()) == written


def _add_center(cohort: Path, center: str, seed: int) -> tuple[Path, int]:
    """A second centre (its own synthetic DICOM and sheets, same patient ids P001...)."""
    site = cohort.resolve() / center.lower()
    synth_cohort(site, patients=1, seed=seed, shape=SHAPE)
    site_cfg = yaml.safe_load((site / "config.yaml").read_text())
    config = yaml.safe_load((cohort / "config.yaml").read_text())
    config["centers"][center] = site_cfg["centers"]["SYNTH"]
    (cohort / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return site, len(pd.read_csv(site / "truth.tsv", sep="\t"))


def test_new_center_plans_only_its_scans_then_pools_three_centres(cohort):
    config = cohort / "config.yaml"
    _, n_new = _add_center(cohort, "SITE2", seed=5)
    jobs, per_scan = _plan_after_index(config, "SITE2", "new centre", n_new)
    assert {wc["center"] for _, wc in per_scan} == {"SITE2"}
    assert {rule for rule, _ in jobs} - PER_SCAN_RULES == FAN_IN_RULES

    # multi-centre: a third centre's scans table pooled in; it reuses the same patient ids
    third = cohort.resolve() / "site3_scans.tsv"
    scans = pd.read_csv(cohort / "results" / "tables" / "scans.tsv", sep="\t", dtype=str)
    scans.assign(center="SITE3").to_csv(third, sep="\t", index=False)
    cfg = yaml.safe_load(config.read_text())
    cfg["pooled_tables"] = [str(third)]
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run = snakemake(config)
    assert run.returncode == 0, run.stderr[-5000:]

    results = cohort / "results"
    scans = pd.read_csv(results / "tables" / "scans.tsv", sep="\t", dtype=str)
    patients = pd.read_csv(results / "tables" / "patients.tsv", sep="\t", dtype=str)
    assert sorted(scans["center"].unique()) == ["SITE2", "SYNTH"]
    assert (scans["center"] == "SITE2").sum() == n_new
    both = scans.groupby("patient_id")["center"].nunique()
    assert both["P001"] == 2  # the same id at two centres ...
    assert len(patients) == scans[["center", "patient_id"]].drop_duplicates().shape[0]
    assert len(patients[patients["patient_id"] == "P001"]) == 2  # ... stays two patients
    centers = pd.read_csv(results / "stats" / "centers.tsv", sep="\t")
    print(centers.to_string())
    assert set(centers["center"].astype(str)) >= {"SYNTH", "SITE2", "SITE3"}
    pooled = centers.set_index(centers["center"].astype(str))["patients"]
    # 2 (SYNTH) + 1 (SITE2) + 2 (SITE3), although only P001 and P002 occur as ids
    assert pooled["all"] == pooled["SYNTH"] + pooled["SITE2"] + pooled["SITE3"] == 5
