"""Group the header table into image series by DICOM tags (never by folder or file names).

A series is keyed by SeriesInstanceUID plus its image geometry (orientation, matrix, pixel
spacing). When SeriesInstanceUID is blank, the key falls back to StudyInstanceUID, SeriesNumber,
description, kernel, thickness and the same geometry. A series whose slice positions repeat is
split into its acquisitions (AcquisitionNumber, AcquisitionTime, TemporalPositionIdentifier).
Each series gets a ``skip_reason`` when it is no CT volume (other modality, secondary capture,
localizer/scout, projection, repeated positions that no acquisition tag separates, ...).
A multi-frame (Enhanced CT) file is a series by itself (:mod:`serialct.dicom.multiframe`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
from typing import Final

import numpy as np
import pandas as pd

from serialct.dicom.multiframe import FRAME_COUNT, FRAME_REASON, LAST_FRAME_POSITION

logger = logging.getLogger("serialct")

CT_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.2.2"
CT_STORAGE_CLASSES: Final = frozenset(
    {CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE, LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE}
)
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
    "acquisition",
    "coverage_mm",
    "gantry_tilt_deg",
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
    if modality != CT_MODALITY and not (modality == "" and sop in CT_STORAGE_CLASSES):
        return f"modality {modality or '(blank)'} is not CT"
    if sop.startswith(SECONDARY_CAPTURE_PREFIX):
        return "secondary capture"
    if first.get(FRAME_REASON):
        return first[FRAME_REASON]
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


DUPLICATE_DECIMALS: Final = 3  # slice offsets equal to 0.001 mm are the same position
ACQUISITION_TAGS: Final = ("AcquisitionNumber", "AcquisitionTime", "TemporalPositionIdentifier")


def _offsets(ipp: np.ndarray, normal: np.ndarray | None) -> np.ndarray:
    """Slice positions along the normal (mm); NaN where ImagePositionPatient is unusable."""
    if normal is None:
        return np.full(len(ipp), np.nan)
    out = []
    for text in ipp:
        try:
            pos = parse_numbers(text)
        except ValueError:
            pos = ()
        out.append(float(np.dot(pos, normal)) if len(pos) == 3 else math.nan)
    return np.asarray(out, float)


def _has_repeats(offsets: np.ndarray) -> bool:
    finite = offsets[np.isfinite(offsets)]
    return len(np.unique(np.round(finite, DUPLICATE_DECIMALS))) < len(finite)


def _split_acquisitions(
    positions: np.ndarray, offsets: np.ndarray, columns: dict[str, np.ndarray]
) -> tuple[list[tuple[str, np.ndarray]], str]:
    """Split files with repeated slice positions into acquisitions: ``[(label, positions)]``.

    The first of ``ACQUISITION_TAGS`` that separates the files into parts without repeats is
    used; the second value is a skip reason when none does (empty otherwise).
    """
    if not _has_repeats(offsets):
        return [("", positions)], ""
    for tag in ACQUISITION_TAGS:
        values = columns[tag][positions]
        labels = sorted(set(values.tolist()))
        if len(labels) < 2:
            continue
        parts = [(f"{tag}={v}", positions[values == v], offsets[values == v]) for v in labels]
        if not any(_has_repeats(o) for _, _, o in parts):
            return [(label, p) for label, p, _ in parts], ""
    n = len(offsets) - len(np.unique(np.round(offsets, DUPLICATE_DECIMALS)))
    return [("", positions)], (
        f"repeated slice positions ({n} files share a position with another) and no "
        f"acquisition tag ({', '.join(ACQUISITION_TAGS)}) separates them"
    )


def _tilt_deg(offsets: np.ndarray, ipp: np.ndarray, normal: np.ndarray | None) -> float:
    """Angle between the slice normal and the line from the first to the last slice."""
    finite = np.flatnonzero(np.isfinite(offsets))
    if normal is None or len(finite) < 2:
        return 0.0
    lo, hi = finite[np.argmin(offsets[finite])], finite[np.argmax(offsets[finite])]
    step = np.asarray(parse_numbers(ipp[hi])) - np.asarray(parse_numbers(ipp[lo]))
    length = float(np.linalg.norm(step))
    if length == 0.0:
        return 0.0
    return math.degrees(math.acos(min(1.0, abs(float(step @ normal)) / length)))


_MULTI_FILE_REASON: Final = (
    "multi-frame (enhanced) CT split over {n} files or mixed with single-frame files: only a "
    "series in one multi-frame file is supported"
)


def list_series(headers: pd.DataFrame) -> pd.DataFrame:
    """One row per image series in a ``read_headers`` table (``SERIES_COLUMNS``).

    ``files`` is the sorted list of paths; ``skip_reason`` is empty for CT volumes. A series with
    repeated slice positions becomes one row per acquisition (``acquisition`` names the tag and
    value, ``series_key`` gets a suffix). ``coverage_mm`` is the extent along the slice normal;
    ``gantry_tilt_deg`` the larger of the GantryDetectorTilt tag and the tilt of the positions.
    A series in one multi-frame (Enhanced CT) file counts its frames in ``n_files`` and takes
    coverage and tilt from its lowest and highest frames.
    """
    images = headers[headers["Rows"] != ""] if len(headers) else headers
    if len(images) == 0:
        return pd.DataFrame(columns=list(SERIES_COLUMNS))
    columns = {c: images[c].to_numpy() for c in images.columns}
    thickness = pd.to_numeric(images["SliceThickness"], errors="coerce").to_numpy()
    tag_tilt = pd.to_numeric(images["GantryDetectorTilt"], errors="coerce").to_numpy()
    rows = []
    for raw_key, group in images.groupby(_series_keys(images), sort=False).indices.items():
        group = group[np.argsort(columns["path"][group], kind="stable")]
        first = {c: values[group[0]] for c, values in columns.items()}
        try:
            orientation = _rounded(first["ImageOrientationPatient"])
            normal = slice_normal(parse_numbers(first["ImageOrientationPatient"]))
            is_axial = bool(abs(normal[2]) >= AXIAL_MIN_ABS_COS)
        except (ValueError, IndexError):
            orientation, normal, is_axial = "", None, False
        group_offsets = _offsets(columns["ImagePositionPatient"][group], normal)
        parts, repeat_reason = _split_acquisitions(
            np.arange(len(group)), group_offsets, {t: columns[t][group] for t in ACQUISITION_TAGS}
        )
        for label, local in parts:
            positions = group[local]
            offsets = group_offsets[local]
            key = "s" + hashlib.sha1((raw_key + label).encode()).hexdigest()[:16]
            first = {c: values[positions[0]] for c, values in columns.items()}
            thick = thickness[positions]
            tilts = np.abs(tag_tilt[positions])
            ipp = columns["ImagePositionPatient"][positions]
            n_slices, frame_reason = len(positions), ""
            if FRAME_COUNT in columns and any(columns[FRAME_COUNT][positions]):
                if len(positions) > 1:
                    frame_reason = _MULTI_FILE_REASON.format(n=len(positions))
                else:  # one multi-frame file: its ends give coverage and tilt
                    n_slices = int(first[FRAME_COUNT])
                    ipp = np.array([ipp[0], first[LAST_FRAME_POSITION]])
                    offsets = _offsets(ipp, normal)
            finite = offsets[np.isfinite(offsets)]
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
                    "n_files": n_slices,
                    "slice_thickness": float(np.nanmedian(thick))
                    if np.isfinite(thick).any()
                    else math.nan,
                    "orientation": orientation,
                    "is_axial": is_axial,
                    "is_original": image_type.upper().startswith("ORIGINAL"),
                    "acquisition": label,
                    "coverage_mm": float(finite.max() - finite.min()) if finite.size else 0.0,
                    "gantry_tilt_deg": max(
                        float(np.nanmax(tilts)) if np.isfinite(tilts).any() else 0.0,
                        _tilt_deg(offsets, ipp, normal),
                    ),
                    "skip_reason": _file_reason(first) or frame_reason or repeat_reason,
                    "files": columns["path"][positions].tolist(),
                }
            )
    series = pd.DataFrame(rows, columns=list(SERIES_COLUMNS))
    _flag_localizers(series)
    series["_number"] = pd.to_numeric(series["series_number"], errors="coerce")
    order = ["patient_id", "study_date", "study_time", "study_uid", "_number", "acquisition"]
    order.append("series_key")
    return series.sort_values(order).drop(columns="_number").reset_index(drop=True)


def describe(row: pd.Series) -> str:
    """Short human label of a series row for log messages."""
    number = row["series_number"] or "?"
    if row.get("acquisition"):
        number = f"{number} [{row['acquisition']}]"
    desc = row["series_description"] or "no description"
    return (
        f"series {number} '{desc}' ({row['n_files']} files, thickness "
        f"{row['slice_thickness']:g} mm, uid {row['series_uid'] or row['series_key']})"
    )


def iso_date(text: str) -> str:
    """DICOM DA ``YYYYMMDD`` as ISO ``YYYY-MM-DD``; ValueError when it is no valid date."""
    return dt.datetime.strptime(text.strip(), "%Y%m%d").date().isoformat()
