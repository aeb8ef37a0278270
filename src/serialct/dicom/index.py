"""The scan index of one centre: one CT series per scan, and one manifest per scan.

A scan is one CT study of a patient, identified by PatientID and StudyDate (``scan_id`` is the
date as YYYYMMDD, with ``-2``, ``-3`` for further studies on the same day). Manifests are
written only when their content changed, so Snakemake reruns only new or changed scans.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Final

import pandas as pd

from serialct.dicom.headers import read_headers
from serialct.dicom.series import describe, iso_date, list_series
from serialct.dicom.tree import tree_fingerprint
from serialct.errors import InputError

__all__ = ["read_headers", "select_scans", "tree_fingerprint", "write_index", "write_if_changed"]

logger = logging.getLogger("serialct")

PATIENT_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]+")
SCAN_COLUMNS: Final = (
    "center",
    "patient_id",
    "scan_id",
    "study_date",
    "study_uid",
    "series_uid",
    "series_key",
    "series_number",
    "series_description",
    "manufacturer",
    "kernel",
    "n_files",
    "slice_thickness",
    "files",
)
MANIFEST_SUFFIX: Final = ".json"


def _rank_key(row: pd.Series) -> tuple:
    """Sort key, best series first: original images, most slices, thinnest, lowest number."""
    try:
        number = float(row["series_number"])
    except ValueError:
        number = math.inf
    thickness = row["slice_thickness"]
    return (
        not row["is_original"],
        -row["n_files"],
        math.inf if math.isnan(thickness) else thickness,
        number,
        row["series_key"],
    )


def _validate(row: pd.Series) -> str:
    """Check PatientID and StudyDate of a kept series; return the ISO study date."""
    path = row["files"][0]
    if not PATIENT_ID_PATTERN.fullmatch(row["patient_id"]):
        raise InputError(
            f"{path}: tag PatientID {row['patient_id']!r} is not a usable patient id (expected "
            "letters, digits, '.', '_' or '-' only, not blank); pseudonymise PatientID to match "
            "the clinical sheet's patient_id"
        )
    try:
        return iso_date(row["study_date"])
    except ValueError:
        raise InputError(
            f"{path}: tag StudyDate {row['study_date']!r} is not a date YYYYMMDD; "
            "every scan is identified by patient and study date"
        ) from None


def select_scans(headers: pd.DataFrame, center: str) -> pd.DataFrame:
    """One row per scan (patient, study): the best CT series for lung quantification.

    Non-CT, localizers, secondary captures and non-axial series are dropped and logged; of
    several CT series in one study the first by ``_rank`` is kept and the others are logged.
    Columns ``SCAN_COLUMNS``; ``files`` is the sorted list of paths.
    """
    series = list_series(headers)
    for _, row in series[series["skip_reason"] != ""].iterrows():
        logger.info("%s: %s skipped: %s", center, describe(row), row["skip_reason"])
    series = series[series["skip_reason"] == ""]
    for _, row in series[~series["is_axial"].astype(bool)].iterrows():
        logger.info(
            "%s: %s skipped: not axial (orientation %s)", center, describe(row), row["orientation"]
        )
    series = series[series["is_axial"].astype(bool)].copy()
    if series.empty:
        logger.warning("%s: no CT scan found", center)
        return pd.DataFrame(columns=list(SCAN_COLUMNS))
    series["iso_date"] = [_validate(row) for _, row in series.iterrows()]
    study = series["study_uid"].where(
        series["study_uid"] != "", "date:" + series["study_date"] + "|" + series["study_time"]
    )
    studies: dict[tuple[str, str], list[pd.Series]] = {}
    for (_, row), key in zip(series.iterrows(), study, strict=True):
        studies.setdefault((row["patient_id"], key), []).append(row)
    chosen = []
    for members in studies.values():
        best, *others = sorted(members, key=_rank_key)
        for other in others:
            logger.info(
                "%s: patient %s %s: %s skipped, %s chosen (more/thinner original slices)",
                center,
                best["patient_id"],
                best["study_date"],
                describe(other),
                describe(best),
            )
        chosen.append(best)
    scans = pd.DataFrame(chosen)
    scans = scans.sort_values(["patient_id", "study_date", "study_time", "study_uid"])
    rank = scans.groupby(["patient_id", "study_date"]).cumcount() + 1
    scans["scan_id"] = scans["study_date"] + rank.map(lambda r: "" if r == 1 else f"-{r}")
    scans["study_date"] = scans["iso_date"]
    scans["center"] = center
    return scans[list(SCAN_COLUMNS)].reset_index(drop=True)


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` unless the file already holds it (its mtime is kept); True if written."""
    path = Path(path)
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def _files_sha1(files: list[str], stats: dict[str, tuple[int, int]]) -> str:
    digest = hashlib.sha1()
    for path in files:
        size, mtime = stats[path]
        digest.update(f"{path}\t{size}\t{mtime}\n".encode())
    return digest.hexdigest()


def manifest_path(manifest_dir: Path, patient_id: str, scan_id: str) -> Path:
    """Where the manifest of one scan lives: ``manifest_dir/<patient>/<scan>.json``."""
    return Path(manifest_dir) / patient_id / f"{scan_id}{MANIFEST_SUFFIX}"


def write_index(
    dicom_root: Path, center: str, out_tsv: Path, manifest_dir: Path, cache: Path | None = None
) -> pd.DataFrame:
    """Index a centre: ``out_tsv`` (one row per scan, no file list) and one manifest per scan.

    A manifest holds the scan's ids, its sorted file list and the SHA-1 of (path, size, mtime)
    of those files; it is rewritten only when that content changed. Manifests of scans that no
    longer exist are removed. Returns the scan table (with ``files``).
    """
    headers = read_headers(Path(dicom_root), cache)
    scans = select_scans(headers, center)
    stats = {
        p: (int(s), int(m))
        for p, s, m in zip(headers["path"], headers["size"], headers["mtime_ns"], strict=True)
    }
    out_tsv = Path(out_tsv)
    out_tsv.parent.mkdir(parents=True, exist_ok=True)
    scans.drop(columns="files").to_csv(out_tsv, sep="\t", index=False)

    manifest_dir = Path(manifest_dir)
    current, n_written = set(), 0
    for _, scan in scans.iterrows():
        manifest = {
            "center": center,
            "patient_id": scan["patient_id"],
            "scan_id": scan["scan_id"],
            "study_date": scan["study_date"],
            "series_uid": scan["series_uid"],
            "series_key": scan["series_key"],
            "series_number": scan["series_number"],
            "n_files": int(scan["n_files"]),
            "files": list(scan["files"]),
            "sha1": _files_sha1(scan["files"], stats),
        }
        path = manifest_path(manifest_dir, scan["patient_id"], scan["scan_id"])
        current.add(path)
        n_written += write_if_changed(path, json.dumps(manifest, indent=2) + "\n")
    n_removed = 0
    for path in sorted(manifest_dir.glob(f"*/*{MANIFEST_SUFFIX}")):
        if path not in current:
            path.unlink()
            n_removed += 1
            logger.info(
                "%s: scan %s/%s vanished, manifest removed", center, path.parent.name, path.stem
            )
            if not any(path.parent.iterdir()):
                path.parent.rmdir()
    logger.info(
        "%s: %d scans indexed, %d manifests written, %d unchanged, %d removed",
        center,
        len(scans),
        n_written,
        len(scans) - n_written,
        n_removed,
    )
    return scans
