"""One line per failure: every command, given bad input, exits non-zero with one stderr line that
names the file and the problem, never a traceback (issue 19, point 1)."""

from __future__ import annotations

import errno
import gzip
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from serialct.cli import main
from serialct.failures import VERBOSE_HINT, describe

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
SHAPE = (6, 10, 12)  # z, y, x: tiny, every row fails before any real work
IS_ROOT = os.geteuid() == 0
CONFIG = "centers: {A: {dicom: dicom, clinical: clinical.tsv}}\n"
CLINICAL = (
    "patient_id\tseverity\tonset_date\tadmission_date\nP1\tmoderate\t2020-01-01\t2020-01-05\n"
)
SCANS = "center\tpatient_id\tscan_id\tstudy_date\nA\tP1\t20200105\t2020-01-05\n"


def _image(path: Path, shape: tuple[int, int, int] = SHAPE, value: int = -800) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.full(shape, value, np.int16))
    image.SetSpacing((0.8, 0.8, 2.0))
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def _scan_dir(tmp: Path, lesion_shape: tuple[int, int, int] = SHAPE) -> Path:
    scan = tmp / "scan"
    _image(scan / "ct.nii.gz")
    for name in ("lung", "lobes"):
        _image(scan / f"{name}.nii.gz", value=1)
    _image(scan / "lesion.nii.gz", shape=lesion_shape, value=0)
    (scan / "ct.json").write_text(json.dumps({"patient_id": "P1", "scan_id": "20200105"}))
    return scan


def _scan_without(tmp: Path, name: str) -> Path:
    scan = _scan_dir(tmp)
    (scan / name).unlink()
    return scan


def _scan_with(tmp: Path, name: str, content: str | bytes | None = None) -> Path:
    """A scan folder with ``name`` replaced by ``content`` (None: an empty folder)."""
    scan = _scan_dir(tmp)
    target = scan / name
    target.unlink(missing_ok=True)
    if content is None:
        target.mkdir()
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    return scan


def _full_scans(tmp: Path) -> Path:
    """A scans table with every required column (one scan of P1)."""
    from serialct.tables import SCAN_COLUMNS

    values = {"center": "A", "patient_id": "P1", "scan_id": "20200105", "severity": "moderate",
              "study_date": "2020-01-05", "timepoint": "", "involved_lobes": "0", "ct_score": "",
              "reader_involved_lobes": "", "qc_status": "ok"}  # fmt: skip
    row = [values.get(c, "0") for c in SCAN_COLUMNS]
    return _text(tmp / "scans.tsv", "\t".join(SCAN_COLUMNS) + "\n" + "\t".join(row) + "\n")


def _png(path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16), 80, np.uint8)).save(path)
    return path


