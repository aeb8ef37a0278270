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
from typing import Any, Final

import pandas as pd

from serialct.dicom.geometry import TILT_TOLERANCE_DEG
from serialct.dicom.header_cache import journal_path
from serialct.dicom.headers import read_headers
from serialct.dicom.patient_map import apply_patient_map, read_patient_map
from serialct.dicom.pseudonym import Pseudonymiser
from serialct.dicom.series import describe, iso_date, list_series
from serialct.dicom.tree import tree_fingerprint

__all__ = [
    "rank_series",
    "read_headers",
    "select_scans",
    "tree_fingerprint",
    "write_index",
    "write_if_changed",
]

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


SERIES_TABLE_SUFFIX: Final = ".series.tsv"
SERIES_TABLE_COLUMNS: Final = (
    "center",
    "patient_id",
    "study_date",
    "study_uid",
    "series_uid",
    "series_key",
    "series_number",
    "acquisition",
    "series_description",
    "modality",
    "image_type",
    "kernel",
    "n_files",
    "slice_thickness",
    "coverage_mm",
    "gantry_tilt_deg",
    "chosen",
    "scan_id",
    "reason",
)
RANK_CRITERIA: Final = (
    "ORIGINAL before DERIVED",
    "kernel preference",
    "larger coverage",
    "thinner slices",
    "more slices",
    "lower series number",
    "earlier acquisition",
)


def _series_cfg(series_cfg: dict[str, Any] | None) -> dict[str, Any]:
    if series_cfg is None:
        from serialct.config import defaults

        return defaults()["series"]
    return series_cfg


def _kernel_rank(kernel: str, preference: list[str]) -> int:
    for i, part in enumerate(preference):
        if part.strip() and part.strip().upper() in kernel.upper():
            return i
    return len(preference)


def _rank_key(row: pd.Series, cfg: dict[str, Any], max_coverage: float) -> tuple:
    """Sort key, best series first, one entry per ``RANK_CRITERIA``."""
    try:
        number = float(row["series_number"])
    except ValueError:
        number = math.inf
    thickness = row["slice_thickness"]
    deficit = max_coverage - row["coverage_mm"]
    return (
        bool(cfg["prefer_original"]) and not row["is_original"],
        _kernel_rank(row["kernel"], list(cfg["kernel_preference"])),
        0.0 if deficit <= cfg["coverage_tolerance_mm"] else deficit,
        math.inf if math.isnan(thickness) else thickness,
        -row["n_files"],
        number,
        (row["acquisition"], row["series_key"]),
    )


def _check(row: pd.Series, cfg: dict[str, Any]) -> str:
    """Why a listed CT series cannot be a scan (checked from headers alone); empty if it can."""
    if row["skip_reason"]:
        return row["skip_reason"]
    if not row["is_axial"]:
        return f"not axial (orientation {row['orientation']})"
    if row["gantry_tilt_deg"] > TILT_TOLERANCE_DEG:
        return f"gantry tilt {row['gantry_tilt_deg']:.1f} deg: not supported"
    if not PATIENT_ID_PATTERN.fullmatch(row["patient_id"]):
        return (
            "tag PatientID is blank or not a usable patient id (value withheld; expected "
            "letters, digits, '.', '_' or '-'); name the study in the centre's patients sheet "
            "(config centers.NAME.patients) or pseudonymise PatientID to match the clinical sheet"
        )
    try:
        iso_date(row["study_date"])
    except ValueError:
        return (
            f"tag StudyDate {row['study_date']!r} is not a date YYYYMMDD; give the study a "
            "study_date in the centre's patients sheet (config centers.NAME.patients)"
        )
    thickness = row["slice_thickness"]
    low, high = cfg["min_slice_thickness_mm"], cfg["max_slice_thickness_mm"]
    if not math.isnan(thickness) and not low <= thickness <= high:
        return f"slice thickness {thickness:g} mm outside [{low:g}, {high:g}] mm (config series)"
    return ""


