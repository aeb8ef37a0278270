"""Multi-frame CT (Enhanced CT, Legacy Converted Enhanced CT): one file holds a whole series.

Its geometry lives in functional groups (shared, overridden per frame): PlanePositionSequence,
PlaneOrientationSequence, PixelMeasuresSequence, PixelValueTransformationSequence, ... The
header row of such a file gets the top-level tags the classic pipeline reads (from the frame
lowest along the slice normal), the frame count, the position of the highest frame and a reason
when the file cannot be one volume; conversion splits it into frames, each with its own header.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from serialct.errors import InputError

# derived header columns: FrameCount is empty for a single-frame (classic) file
FRAME_COUNT: Final = "FrameCount"
LAST_FRAME_POSITION: Final = "LastFramePosition"
FRAME_REASON: Final = "FrameReason"
COLUMNS: Final = (FRAME_COUNT, LAST_FRAME_POSITION, FRAME_REASON)

# tag -> the functional group macro (sequence) that holds it in a multi-frame CT file
FRAME_TAGS: Final = {
    "ImagePositionPatient": "PlanePositionSequence",
    "ImageOrientationPatient": "PlaneOrientationSequence",
    "PixelSpacing": "PixelMeasuresSequence",
    "SliceThickness": "PixelMeasuresSequence",
    "RescaleIntercept": "PixelValueTransformationSequence",
    "RescaleSlope": "PixelValueTransformationSequence",
    "ConvolutionKernel": "CTReconstructionSequence",
    "GantryDetectorTilt": "CTAcquisitionDetailsSequence",
}
GEOMETRY_TAGS: Final = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
POSITION_DECIMALS: Final = 3  # frame offsets equal to 0.001 mm are the same position
GEOMETRY_DECIMALS: Final = 4  # orientation and pixel spacing compared after this rounding


def tag_text(value: Any) -> str:
    """A tag value as one string: multi-values joined with a backslash, stripped."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(tag_text(v) for v in value)
    return str(value).strip()


def is_multiframe(ds: Dataset) -> bool:
    """True for a file with functional groups or more than one frame."""
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        return True
    try:
        return int(ds.get("NumberOfFrames") or 1) > 1
    except (TypeError, ValueError):
        return False


def _macro_value(groups: Dataset | None, macro: str, tag: str) -> str:
    if groups is None or macro not in groups or not groups[macro].value:
        return ""
    item = groups[macro].value[0]
    return tag_text(item.get(tag)) if tag in item else ""


def frame_tags(ds: Dataset) -> list[dict[str, str]]:
    """``FRAME_TAGS`` of each frame as strings: the per-frame group, else the shared one."""
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    frames = []
    for groups in ds.get("PerFrameFunctionalGroupsSequence") or []:
        frames.append(
            {
                tag: _macro_value(groups, macro, tag) or _macro_value(shared, macro, tag)
                for tag, macro in FRAME_TAGS.items()
            }
        )
    return frames


def _numbers(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split("\\")) if text.strip() else ()


def _normal(orientation: tuple[float, ...]) -> np.ndarray:
    normal = np.cross(orientation[:3], orientation[3:6])
    return normal / np.linalg.norm(normal)


def _rounded(text: str) -> tuple[float, ...]:
    return tuple(round(v, GEOMETRY_DECIMALS) + 0.0 for v in _numbers(text))


