"""The warm lesion worker (serialct.lesion.worker): the same labels as in-process inference, one
process for many scans, bad inputs back as InputError, gone with its Snakemake process."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from serialct import steps
from serialct.config import defaults
from serialct.errors import InputError
from serialct.lesion import worker
from serialct.phantom import draw_phantom

MODEL = Path(__file__).resolve().parents[1] / "resources" / "models" / "covid_lesion_net.pt"


def _scan(folder: Path, seed: int) -> tuple[Path, Path]:
    p = draw_phantom(np.random.default_rng(seed), shape=(24, 96, 96), lesion_percent=8.0)
    ct = sitk.GetImageFromArray(p.hu)
    ct.SetSpacing([float(s) for s in p.spacing[::-1]])
    lung = sitk.GetImageFromArray(p.lung.astype(np.uint8))
    lung.CopyInformation(ct)
    folder.mkdir(parents=True)
    sitk.WriteImage(ct, str(folder / "ct.nii.gz"))
    sitk.WriteImage(lung, str(folder / "lung.nii.gz"))
    return folder / "ct.nii.gz", folder / "lung.nii.gz"


def _config() -> dict:
    config = defaults()
    config["device"] = "cpu"
    return config


@pytest.fixture
def owner():
    """A stand-in for the Snakemake process the worker serves; stopped by pid at the end."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _wait_gone(path: Path, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not path.exists()


def _request(ct: Path, lung: Path, out: Path) -> dict:
    return {"ct": str(ct), "lung": str(lung), "model": str(MODEL), "out": str(out),
            "config": _config(), "threads": 1}  # fmt: skip


def test_worker_serves_many_scans_with_in_process_labels(
    tmp_path: Path, owner: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERIALCT_WORKER_LOG", "1")  # the worker keeps its log for the check
    scans = [_scan(tmp_path / f"s{i}", seed=i) for i in range(3)]
    path = worker.socket_path(owner, MODEL, "cpu")
    for i, (ct, lung) in enumerate(scans):
        with worker._connect(path, owner) as conn:
            assert worker._ask(conn, _request(ct, lung, tmp_path / f"s{i}" / "warm.nii.gz"))
    for i, (ct, lung) in enumerate(scans):
        cold = tmp_path / f"s{i}" / "cold.nii.gz"
        steps.segment_lesions(ct, lung, MODEL, cold, _config(), threads=1)
        warm = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"s{i}" / "warm.nii.gz")))
        assert np.array_equal(warm, sitk.GetArrayFromImage(sitk.ReadImage(str(cold))))
        assert np.count_nonzero(warm) > 0
    # one process served all three, and it goes when its Snakemake process goes
    subprocess.run(["kill", str(owner)], check=True)
    assert _wait_gone(path)
    assert "lesion worker exits: 3 scans" in path.with_suffix(".log").read_text()
    path.with_suffix(".log").unlink()


