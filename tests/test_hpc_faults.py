"""Faults: a killed or failing write leaves no final-named output; failed jobs retry with more
memory (the workflow's own ``grows`` and the SLURM profile's ``retries``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from serialct import steps
from serialct.atomic import TMP_PREFIX, atomic_files, atomic_path, write_text

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def test_atomic_path_renames_only_on_success(tmp_path):
    out = tmp_path / "sub" / "lung.nii.gz"
    with atomic_path(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.endswith("-lung.nii.gz")
        tmp.write_bytes(b"complete")
        assert not out.exists()
    assert out.read_bytes() == b"complete"
    assert [p.name for p in out.parent.iterdir()] == ["lung.nii.gz"]


def test_failed_write_leaves_old_output_and_no_temp(tmp_path):
    out = tmp_path / "metrics.json"
    write_text(out, "old\n")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("job failed mid-write")
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_failed_stats_leave_no_files(tmp_path):
    out = tmp_path / "stats"
    with pytest.raises(ValueError), atomic_files(out) as tmp:
        (tmp / "table1.tsv").write_text("a\n")
        raise ValueError("stats failed")
    assert list(out.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["stats"]
    with atomic_files(out) as tmp:
        (tmp / "table1.tsv").write_text("a\n")
    assert [p.name for p in out.iterdir()] == ["table1.tsv"]


KILLED_WRITER = """
import os, signal, sys
import numpy as np, SimpleITK as sitk
from serialct import steps
real_write = sitk.WriteImage
def write_then_die(image, path, *args, **kwargs):
    with open(path, "wb") as f:  # half a file under the name the writer was given
        f.write(b"\\x1f\\x8b partial")
    os.kill(os.getpid(), signal.SIGKILL)
sitk.WriteImage = write_then_die
image = sitk.GetImageFromArray(np.zeros((4, 8, 8), np.uint8))
steps._write_image(image, sys.argv[1])
"""


def test_job_killed_mid_write_leaves_no_output_and_rerun_completes(tmp_path):
    out = tmp_path / "scan" / "lesion.nii.gz"
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(out)], capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists()  # a rerun (Snakemake or a human) cannot take it for finished work
    leftovers = [p.name for p in out.parent.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(TMP_PREFIX)

    mask = np.zeros((4, 8, 8), np.uint8)
    mask[1:3, 2:6, 2:6] = 1
    steps._write_image(sitk.GetImageFromArray(mask), out)  # the rerun
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), mask)


def test_tables_written_atomically(tmp_path, monkeypatch):
    import pandas as pd

    out = tmp_path / "scans.tsv"

    def broken_to_csv(self, path, *args, **kwargs):
        Path(path).write_text("patient_id\tscan")  # half a table, then the node dies
        raise OSError("disk quota exceeded")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken_to_csv)
    with pytest.raises(OSError):
        steps._write_tsv(pd.DataFrame({"patient_id": ["P1"]}), out)
    assert list(tmp_path.iterdir()) == []


def _profile_retries() -> int:
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    return int(profile["retries"])


def _hungry_workflow(folder: Path, shell: str) -> None:
    """A one-rule Snakefile whose job gets mem_mb from the workflow's own grows_mb(1000)."""
    (folder / "Snakefile").write_text(
        textwrap.dedent(
            f"""
            include: "{ROOT / "workflow" / "rules" / "resources.smk"}"

            rule hungry:
                output: "done.txt"
                resources: mem_mb=grows_mb(1000)
                shell: {shell!r}
            """
        )
    )


def test_profile_retries_and_rules_grow_with_attempt():
    assert _profile_retries() >= 1
    values = [
        (smk.name, value)
        for smk in (ROOT / "workflow" / "rules").glob("*.smk")
        for value in re.findall(r"^\s+((?:mem_mb|runtime)=\S+)", smk.read_text(), re.M)
    ]
    assert len(values) >= 10  # every per-scan and fan-in rule sets both
    assert all(  # memory never beyond the run's cap (grows_mb), runtime plain
        value.startswith(("mem_mb=grows_mb(", "runtime=grows(")) for _, value in values
    ), values


@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake not installed in this venv")
def test_failing_job_is_retried_with_more_memory(tmp_path):
    """A job that needs 2 GB fails at attempt 1 (1 GB) and succeeds at attempt 2, with the
    workflow's own grows() and as many retries as the SLURM profile allows."""
    _hungry_workflow(
        tmp_path,
        "echo attempt {resources.mem_mb} >> attempts.txt; "
        "test {resources.mem_mb} -ge 2000 && echo {resources.mem_mb} > {output}",
    )
    run = subprocess.run(
        [str(SNAKEMAKE), "--cores", "1", "--retries", str(_profile_retries())],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "attempts.txt").read_text().split() == ["attempt", "1000", "attempt", "2000"]
    assert (tmp_path / "done.txt").read_text().strip() == "2000"


@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake not installed in this venv")
def test_without_retries_the_job_fails(tmp_path):
    """The control: the same job with no retries stops the run (so the test above can fail)."""
    _hungry_workflow(tmp_path, "test {resources.mem_mb} -ge 2000 && touch {output}")
    run = subprocess.run(
        [str(SNAKEMAKE), "--cores", "1", "--retries", "0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode != 0
    assert not (tmp_path / "done.txt").exists()


@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake not installed in this venv")
def test_retries_never_ask_for_more_memory_than_the_cap(tmp_path):
    """With the node's memory as the cap (--resources mem_mb, the SLURM profile's), attempts
    grow to the cap and no further: a retry never asks SLURM for more than a node has."""
    _hungry_workflow(
        tmp_path,
        "echo attempt {resources.mem_mb} >> attempts.txt; "
        "test {resources.mem_mb} -ge 2000 && touch {output}",
    )
    run = subprocess.run(
        [str(SNAKEMAKE), "--cores", "1", "--retries", "2", "--resources", "mem_mb=1500"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode != 0
    attempts = (tmp_path / "attempts.txt").read_text().split()
    assert attempts == ["attempt", "1000", "attempt", "1500", "attempt", "1500"]