def _frame_order(frames: list[dict[str, str]]) -> tuple[np.ndarray, str]:
    """Frame indices sorted along the slice normal, and why the frames are no one volume."""
    try:
        geometry = [{t: _numbers(f[t]) for t in GEOMETRY_TAGS} for f in frames]
    except ValueError:
        return np.arange(len(frames)), "frame geometry is not numeric"
    if not all(
        len(g["ImagePositionPatient"]) == 3
        and len(g["ImageOrientationPatient"]) == 6
        and len(g["PixelSpacing"]) == 2
        for g in geometry
    ):
        return np.arange(len(frames)), (
            "frame geometry missing (PlanePositionSequence, PlaneOrientationSequence or "
            "PixelMeasuresSequence in the functional groups)"
        )
    orientations = {_rounded(f["ImageOrientationPatient"]) for f in frames}
    if len(orientations) > 1:
        return np.arange(len(frames)), (
            f"frames of {len(orientations)} orientations in one multi-frame file: not supported"
        )
    spacings = {_rounded(f["PixelSpacing"]) for f in frames}
    if len(spacings) > 1:
        return np.arange(len(frames)), (
            f"frames of {len(spacings)} pixel spacings in one multi-frame file: not supported"
        )
    normal = _normal(geometry[0]["ImageOrientationPatient"])
    offsets = np.array([np.dot(g["ImagePositionPatient"], normal) for g in geometry])
    order = np.argsort(offsets, kind="stable")
    distinct = len(np.unique(np.round(offsets, POSITION_DECIMALS)))
    if distinct < len(frames):
        return order, (
            f"repeated frame positions ({len(frames)} frames at {distinct} positions: several "
            "phases or stacks in one multi-frame file): not supported"
        )
    return order, ""


def header_values(ds: Dataset, row: dict[str, str]) -> dict[str, str]:
    """The header row of a multi-frame file: blank top-level ``FRAME_TAGS`` filled from the
    frame lowest along the normal, and ``COLUMNS`` (frame count, last position, reason)."""
    frames = frame_tags(ds)
    declared = tag_text(ds.get("NumberOfFrames"))
    out = dict(row)
    out[FRAME_COUNT] = str(len(frames)) if frames else declared or "1"
    out[LAST_FRAME_POSITION] = ""
    if not frames:
        out[FRAME_REASON] = (
            "multi-frame file without per-frame functional groups "
            "(PerFrameFunctionalGroupsSequence): not supported"
        )
        return out
    order, reason = _frame_order(frames)
    if not reason and declared and declared != str(len(frames)):
        reason = (
            f"tag NumberOfFrames {declared} differs from the {len(frames)} items of "
            "PerFrameFunctionalGroupsSequence"
        )
    out[FRAME_REASON] = reason
    lowest, highest = frames[order[0]], frames[order[-1]]
    for tag in FRAME_TAGS:
        if tag == "ImagePositionPatient" or not out.get(tag):
            out[tag] = lowest[tag]
    out[LAST_FRAME_POSITION] = highest["ImagePositionPatient"]
    return out


def split_frames(
    path: str, header: dict[str, str], ds: Dataset, syntax: str
) -> tuple[list[str], list[dict[str, str]], list[np.ndarray]]:
    """A multi-frame file as frames: labels (``path [frame k]``), one header per frame (its own
    position, orientation, spacing and rescale) and the stored pixels of each frame (y, x).

    Raises InputError when the file is no one volume or its pixel data cannot be decoded.
    """
    if header[FRAME_REASON]:
        raise InputError(f"{path}: {header[FRAME_REASON]}")
    frames = frame_tags(ds)
    try:
        stored = ds.pixel_array
    except Exception as exc:  # noqa: BLE001  any decoder failure: the whole series is lost
        name = UID(syntax).name if syntax else "unknown transfer syntax"
        raise InputError(
            f"{path}: multi-frame pixel data cannot be decoded ({name}: {exc}); export the "
            "series uncompressed or as classic single-frame CT images"
        ) from exc
    if stored.ndim == 2:
        stored = stored[np.newaxis]
    if stored.shape[0] != len(frames):
        raise InputError(
            f"{path}: {stored.shape[0]} frames of pixel data but {len(frames)} items of "
            "PerFrameFunctionalGroupsSequence"
        )
    labels = [f"{path} [frame {k + 1}]" for k in range(len(frames))]
    headers = [header | {t: v for t, v in f.items() if v} for f in frames]
    return labels, headers, list(stored)
