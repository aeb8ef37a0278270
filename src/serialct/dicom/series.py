"""Group the header table into image series by DICOM tags (never by folder or file names).

A series is keyed by SeriesInstanceUID plus its image geometry (orientation, matrix, pixel
spacing). When SeriesInstanceUID is blank, the key falls back to StudyInstanceUID, SeriesNumber,
description, kernel, thickness and the same geometry. Each series gets a ``skip_reason`` when it
is no CT volume (other modality, secondary capture, localizer/scout, projection, ...).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
from typing import Final

import numpy as np
import pandas as pd

logger = logging.getLogger("serialct")

CT_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.2.1"
SECONDARY_CAPTURE_PREFIX: Final = "1.2.840.10008.5.1.4.1.1.7"
CT_MODALITY: Final = "CT"
# ImageType values of images that are no reconstructed volume
NON_VOLUME_IMAGE_TYPES: Final = frozenset(
    {
        "LOCALIZER",
        "SCOUT",
        "SCREEN SAVE",
        "PROJECTION IMAGE",
        "MIP",
        "MINIP",
        "MIN IP",
        "VRT",
        "VOLUME RENDERING",
        "DOSE_INFO",
        "DOSE INFO",
        "DOSE REPORT",
        "REFORMATTED CURVED",
    }
)
LOCALIZER_MAX_SLICES: Final = 2  # 1-2 slices of another orientation than the study's main series
GEOMETRY_DECIMALS: Final = 4  # orientation and pixel spacing are compared after this rounding
AXIAL_MIN_ABS_COS: Final = math.cos(math.radians(45.0))  # slice normal within 45 deg of z

SERIES_COLUMNS: Final = (
    "series_key",
    "patient_id",
    "study_uid",
    "study_date",
    "study_time",
    "series_uid",
    "series_number",
    "series_description",
    "modality",
    "manufacturer",
    "kernel",
    "image_type",
    "n_files",
    "slice_thickness",
    "orientation",
    "is_axial",
    "is_original",
    "skip_reason",
    "files",
)


def parse_numbers(text: str) -> tuple[float, ...]:
    """A backslash-separated DICOM number string as floats (empty string: empty tuple)."""
    return tuple(float(v) for v in text.split("\\")) if text.strip() else ()


def slice_normal(orientation: tuple[float, ...]) -> np.ndarray:
    """Unit normal (row x column direction) of an ImageOrientationPatient (6 values)."""
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float)
    normal = np.cross(row, col)
    return normal / np.linalg.norm(normal)


def _rounded(text: str) -> str:
    try:
        values = parse_numbers(text)
    except ValueError:
        return text
    return "\\".join(f"{round(v, GEOMETRY_DECIMALS) + 0.0:g}" for v in values)


UID_KEY_TAGS: Final = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")
FALLBACK_KEY_TAGS: Final = (
    "PatientID",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "SeriesNumber",
    "SeriesDescription",
    "ConvolutionKernel",
    "SliceThickness",
    "Modality",
)
KEY_SEPARATOR: Final = "\x1f"


def _series_keys(images: pd.DataFrame) -> pd.Series:
    """Grouping key per file: SeriesInstanceUID + geometry, or the fallback tags + geometry."""
    geometry = pd.Series("", index=images.index)
    for tag in ("ImageOrientationPatient", "Rows", "Columns", "PixelSpacing"):
        column = images[tag]
        if tag in ("ImageOrientationPatient", "PixelSpacing"):
            column = column.map({v: _rounded(v) for v in column.unique()})
        geometry = geometry + KEY_SEPARATOR + column

    def joined(tags: tuple[str, ...]) -> pd.Series:
        out = pd.Series("", index=images.index)
        for tag in tags:
            out = out + KEY_SEPARATOR + images[tag]
        return out

    with_uid = "uid" + joined(UID_KEY_TAGS) + geometry
    fallback = "tags" + joined(FALLBACK_KEY_TAGS) + geometry
    return with_uid.where(images["SeriesInstanceUID"] != "", fallback)


def _file_reason(first: dict[str, str]) -> str:
    """Why a series (judged by its first file) is no CT volume; empty when it is one."""
    sop = first["SOPClassUID"]
    modality = first["Modality"]
    if modality != CT_MODALITY and not (modality == "" and sop == CT_IMAGE_STORAGE):
        return f"modality {modality or '(blank)'} is not CT"
    if sop.startswith(SECONDARY_CAPTURE_PREFIX):
        return "secondary capture"
    if sop == ENHANCED_CT_IMAGE_STORAGE:
        return "enhanced (multi-frame) CT is not supported"
    kinds = sorted(
        NON_VOLUME_IMAGE_TYPES & {t.strip().upper() for t in first["ImageType"].split("\\")}
    )
    if kinds:
        return f"not a volume (ImageType {'/'.join(kinds)})"
    try:
        ok = (
            len(parse_numbers(first["ImageOrientationPatient"])) == 6
            and len(parse_numbers(first["ImagePositionPatient"])) == 3
            and len(parse_numbers(first["PixelSpacing"])) == 2
        )
    except ValueError:
        ok = False
    if not ok:
        return "no image geometry (ImagePositionPatient/ImageOrientationPatient/PixelSpacing)"
    return ""


def _flag_localizers(series: pd.DataFrame) -> None:
    """Mark 1-2 slice series whose orientation differs from their study's largest series."""
    studies: dict[tuple[str, str, str], list[int]] = {}
    for i, row in enumerate(series.itertuples(index=False)):
        if row.skip_reason == "":
            studies.setdefault((row.patient_id, row.study_uid, row.study_date), []).append(i)
    n_files, orientation = series["n_files"].to_numpy(), series["orientation"].to_numpy()
    for members in studies.values():
        main = max(members, key=lambda i: n_files[i])
        for i in members:
            if n_files[i] <= LOCALIZER_MAX_SLICES < n_files[main] and (
                orientation[i] != orientation[main]
            ):
                label = series.at[main, "series_number"] or series.at[main, "series_key"]
                series.at[i, "skip_reason"] = (
                    f"localizer ({n_files[i]} slices of another orientation than series {label})"
                )


