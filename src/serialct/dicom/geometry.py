"""Slice geometry of a series: order along the slice normal, gantry tilt, spacing, resampling.

Pure numpy on header values; ``convert`` reads the pixels. Directions are LPS unit vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from serialct.dicom.series import slice_normal
from serialct.errors import InputError

ORIENTATION_TOLERANCE: Final = 1e-4  # max difference of ImageOrientationPatient components
DUPLICATE_TOLERANCE_MM: Final = 1e-3  # two slices closer than this along the normal: duplicates
TILT_TOLERANCE_DEG: Final = 0.1  # tilt (tag or geometry) above this is refused
SPACING_REL_TOLERANCE: Final = 0.01  # steps within 1 % of the median step count as uniform
GAP_FACTOR: Final = 1.5  # a step above 1.5x the median step means missing slices


@dataclass(frozen=True)
class SliceStack:
    """Files in order along the slice normal and the geometry they define."""

    order: tuple[int, ...]  # indices into the input lists, sorted by position along the normal
    offsets: np.ndarray  # position of each sorted slice along the normal (mm)
    origin: np.ndarray  # ImagePositionPatient of the first sorted slice (LPS, mm)
    direction: np.ndarray  # 3x3, columns: row direction, column direction, slice normal
    pixel_spacing: tuple[float, float]  # (between rows, between columns) = (y, x) in mm

    @property
    def steps(self) -> np.ndarray:
        return np.diff(self.offsets)


def stack_slices(
    files: list[str],
    positions: list[tuple[float, ...]],
    orientations: list[tuple[float, ...]],
    pixel_spacings: list[tuple[float, ...]],
) -> SliceStack:
    """Sort slices along the normal of their common orientation; refuse inconsistent stacks."""
    ref = np.asarray(orientations[0], float)
    for path, iop in zip(files, orientations, strict=True):
        if len(iop) != 6 or np.max(np.abs(np.asarray(iop, float) - ref)) > ORIENTATION_TOLERANCE:
            raise InputError(
                f"{path}: tag ImageOrientationPatient {iop} differs from {tuple(ref)} of "
                f"{files[0]}: one series must have one slice orientation"
            )
    for path, ipp in zip(files, positions, strict=True):
        if len(ipp) != 3:
            raise InputError(f"{path}: tag ImagePositionPatient missing or not 3 numbers")
    normal = slice_normal(tuple(ref))
    pos = np.asarray(positions, float)
    offsets = pos @ normal
    order = np.argsort(offsets, kind="stable")
    offsets = offsets[order]
    dup = np.flatnonzero(np.diff(offsets) < DUPLICATE_TOLERANCE_MM)
    if dup.size:
        a, b = files[order[dup[0]]], files[order[dup[0] + 1]]
        raise InputError(
            f"{b}: tag ImagePositionPatient repeats the slice position of {a} "
            "(several acquisitions or phases in one series?); split the series before converting"
        )
    direction = np.column_stack([ref[:3], ref[3:6], normal])
    spacing = pixel_spacings[0]
    return SliceStack(
        order=tuple(int(i) for i in order),
        offsets=offsets,
        origin=pos[order[0]],
        direction=direction,
        pixel_spacing=(float(spacing[0]), float(spacing[1])),
    )


def tilt_angle_deg(stack: SliceStack, positions: list[tuple[float, ...]]) -> float:
    """Angle between the slice normal and the line from the first to the last slice (degrees)."""
    if len(stack.order) < 2:
        return 0.0
    pos = np.asarray(positions, float)
    step = pos[stack.order[-1]] - pos[stack.order[0]]
    cos = abs(float(step @ stack.direction[:, 2])) / float(np.linalg.norm(step))
    return math.degrees(math.acos(min(1.0, cos)))


def check_tilt(path: str, tag_tilt: float, geometric_tilt: float) -> None:
    """Raise InputError for a gantry-tilted (sheared) series: its geometry would be wrong."""
    if abs(tag_tilt) <= TILT_TOLERANCE_DEG and geometric_tilt <= TILT_TOLERANCE_DEG:
        return
    angle = tag_tilt if abs(tag_tilt) > TILT_TOLERANCE_DEG else geometric_tilt
    raise InputError(
        f"gantry tilt {abs(angle):.1f} deg in {path}: tag GantryDetectorTilt {tag_tilt:g}, slice "
        f"positions {geometric_tilt:.1f} deg off the slice normal; tilted series are not supported "
        "(reconstruct without tilt, or correct the tilt with a tool such as dcm2niix first)"
    )


def spacing_stats(steps: np.ndarray) -> dict[str, float | int]:
    """Median, min, max and spread of the slice steps (mm), and the number of gaps."""
    if steps.size == 0:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "std": math.nan, "gaps": 0}
    median = float(np.median(steps))
    return {
        "median": median,
        "min": float(steps.min()),
        "max": float(steps.max()),
        "std": float(steps.std()),
        "gaps": int(np.sum(steps > GAP_FACTOR * median)),
    }


def is_uniform(steps: np.ndarray) -> bool:
    """True when every step is within ``SPACING_REL_TOLERANCE`` of the median step."""
    if steps.size < 2:
        return True
    median = float(np.median(steps))
    return bool(np.max(np.abs(steps - median)) <= SPACING_REL_TOLERANCE * median)


def uniform_offsets(offsets: np.ndarray) -> np.ndarray:
    """A regular grid from the first to the last offset with a step close to the median step."""
    extent = float(offsets[-1] - offsets[0])
    median = float(np.median(np.diff(offsets)))
    n = max(2, round(extent / median) + 1)
    return offsets[0] + np.arange(n) * (extent / (n - 1))


def resample_along_normal(
    stack: np.ndarray, offsets: np.ndarray, new_offsets: np.ndarray
) -> np.ndarray:
    """Linear interpolation of a (z, y, x) stack from slice ``offsets`` to ``new_offsets``.

    Valid only for slices that are exactly stacked along their normal (no tilt): every output
    slice is a weighted sum of the two input slices around it.
    """
    idx = np.clip(np.searchsorted(offsets, new_offsets, side="right") - 1, 0, len(offsets) - 2)
    t = (new_offsets - offsets[idx]) / (offsets[idx + 1] - offsets[idx])
    out = np.empty((len(new_offsets), *stack.shape[1:]), np.float32)
    for k, (i, w) in enumerate(zip(idx, t, strict=True)):
        out[k] = (1.0 - w) * stack[i] + w * stack[i + 1]
    return out