def _summary(row: pd.Series) -> str:
    kind = "ORIGINAL" if row["is_original"] else "DERIVED"
    kernel = f", kernel {row['kernel']}" if row["kernel"] else ""
    return (
        f"{kind}{kernel}, coverage {row['coverage_mm']:.0f} mm, thickness "
        f"{row['slice_thickness']:g} mm, {row['n_files']} slices"
    )


def _label(row: pd.Series) -> str:
    number = row["series_number"] or row["series_key"]
    return f"series {number}" + (f" [{row['acquisition']}]" if row["acquisition"] else "")


def rank_series(
    headers: pd.DataFrame, center: str, series_cfg: dict[str, Any] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scans (as ``select_scans``) and the series table: every series with chosen + reason.

    Rule (config ``series``): non-CT, localizers, secondary captures, repeated positions no
    acquisition tag separates, non-axial, gantry-tilted, unusable PatientID or StudyDate and
    slice thickness outside [min, max] are skipped; of the rest, per study, the first by
    ``RANK_CRITERIA`` is chosen. Nothing raises: every skipped series has its reason.
    """
    cfg = _series_cfg(series_cfg)
    series = list_series(headers)
    series["reason"] = [_check(row, cfg) for _, row in series.iterrows()]
    series["chosen"] = False
    series["scan_id"] = ""
    for _, row in series[series["reason"] != ""].iterrows():
        logger.info("%s: %s skipped: %s", center, describe(row), row["reason"])
    usable = series[series["reason"] == ""]
    study = usable["study_uid"].where(
        usable["study_uid"] != "", "date:" + usable["study_date"] + "|" + usable["study_time"]
    )
    studies: dict[tuple[str, str], list[int]] = {}
    for i, key in zip(usable.index, study, strict=True):
        studies.setdefault((usable.at[i, "patient_id"], key), []).append(i)
    chosen = []
    for members in studies.values():
        max_coverage = max(series.at[i, "coverage_mm"] for i in members)
        keys = {i: _rank_key(series.loc[i], cfg, max_coverage) for i in members}
        best, *others = sorted(members, key=keys.__getitem__)
        best_row = series.loc[best]
        series.at[best, "chosen"] = True
        series.at[best, "reason"] = f"chosen of {len(members)} candidate(s): {_summary(best_row)}"
        for other in others:
            criterion = next(
                name
                for name, a, b in zip(RANK_CRITERIA, keys[best], keys[other], strict=True)
                if a != b
            )
            series.at[other, "reason"] = (
                f"not chosen: {_label(best_row)} preferred ({criterion}; "
                f"{_summary(series.loc[other])})"
            )
            logger.info(
                "%s: patient %s %s: %s skipped, %s chosen (%s)",
                center,
                best_row["patient_id"],
                best_row["study_date"],
                describe(series.loc[other]),
                describe(best_row),
                criterion,
            )
        chosen.append(best)
    if not chosen:
        logger.warning("%s: no CT scan found", center)
        scans = pd.DataFrame(columns=list(SCAN_COLUMNS))
    else:
        scans = series.loc[chosen].copy()
        scans = scans.sort_values(["patient_id", "study_date", "study_time", "study_uid"])
        rank = scans.groupby(["patient_id", "study_date"]).cumcount() + 1
        scans["scan_id"] = scans["study_date"] + rank.map(lambda r: "" if r == 1 else f"-{r}")
        series.loc[scans.index, "scan_id"] = scans["scan_id"]
        scans["study_date"] = [iso_date(d) for d in scans["study_date"]]
        scans["center"] = center
        scans = scans[list(SCAN_COLUMNS)].reset_index(drop=True)
    for patient, group in series.groupby("patient_id"):
        if not group["chosen"].any():
            logger.warning(
                "%s: patient %s has no usable CT series (%d series skipped; see the series table)",
                center,
                patient if PATIENT_ID_PATTERN.fullmatch(str(patient)) else "(unusable id)",
                len(group),
            )
    table = series.copy()
    table["center"] = center
    bad_id = ~table["patient_id"].map(lambda v: bool(PATIENT_ID_PATTERN.fullmatch(v)))
    table.loc[bad_id, "patient_id"] = ""  # an unusable PatientID may be a name: never written
    return scans, table[list(SERIES_TABLE_COLUMNS)].reset_index(drop=True)


def select_scans(
    headers: pd.DataFrame, center: str, series_cfg: dict[str, Any] | None = None
) -> pd.DataFrame:
    """One row per scan (patient, study): the best CT series for lung quantification.

    Columns ``SCAN_COLUMNS``; ``files`` is the sorted list of paths. See ``rank_series`` for
    the rule; ``series_cfg`` is config ``series`` (default: the schema's defaults).
    """
    return rank_series(headers, center, series_cfg)[0]


def series_table_path(out_tsv: Path) -> Path:
    """``index/C1.tsv`` -> ``index/C1.series.tsv``."""
    out_tsv = Path(out_tsv)
    return out_tsv.with_name(out_tsv.name.removesuffix(".tsv") + SERIES_TABLE_SUFFIX)


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
    dicom_root: Path,
    center: str,
    out_tsv: Path,
    manifest_dir: Path,
    cache: Path | None = None,
    series_cfg: dict[str, Any] | None = None,
    pseudonymise: dict[str, Any] | None = None,
    patients: Path | None = None,
    workers: int = 1,
) -> pd.DataFrame:
    """Index a centre: ``out_tsv`` (one row per scan, no file list), one manifest per scan, and
    ``<out_tsv stem>.series.tsv`` (every series found: chosen true/false and the reason).

    A manifest holds the scan's ids, its sorted file list and the SHA-1 of (path, size, mtime)
    of those files; it is rewritten only when that content changed. Manifests of scans that no
    longer exist are removed. ``series_cfg`` is config ``series``; ``pseudonymise`` is config
    ``pseudonymise`` (PatientIDs replaced before anything is written, the cache included, and
    the mapping merged into its file); ``patients`` is the centre's patients sheet
    (:mod:`serialct.dicom.patient_map`: whose each study is, for anonymised exports);
    ``workers`` processes read the headers. Returns the scan table (with ``files``).
    """
    patient_map = read_patient_map(patients) if patients else None
    map_id = Pseudonymiser(pseudonymise) if pseudonymise else None
    if map_id is not None and cache is not None:
        plain = Path(cache)
        for stale in (plain, journal_path(plain)):
            if stale.is_file():
                stale.unlink()  # an un-pseudonymised cache would keep real PatientIDs
                logger.info("%s: header cache without pseudonyms removed", stale)
        tag = map_id("key-fingerprint").removeprefix(map_id.prefix)[:8]
        map_id.pairs.clear()
        cache = plain.with_name(f"{plain.stem}.{tag}{plain.suffix}")
    headers = read_headers(Path(dicom_root), cache, map_id, workers)
    if patient_map is not None:
        headers = apply_patient_map(headers, Path(dicom_root), patient_map, map_id)
    if map_id is not None:
        map_id.write_mapping()
    scans, table = rank_series(headers, center, series_cfg)
    if table.empty:
        reason = f"no DICOM image series found under {dicom_root}"
        logger.warning("%s: %s", center, reason)
        table = pd.DataFrame(
            [{c: "" for c in SERIES_TABLE_COLUMNS} | {"center": center, "chosen": False,
                                                     "reason": reason}]
        )  # fmt: skip
    stats = {
        p: (int(s), int(m))
        for p, s, m in zip(headers["path"], headers["size"], headers["mtime_ns"], strict=True)
    }
    out_tsv = Path(out_tsv)
    out_tsv.parent.mkdir(parents=True, exist_ok=True)
    scans.drop(columns="files").to_csv(out_tsv, sep="\t", index=False)
    table.to_csv(series_table_path(out_tsv), sep="\t", index=False)

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