def list_series(headers: pd.DataFrame) -> pd.DataFrame:
    """One row per image series in a ``read_headers`` table (``SERIES_COLUMNS``).

    ``files`` is the sorted list of paths; ``skip_reason`` is empty for CT volumes.
    """
    images = headers[headers["Rows"] != ""] if len(headers) else headers
    if len(images) == 0:
        return pd.DataFrame(columns=list(SERIES_COLUMNS))
    columns = {c: images[c].to_numpy() for c in images.columns}
    thickness = pd.to_numeric(images["SliceThickness"], errors="coerce").to_numpy()
    rows = []
    for raw_key, positions in images.groupby(_series_keys(images), sort=False).indices.items():
        positions = positions[np.argsort(columns["path"][positions], kind="stable")]
        key = "s" + hashlib.sha1(raw_key.encode()).hexdigest()[:16]
        first = {c: values[positions[0]] for c, values in columns.items()}
        thick = thickness[positions]
        try:
            orientation = _rounded(first["ImageOrientationPatient"])
            normal = slice_normal(parse_numbers(first["ImageOrientationPatient"]))
            is_axial = bool(abs(normal[2]) >= AXIAL_MIN_ABS_COS)
        except (ValueError, IndexError):
            orientation, is_axial = "", False
        image_type = first["ImageType"]
        rows.append(
            {
                "series_key": key,
                "patient_id": first["PatientID"],
                "study_uid": first["StudyInstanceUID"],
                "study_date": first["StudyDate"],
                "study_time": first["StudyTime"],
                "series_uid": first["SeriesInstanceUID"],
                "series_number": first["SeriesNumber"],
                "series_description": first["SeriesDescription"],
                "modality": first["Modality"],
                "manufacturer": first["Manufacturer"],
                "kernel": first["ConvolutionKernel"],
                "image_type": image_type,
                "n_files": len(positions),
                "slice_thickness": float(np.nanmedian(thick))
                if np.isfinite(thick).any()
                else math.nan,
                "orientation": orientation,
                "is_axial": is_axial,
                "is_original": image_type.upper().startswith("ORIGINAL"),
                "skip_reason": _file_reason(first),
                "files": columns["path"][positions].tolist(),
            }
        )
    series = pd.DataFrame(rows, columns=list(SERIES_COLUMNS))
    _flag_localizers(series)
    series["_number"] = pd.to_numeric(series["series_number"], errors="coerce")
    order = ["patient_id", "study_date", "study_time", "study_uid", "_number", "series_key"]
    return series.sort_values(order).drop(columns="_number").reset_index(drop=True)


def describe(row: pd.Series) -> str:
    """Short human label of a series row for log messages."""
    number = row["series_number"] or "?"
    desc = row["series_description"] or "no description"
    return (
        f"series {number} '{desc}' ({row['n_files']} files, thickness "
        f"{row['slice_thickness']:g} mm, uid {row['series_uid'] or row['series_key']})"
    )


def iso_date(text: str) -> str:
    """DICOM DA ``YYYYMMDD`` as ISO ``YYYY-MM-DD``; ValueError when it is no valid date."""
    return dt.datetime.strptime(text.strip(), "%Y%m%d").date().isoformat()
