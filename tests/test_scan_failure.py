"""serialct.scan_failure: a per-scan step that fails on its own input records one line, writes
placeholders and lets the cohort go on; a failure of anything else (a shared input, a missing
file, the machine, the program) still fails the job."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from serialct.errors import InputError
from serialct.scan_failure import (
    FAILED_NAME,
    dicom_folders,
    failed_line,
    run_scan_step,
    write_not_measured,
)


def _outputs(scan: Path) -> list[Path]:
    return [scan / "lung.nii.gz", scan / "lung_qc.json", scan / "qc.png"]


def _raise(exc: BaseException):  # type: ignore[no-untyped-def]
    def work() -> None:
        raise exc

    return work


def _bad(scan: Path, name: str = "ct.nii.gz") -> InputError:
    return InputError(f"{scan / name}: unreadable image")


def test_an_input_failure_is_one_line_with_placeholders(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    outputs = _outputs(tmp_path)
    with caplog.at_level(logging.ERROR, logger="serialct"):
        ran = run_scan_step("lung", tmp_path, outputs, _raise(_bad(tmp_path)))
    line = f"lung: {tmp_path / 'ct.nii.gz'}: unreadable image"
    assert ran is False
    assert failed_line(tmp_path) == line
    assert [r.getMessage() for r in caplog.records] == [line]
    assert outputs[0].read_bytes() == b""
    assert json.loads(outputs[1].read_text()) == {"failed": line}
    assert Image.open(outputs[2]).size[0] > 0  # a real picture that says why


def test_convert_owns_its_dicom_folders(tmp_path: Path) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"files": ["/arch/p1/s2/1.dcm", "/arch/p1/s2/2.dcm"]}))
    own = dicom_folders(manifest)
    assert own == [Path("/arch/p1/s2")]
    scan = tmp_path / "scan"
    bad = InputError("/arch/p1/s2/1.dcm: the pixel data of no file of this series is readable")
    assert not run_scan_step("convert", scan, [scan / "ct.nii.gz"], _raise(bad), own=own)
    called = []
    assert not run_scan_step("lung", scan, _outputs(scan), lambda: called.append(1))
    assert called == [] and (scan / "lung.nii.gz").exists()  # later steps only placeholders
    assert failed_line(scan).startswith("convert: /arch/p1/s2/1.dcm")  # type: ignore[union-attr]


def test_a_step_that_runs_again_clears_its_own_failure(tmp_path: Path) -> None:
    run_scan_step("lesion", tmp_path, [tmp_path / "lesion.nii.gz"], _raise(_bad(tmp_path)))
    # an earlier step (its inputs changed) runs again and clears the lesion step's marker
    assert run_scan_step("lung", tmp_path, _outputs(tmp_path), lambda: None)
    assert not (tmp_path / FAILED_NAME).exists()
    # a marker of an earlier step is not the later step's to clear
    run_scan_step("convert", tmp_path, [tmp_path / "ct.nii.gz"], _raise(_bad(tmp_path)))
    assert not run_scan_step("quantify", tmp_path, [tmp_path / "metrics.json"], lambda: None)
    assert failed_line(tmp_path).startswith("convert: ")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "exc",
    [
        MemoryError(),
        OSError(28, "No space left on device", "/r/ct.nii.gz"),
        KeyError("x"),
        InputError("resources/models/net.pt: model weights not found"),  # shared, not the scan's
        FileNotFoundError(2, "No such file or directory", "SCAN/ct.nii.gz"),  # unmounted, moved
    ],
)
def test_other_failures_still_fail_the_job(tmp_path: Path, exc, caplog) -> None:  # type: ignore[no-untyped-def]
    if isinstance(exc, FileNotFoundError):
        exc.filename = str(tmp_path / "ct.nii.gz")
    with caplog.at_level(logging.ERROR, logger="serialct"), pytest.raises(type(exc)):
        run_scan_step("lung", tmp_path, _outputs(tmp_path), _raise(exc))
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()
    assert not (tmp_path / FAILED_NAME).exists() and not (tmp_path / "lung.nii.gz").exists()


def test_not_measured_metrics_carry_identity_and_reason(tmp_path: Path) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text(
        json.dumps({"center": "c", "patient_id": "P1", "scan_id": "S1", "study_date": "2020-01-02"})
    )
    write_not_measured(manifest, tmp_path / "metrics.json", tmp_path / "qc.png", "convert: bad")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == {
        "center": "c", "patient_id": "P1", "scan_id": "S1", "study_date": "2020-01-02",
        "qc_status": "error: convert: bad", "qc_messages": ["convert: bad"],
    }  # fmt: skip