def test_jobs_side_by_side_get_their_own_labels(
    tmp_path: Path, owner: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Two jobs asking at once (a run with --cores for two): each gets its own scan's labels
    and log lines."""
    scans = [_scan(tmp_path / f"s{i}", seed=10 + i) for i in range(2)]
    path = worker.socket_path(owner, MODEL, "cpu")
    worker._connect(path, owner).close()  # started before both ask
    said: dict[int, list[str]] = {}

    def job(i: int) -> None:
        ct, lung = scans[i]
        with worker._connect(path, owner) as conn:
            me, handler = threading.get_ident(), logging.Handler()
            handler.emit = lambda r: r.thread != me or said.setdefault(i, []).append(r.getMessage())
            worker.log.addHandler(handler)
            try:
                assert worker._ask(conn, _request(ct, lung, tmp_path / f"s{i}" / "warm.nii.gz"))
            finally:
                worker.log.removeHandler(handler)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(2)]
    with caplog.at_level("INFO", logger="serialct"):
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    for i, (ct, lung) in enumerate(scans):
        cold = tmp_path / f"s{i}" / "cold.nii.gz"
        steps.segment_lesions(ct, lung, MODEL, cold, _config(), threads=1)
        warm = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"s{i}" / "warm.nii.gz")))
        assert np.array_equal(warm, sitk.GetArrayFromImage(sitk.ReadImage(str(cold))))
    for i in range(2):  # each job's log has its own scan's lines, once
        assert sum("worker: lesion segmentation took" in m for m in said[i]) == 1


def test_bad_input_comes_back_as_input_error(tmp_path: Path, owner: int) -> None:
    ct, _ = _scan(tmp_path / "a", seed=1)
    _, other_lung = _scan(tmp_path / "b", seed=2)
    small = sitk.ReadImage(str(other_lung))[:, :, :10]
    sitk.WriteImage(small, str(tmp_path / "b" / "lung.nii.gz"))
    path = worker.socket_path(owner, MODEL, "cpu")
    with worker._connect(path, owner) as conn, pytest.raises(InputError, match="lung.nii.gz"):
        worker._ask(conn, _request(ct, tmp_path / "b" / "lung.nii.gz", tmp_path / "out.nii.gz"))
    assert not (tmp_path / "out.nii.gz").exists()


def test_snakemake_owner_is_found_above_the_shell(tmp_path: Path) -> None:
    """Snakemake runs a script job as snakemake -> shell -> python; the owner is snakemake."""
    fake = tmp_path / "snakemake"
    fake.write_text(
        "import subprocess, sys\n"
        "code = 'from serialct.lesion.worker import snakemake_owner; print(snakemake_owner())'\n"
        "inner = f'{sys.executable} -c \"{code}\"'\n"
        "subprocess.run(['bash', '-c', inner + '; true'], check=True)\n"
    )
    run = subprocess.Popen([sys.executable, str(fake)], stdout=subprocess.PIPE, text=True)
    out, _ = run.communicate(timeout=60)
    assert out.strip() == str(run.pid)
    assert worker.snakemake_owner() is None  # pytest has no Snakemake above it


def test_without_snakemake_the_scan_runs_in_this_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    ct, lung = _scan(tmp_path / "a", seed=3)
    monkeypatch.setattr(logging.getLogger("serialct"), "propagate", True)  # (setup() stops it)
    with caplog.at_level("INFO", logger="serialct"):
        worker.segment_lesions(ct, lung, MODEL, tmp_path / "lesion.nii.gz", _config(), 1)
    assert (tmp_path / "lesion.nii.gz").is_file()
    said = [r.getMessage() for r in caplog.records]
    assert any("lesion segmentation took" in m for m in said)
    assert not any("worker" in m for m in said)  # neither started nor asked


def test_slurm_steps_use_the_worker_their_job_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A packed SLURM job's Snakemake starts the worker (batch step); its members, each in an
    srun step, use it; a step of a job without one runs the scan itself and starts none."""
    ct, lung = _scan(tmp_path / "a", seed=4)
    monkeypatch.setattr(logging.getLogger("serialct"), "propagate", True)
    monkeypatch.setenv("SLURM_JOB_ID", f"test{time.time_ns()}")
    monkeypatch.delenv("SLURM_STEP_ID", raising=False)
    worker.start_for_slurm_job(MODEL, _config(), ["snakemake", "--target-jobs", "lung:x=1"])
    path = worker.socket_path(f"slurm-{worker.os.environ['SLURM_JOB_ID']}", MODEL, "cpu")
    assert not path.exists()  # no lesion job among the targets: no worker
    argv = ["snakemake", "--target-jobs", "lung:x=1", "lesion:x=1", "--mode", "remote"]
    worker.start_for_slurm_job(MODEL, _config(), argv)
    assert path.exists()
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    with caplog.at_level("INFO", logger="serialct"):
        worker.segment_lesions(ct, lung, MODEL, tmp_path / "warm.nii.gz", _config(), 1)
    pids = {int(m.split()[4]) for m in caplog.messages if m.startswith("worker: lesion worker pid")}
    assert len(pids) == 1 and (tmp_path / "warm.nii.gz").is_file()
    caplog.clear()
    monkeypatch.setenv("SLURM_JOB_ID", "another-job")
    with caplog.at_level("INFO", logger="serialct"):
        worker.segment_lesions(ct, lung, MODEL, tmp_path / "cold.nii.gz", _config(), 1)
    assert any("lesion worker not available" in m for m in caplog.messages)
    assert not worker.socket_path("slurm-another-job", MODEL, "cpu").exists()
    subprocess.run(["kill", str(pids.pop())], check=True)  # its owner is this test process
    assert _wait_gone(path)


def test_a_file_system_error_stays_an_oserror() -> None:
    """An OSError in the worker fails the job as one (serialct.scan_failure: not the scan's bad
    input), not as an InputError."""
    message = worker._failure(PermissionError(13, "Permission denied", "/data/ct.nii.gz"))
    job, served = socket.socketpair()
    with job, served:
        worker._send(served, message)
        with pytest.raises(PermissionError, match="/data/ct.nii.gz"):
            worker._ask(job, {})