def _truncated(path: Path) -> Path:
    _image(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _unreadable(path: Path, text: str) -> Path:
    """A file this user cannot read; as root (who reads anything), a path under a file."""
    if IS_ROOT:
        return _text(path.with_name("blocker"), text) / path.name
    _text(path, text)
    path.chmod(0)
    return path


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _cfg(tmp: Path, text: str) -> Path:
    return _text(tmp / "config.yaml", text)


@dataclass(frozen=True)
class Case:
    """One bad input: ``build`` writes it under a tmp folder and returns the command line."""

    name: str
    build: Callable[[Path], list[str]]
    names: str | None  # the file (or option) the line must name
    fragment: str  # and what it must say


def _ct_and_lung(tmp: Path, lung_shape: tuple[int, int, int]) -> list[str]:
    return [str(_image(tmp / "ct.nii.gz")), str(_image(tmp / "lung.nii.gz", lung_shape, 1))]


CASES = [
    # masks
    Case("masks-text-as-nifti", lambda t: ["masks", str(_text(t / "ct.nii.gz", "hello")),
         str(t / "l.nii.gz"), str(t / "o.nii.gz")], "ct.nii.gz", "unreadable image"),
    Case("masks-truncated-gzip", lambda t: ["masks", str(_truncated(t / "ct.nii.gz")),
         str(t / "l.nii.gz"), str(t / "o.nii.gz")], "ct.nii.gz", "truncated"),
    Case("masks-truncated-nii", lambda t: ["masks", str(_truncated(t / "ct.nii")),
         str(t / "l.nii.gz"), str(t / "o.nii.gz")], "ct.nii", "truncated NIfTI"),
    Case("masks-empty-file", lambda t: ["masks", str(_text(t / "ct.nii.gz", "")),
         str(t / "l.nii.gz"), str(t / "o.nii.gz")], "ct.nii.gz", "empty file"),
    Case("masks-folder-as-image", lambda t: ["masks", str(_folder(t / "ct.nii.gz")),
         str(t / "l.nii.gz"), str(t / "o.nii.gz")], "ct.nii.gz", "is a folder"),
    Case("masks-missing-ct", lambda t: ["masks", str(t / "nope.nii.gz"), str(t / "l.nii.gz"),
         str(t / "o.nii.gz")], "nope.nii.gz", "not found"),
    Case("masks-bad-config-value", lambda t: ["masks", str(_image(t / "ct.nii.gz")),
         str(t / "l.nii.gz"), str(t / "o.nii.gz"), "--config",
         str(_cfg(t, CONFIG + "device: tpu\n"))], "config.yaml", "device"),
    Case("masks-yaml-syntax", lambda t: ["masks", str(_image(t / "ct.nii.gz")),
         str(t / "l.nii.gz"), str(t / "o.nii.gz"), "--config",
         str(_cfg(t, CONFIG + "results: [unclosed\n"))], "config.yaml", "not valid YAML"),
    # segment
    Case("segment-lung-other-size", lambda t: ["segment", *_ct_and_lung(t, (6, 10, 10)),
         str(t / "lesion.nii.gz")], "lung.nii.gz", "differs from the CT"),
    Case("segment-missing-lung", lambda t: ["segment", str(_image(t / "ct.nii.gz")),
         str(t / "lung.nii.gz"), str(t / "lesion.nii.gz")], "lung.nii.gz", "not found"),
    Case("segment-model-not-a-checkpoint", lambda t: ["segment", *_ct_and_lung(t, SHAPE),
         str(t / "lesion.nii.gz"), "--device", "cpu", "--model",
         str(_text(t / "model.pt", "not torch"))], "model.pt", "not a serialct lesion checkpoint"),
    Case("segment-bad-device", lambda t: ["segment", "ct", "lung", "out", "--device", "tpu"],
         "--device", "invalid choice"),
    # quantify
    Case("quantify-missing-sidecar", lambda t: ["quantify", str(_scan_without(t, "ct.json"))],
         "ct.json", "not found"),
    Case("quantify-json-syntax", lambda t: ["quantify", str(_scan_with(t, "ct.json",
         '{"patient_id": "P1",}'))], "ct.json", "not valid JSON"),
    Case("quantify-lesion-other-size", lambda t: ["quantify", str(_scan_dir(t, (6, 10, 10)))],
         "lesion.nii.gz", "differs from the CT"),
    Case("quantify-empty-reference", lambda t: ["quantify", str(_scan_dir(t)), "--reference",
         str(_text(t / "ref.tsv", ""))], "ref.tsv", "not a readable TSV"),
    Case("quantify-lung-qc-folder", lambda t: ["quantify", str(_scan_with(t, "lung_qc.json"))],
         "lung_qc.json", "is a folder"),
    Case("quantify-reference-missing-column", lambda t: ["quantify", str(_scan_dir(t)),
         "--reference", str(_text(t / "ref.tsv", "bin_start_hu\tdensity\n-1000\t1\n"))],
         "ref.tsv", "missing column"),
    # stats
    Case("stats-empty-clinical", lambda t: ["stats", "--scans", str(_text(t / "scans.tsv",
         SCANS)), "--clinical", str(_text(t / "clinical.tsv", "")), str(t / "out")],
         "clinical.tsv", "empty file"),
    Case("stats-clinical-missing-column", lambda t: ["stats", "--scans", str(_text(
         t / "scans.tsv", SCANS)), "--clinical", str(_text(t / "clinical.tsv",
         "patient_id\tseverity\nP1\tsevere\n")), str(t / "out")], "clinical.tsv",
         "missing required column"),
    Case("stats-scans-is-folder", lambda t: ["stats", "--scans", str(_folder(t / "scans.tsv")),
         "--clinical", str(_text(t / "clinical.tsv", CLINICAL)), str(t / "out")], "scans.tsv",
         "is a folder"),
    Case("stats-score-out-of-range", lambda t: ["stats", "--scans", str(_full_scans(t)),
         "--clinical", str(_text(t / "clinical.tsv", CLINICAL)), "--readings",
         str(_text(t / "readings.tsv", "patient_id\tstudy_date\tct_score\nP1\t2020-01-05\t31\n")),
         str(t / "out")], "readings.tsv", "ct_score"),
    Case("stats-unreadable-clinical", lambda t: ["stats", "--scans", str(_text(t / "scans.tsv",
         SCANS)), "--clinical", str(_unreadable(t / "clinical.tsv", CLINICAL)),
         str(t / "out")], "clinical.tsv", "not found" if IS_ROOT else "permission denied"),
    # convert
    Case("convert-missing-folder", lambda t: ["convert", str(t / "nodicom"), str(t / "out")],
         "nodicom", "not"),
    Case("convert-no-dicom-files", lambda t: ["convert", str(_text(t / "d" / "a.dcm",
         "not dicom").parent), str(t / "out")], "d", "no CT series"),
    Case("convert-file-as-folder", lambda t: ["convert", str(_text(t / "d.txt", "x")),
         str(t / "out")], "d.txt", "not"),
    # segment-slices
    Case("slices-corrupt-png", lambda t: ["segment-slices", str(_text(t / "imgs" / "s1.png",
         "not a png").parent), str(t / "out"), "--device", "cpu"], "s1.png", "unreadable image"),
    Case("slices-missing-folder", lambda t: ["segment-slices", str(t / "noimgs"),
         str(t / "out")], "noimgs", "not a folder"),
    Case("slices-no-images", lambda t: ["segment-slices", str(_text(t / "imgs" / "a.txt",
         "x").parent), str(t / "out")], "imgs", "no slice images"),
    Case("slices-missing-model", lambda t: ["segment-slices",
         str(_png(t / "imgs" / "s.png").parent), str(t / "out"),
         "--model", str(t / "none.pt")], "none.pt", "not found"),
    Case("slices-window-half-given", lambda t: ["segment-slices", str(t), str(t / "out"),
         "--window-center", "-600"], "--window-width", "give both"),
    # reference
    Case("reference-lung-other-size", lambda t: ["reference", str(_scan_with(t, "lung.nii.gz",
         _image(t / "small.nii.gz", (5, 10, 12), 1).read_bytes())), "--out", str(t / "ref.tsv")],
         "lung.nii.gz", "differs from the CT"),
    Case("reference-missing-ct", lambda t: ["reference", str(t), "--out", str(t / "ref.tsv")],
         "ct.nii.gz", "not found"),
    Case("reference-missing-dicom", lambda t: ["reference", "--dicom", str(t / "nodicom"),
         "--out", str(t / "ref.tsv")], "nodicom", "not"),
    # synth
    Case("synth-out-is-a-file", lambda t: ["synth", str(_text(t / "taken", "x") / "cohort"),
         "--patients", "1", "--shape", "16,32,32"], "taken", "not a folder"),
    Case("synth-bad-shape", lambda t: ["synth", str(t), "--patients", "1", "--shape", "4,x"],
         "--shape", "Z,Y,X"),
    Case("synth-no-patients", lambda t: ["synth", str(t)], "--patients", "at least 1"),
    # pseudonymise-sheet
    Case("pseudonymise-missing-key", lambda t: ["pseudonymise-sheet", str(_text(t / "c.tsv",
         CLINICAL)), str(t / "o.tsv"), "--key", str(t / "key")], "key", "not found"),
    Case("pseudonymise-empty-sheet", lambda t: ["pseudonymise-sheet", str(_text(t / "c.tsv",
         "")), str(t / "o.tsv"), "--key", str(_text(t / "key", "secret"))], "c.tsv",
         "cannot read"),
    # train, train-real
    Case("train-volume-not-an-image", lambda t: ["train", "--out", str(t / "m.pt"),
         "--volume", str(_text(t / "v.nii.gz", "x")), str(_text(t / "lab.nii.gz", "x")),
         "--epochs", "1", "--steps-per-epoch", "1", "--pool-volumes", "1"], "v.nii.gz",
         "cannot read"),
    Case("train-missing-slices", lambda t: ["train", "--out", str(t / "m.pt"), "--real-slices",
         str(t / "noslices")], "noslices", "not"),
    Case("train-real-missing-sets", lambda t: ["train-real", "--out", str(t / "m.pt"),
         "--external-out", str(t / "e.pt"), "--pseudo", str(t / "nopseudo"), "--expert",
         str(t / "noexpert")], "nopseudo", "not"),
]  # fmt: skip


def _error_line(err: str) -> str:
    """The one line that is not a log line; fails if there are more or none."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and not LOG_LINE.match(line)]
    assert len(lines) == 1, err
    assert err.rstrip().splitlines()[-1] == lines[0], err
    return lines[0]


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse usage errors
        return int(stop.code or 0)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_one_line_per_failure(case: Case, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    argv = case.build(tmp_path)
    capfd.readouterr()
    code = _run(argv)
    line = _error_line(capfd.readouterr().err)
    assert code != 0
    assert line.startswith(f"serialct {argv[0]}"), line
    if case.names:
        assert case.names in line, line
    assert case.fragment in line, line


def test_unexpected_error_names_its_type_and_hints_at_verbose(monkeypatch, capfd) -> None:
    def boom(args: object) -> None:
        raise ValueError("no such scan\nsecond line")

    monkeypatch.setattr("serialct.cli.cmd_convert", boom)
    assert _run(["convert", "a", "b"]) == 1
    line = _error_line(capfd.readouterr().err)
    assert line == f"serialct convert: ValueError: no such scan {VERBOSE_HINT}"
    assert _run(["--verbose", "convert", "a", "b"]) == 1
    err = capfd.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("serialct convert:")


@pytest.mark.parametrize(
    ("exc", "expected", "code"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/out/ct.nii.gz"),
         "/out/ct.nii.gz: disk full (no space left on device)", 1),
        (PermissionError(errno.EACCES, "Permission denied", "/in/ct.nii.gz"),
         "/in/ct.nii.gz: permission denied", 2),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/in/ct.json"),
         "/in/ct.json: is a folder, expected a file", 2),
        (RuntimeError('Exception thrown in SimpleITK ImageFileReader_Execute: x.cxx:99:\n'
                      'sitk::ERROR: Unable to determine ImageIO reader for "/in/ct.nii.gz"'),
         "/in/ct.nii.gz: unreadable image", 2),
        (RuntimeError('Exception thrown in SimpleITK ImageFileWriter_Execute: x.cxx:9:\n'
                      'sitk::ERROR: Could not write "/out/.tmp-0123456789ab-lung.nii.gz"'),
         "/out/lung.nii.gz: cannot write the image", 1),
        (MemoryError(), "out of memory", 1),
        (gzip.BadGzipFile("Not a gzipped file (b'he')"), "truncated or corrupt gzip data", 2),
        (EOFError("Compressed file ended before the end-of-stream marker was reached"),
         "truncated or corrupt gzip data", 2),
        (json.JSONDecodeError("Expecting value", "{,}", 1), "not valid JSON (line 1", 2),
    ],
)  # fmt: skip
def test_describe(exc: BaseException, expected: str, code: int) -> None:
    failure = describe(exc)
    assert failure.message.startswith(expected)
    assert "\n" not in failure.message
    assert failure.exit_code == code


def test_describe_pandas_and_pydicom_by_name() -> None:
    import pandas as pd
    from pydicom.errors import InvalidDicomError

    assert describe(pd.errors.EmptyDataError("No columns")).message.startswith("empty table")
    assert describe(pd.errors.ParserError("bad\nrow")).message.startswith("malformed table")
    assert describe(InvalidDicomError("no preamble")).message.startswith("not a DICOM file")
