"""Convert a DICOM CT series to a NIfTI in HU (int16) with a JSON sidecar of QC findings.

Slices are sorted by position along the slice normal; the geometry (origin, direction, spacing)
is built from the headers, never from file names or InstanceNumber. Gantry-tilted series are
refused; uneven spacing or missing slices are resampled to a uniform step and flagged.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import SimpleITK as sitk
from pydicom.uid import UID

from serialct.constants import HU_MIN_STORED
from serialct.dicom import geometry
from serialct.dicom.headers import TRANSFER_SYNTAX, read_header, read_headers
from serialct.dicom.series import describe, iso_date, list_series, parse_numbers
from serialct.errors import InputError

logger = logging.getLogger("serialct")

HU_MAX_STORED: Final = int(np.iinfo(np.int16).max)
MIN_SLICES: Final = 3  # fewer slices still convert, with a warning
QC_OK: Final = "ok"
QC_WARN: Final = "warn"
QC_ERROR: Final = "error"
SAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]")
SERIES_TSV: Final = "series.tsv"
SERIES_TSV_COLUMNS: Final = (
    "patient_id",
    "scan_id",
    "study_date",
    "series_uid",
    "series_number",
    "series_description",
    "n_files",
    "path",
    "sidecar",
    "qc_status",
)


def _numbers(header: dict[str, str], tag: str, path: str) -> tuple[float, ...]:
    try:
        return parse_numbers(header[tag])
    except ValueError as exc:
        raise InputError(f"{path}: tag {tag} is not numeric: {header[tag]!r}") from exc


def _number(header: dict[str, str], tag: str, path: str, default: float) -> float:
    values = _numbers(header, tag, path)
    return values[0] if values else default


def _read_hu(files: list[str], headers: list[dict[str, str]]) -> tuple[np.ndarray, int]:
    """Pixels of the sorted files in HU (float32, z y x) and how many were padding."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.SetOutputPixelType(sitk.sitkFloat32)  # GDCM applies each file's rescale slope/intercept
    reader.SetSpacingWarningRelThreshold(math.inf)  # spacing is checked (and fixed) by geometry
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        syntax = headers[0][TRANSFER_SYNTAX] or "unknown"
        raise InputError(
            f"{files[0]}: cannot decode the pixel data of this series (transfer syntax {syntax}): "
            f"{str(exc).strip().splitlines()[-1]}"
        ) from exc
    hu = sitk.GetArrayFromImage(image)
    if hu.shape[0] != len(files):
        raise InputError(f"{files[0]}: read {hu.shape[0]} slices from {len(files)} files")
    n_padding = 0
    for i, (path, header) in enumerate(zip(files, headers, strict=True)):
        padding = _numbers(header, "PixelPaddingValue", path)
        if not padding:
            continue
        slope = _number(header, "RescaleSlope", path, 1.0)
        intercept = _number(header, "RescaleIntercept", path, 0.0)
        mask = np.abs(hu[i] - (padding[0] * slope + intercept)) < 0.5 * abs(slope)
        n_padding += int(mask.sum())
        hu[i][mask] = HU_MIN_STORED
    return hu, n_padding


def _clean_json(value: Any) -> Any:
    """NaN is no JSON: write it as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    return value


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_clean_json(data), indent=2) + "\n")
    os.replace(tmp, path)


def convert_series(files: list[Path], out_nifti: Path, out_json: Path) -> dict:
    """Write one series as NIfTI (HU, int16, padding clipped to HU_MIN_STORED) plus sidecar.

    Returns the sidecar dict; ``qc_status`` is "ok" or "warn: ..." (fewer than 3 slices,
    uneven spacing or missing slices, which are resampled to a uniform step). Raises InputError
    for gantry tilt, mixed orientations, repeated positions and undecodable pixel data.
    """
    paths = [str(f) for f in files]
    if not paths:
        raise InputError(f"{out_nifti}: no DICOM files given for this series")
    headers = []
    for path in paths:
        header = read_header(path)
        if header is None:
            raise InputError(f"{path}: not a readable DICOM file")
        headers.append(header)
    positions = [
        _numbers(h, "ImagePositionPatient", p) for h, p in zip(headers, paths, strict=True)
    ]
    stack = geometry.stack_slices(
        paths,
        positions,
        [_numbers(h, "ImageOrientationPatient", p) for h, p in zip(headers, paths, strict=True)],
        [_numbers(h, "PixelSpacing", p) for h, p in zip(headers, paths, strict=True)],
    )
    ordered = [paths[i] for i in stack.order]
    first = headers[stack.order[0]]
    tag_tilt = _number(first, "GantryDetectorTilt", ordered[0], 0.0)
    tilt = geometry.tilt_angle_deg(stack, positions)
    geometry.check_tilt(ordered[0], tag_tilt, tilt)

    hu, n_padding = _read_hu(ordered, [headers[i] for i in stack.order])
    messages: list[str] = []
    n = len(paths)
    stats = geometry.spacing_stats(stack.steps)
    if n < MIN_SLICES:
        messages.append(f"only {n} slice(s), fewer than {MIN_SLICES}")
    resampled = n >= 2 and not geometry.is_uniform(stack.steps)
    if resampled:
        if stats["gaps"]:
            messages.append(
                f"missing slices: {stats['gaps']} gap(s) above {geometry.GAP_FACTOR}x the median "
                f"step {stats['median']:.4g} mm (largest {stats['max']:.4g} mm)"
            )
        else:
            messages.append(f"uneven slice spacing: steps {stats['min']:.4g}-{stats['max']:.4g} mm")
        new_offsets = geometry.uniform_offsets(stack.offsets)
        hu = geometry.resample_along_normal(hu, stack.offsets, new_offsets)
        z_spacing = float(new_offsets[1] - new_offsets[0])
        messages.append(f"resampled {n} slices to {len(new_offsets)} at {z_spacing:.4g} mm")
    elif n >= 2:
        z_spacing = float(stack.offsets[-1] - stack.offsets[0]) / (n - 1)
    else:
        z_spacing = _number(first, "SliceThickness", ordered[0], 1.0)
    n_clipped = int(np.sum(hu < HU_MIN_STORED) + np.sum(hu > HU_MAX_STORED))
    voxels = np.clip(np.rint(hu), HU_MIN_STORED, HU_MAX_STORED).astype(np.int16)

    image = sitk.GetImageFromArray(voxels)
    dy, dx = stack.pixel_spacing
    image.SetSpacing((dx, dy, z_spacing))
    image.SetOrigin(tuple(float(v) for v in stack.origin))
    image.SetDirection(tuple(float(v) for v in stack.direction.flatten()))
    out_nifti = Path(out_nifti)
    out_nifti.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_nifti.with_name(f".tmp-{out_nifti.name}")
    sitk.WriteImage(image, str(tmp), useCompression=True)
    os.replace(tmp, out_nifti)

    try:
        study_date = iso_date(first["StudyDate"])
    except ValueError:
        study_date = ""
    syntax = first[TRANSFER_SYNTAX]
    status = QC_OK if not messages else f"{QC_WARN}: " + "; ".join(messages)
    sidecar = {
        "patient_id": first["PatientID"],
        "study_date": study_date,
        "series_uid": first["SeriesInstanceUID"],
        "series_number": first["SeriesNumber"],
        "series_description": first["SeriesDescription"],
        "manufacturer": first["Manufacturer"],
        "kernel": first["ConvolutionKernel"],
        "n_slices": n,
        "axis_order": "zyx",
        "size": list(voxels.shape),
        "spacing": [z_spacing, dy, dx],
        "origin_lps": [float(v) for v in stack.origin],
        "direction": [float(v) for v in stack.direction.flatten()],
        "slice_spacing": stats,
        "gantry_tilt_deg": tag_tilt,
        "transfer_syntax": syntax,
        "transfer_syntax_name": UID(syntax).name if syntax else "",
        "resampled": resampled,
        "padding_voxels": n_padding,
        "clipped_voxels": n_clipped,
        "hu_min_stored": HU_MIN_STORED,
        "qc_status": status,
        "qc_messages": messages,
    }
    _write_json(Path(out_json), sidecar)
    log = logger.warning if messages else logger.info
    log("%s: %d slices -> %s (%s)", ordered[0], n, out_nifti, status)
    return sidecar


def _output_stem(row: pd.Series, taken: set[str]) -> tuple[str, str, str]:
    """File stem ``<patient>_<YYYYMMDD>_<series>`` (unique), the scan id and the ISO date."""
    patient = SAFE_NAME.sub("_", row["patient_id"]) or "unknown"
    try:
        date = iso_date(row["study_date"])
        scan = row["study_date"].strip()
    except ValueError:
        date, scan = "", "nodate"
    series = SAFE_NAME.sub("_", row["series_number"]) or row["series_key"]
    stem, k = f"{patient}_{scan}_{series}", 1
    while stem in taken:
        k += 1
        stem = f"{patient}_{scan}_{series}-{k}"
    taken.add(stem)
    return stem, scan, date


def convert_dicom_dir(dicom_dir: Path, out_dir: Path) -> pd.DataFrame:
    """Convert every CT series under ``dicom_dir`` (localizers etc. skipped) into ``out_dir``.

    Writes ``<patient>_<YYYYMMDD>_<series number>.nii.gz`` + ``.json`` per series and
    ``series.tsv`` (one row per series; a series that cannot be converted gets an empty path
    and ``qc_status`` "error: ..."). Raises InputError when no CT series is found.
    """
    dicom_dir, out_dir = Path(dicom_dir), Path(out_dir)
    series = list_series(read_headers(dicom_dir))
    for _, row in series[series["skip_reason"] != ""].iterrows():
        logger.info("%s skipped: %s", describe(row), row["skip_reason"])
    series = series[series["skip_reason"] == ""]
    if series.empty:
        raise InputError(f"{dicom_dir}: no CT series found (searched recursively for DICOM files)")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, taken = [], set()
    for _, row in series.iterrows():
        stem, scan, date = _output_stem(row, taken)
        nifti, sidecar = out_dir / f"{stem}.nii.gz", out_dir / f"{stem}.json"
        try:
            status = convert_series(row["files"], nifti, sidecar)["qc_status"]
            path, side = nifti.name, sidecar.name
        except InputError as exc:
            logger.error("%s not converted: %s", describe(row), exc)
            status, path, side = f"{QC_ERROR}: {exc}", "", ""
        rows.append(
            {
                "patient_id": row["patient_id"],
                "scan_id": stem.split("_")[-2],
                "study_date": iso_date(row["study_date"])
                if stem.split("_")[-2] != "nodate"
                else "",
                "series_uid": row["series_uid"],
                "series_number": row["series_number"],
                "series_description": row["series_description"],
                "n_files": row["n_files"],
                "path": path,
                "sidecar": side,
                "qc_status": status,
            }
        )
    table = pd.DataFrame(rows, columns=list(SERIES_TSV_COLUMNS))
    table.to_csv(out_dir / SERIES_TSV, sep="\t", index=False)
    return table
