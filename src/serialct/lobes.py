"""An APPROXIMATE five-lobe split of the lung mask, from geometry alone.

No fissure is detected. Per lung, every voxel's position is normalised to the lung's physical
extent (mm, from the image direction and origin, so voxel size and array orientation do not
matter): ``height`` 0 at the lung's lowest point to 1 at its apex, ``depth`` 0 at its most
anterior point to 1 at its most posterior one. Planes perpendicular to the sagittal plane stand
in for the fissures:

- oblique fissure (both lungs): slanted like the line from the back of the lung at about T4-T5
  (OBLIQUE_POSTERIOR_HEIGHT, the upper third) down to the anterior third of the diaphragm
  (OBLIQUE_ANTERIOR_DEPTH); below and behind it is the lower lobe;
- horizontal fissure (right only): level, in front of the oblique one; below it is the middle
  lobe, above it the upper lobe.

Each plane is then shifted so the lobe gets its typical share of the lung's volume
(LOBE_FRACTION: bronchopulmonary segment counts, 3/2/5 of 10 on the right, 5/4 of 9 on the left,
as used for predicted post-operative lung function). Real fissures are curved and vary between
patients, so per-lobe numbers are rough: good for "which lobes are involved" and the 0-5 lobe
scores, not for lobar volumes. Every lung voxel gets exactly one lobe of its own side.
"""

from __future__ import annotations

import logging
from typing import Final

import numpy as np
import SimpleITK as sitk

from serialct.constants import LOBE_LABELS, LUNG_LEFT, LUNG_RIGHT, MM3_PER_CM3
from serialct.errors import InputError

log = logging.getLogger("serialct")

OBLIQUE_POSTERIOR_HEIGHT: Final = 0.65  # the oblique fissure's slant: from the back at this
OBLIQUE_ANTERIOR_DEPTH: Final = 0.35  # height down to the diaphragm at this depth (0 front)
COORDINATE_DECIMALS: Final = 3  # physical coordinates rounded to 1 um before sorting
LOBE_FRACTION: Final = {  # of its own lung's volume
    "rul": 3 / 10,
    "rml": 2 / 10,
    "rll": 5 / 10,
    "lul": 5 / 9,
    "lll": 4 / 9,
}


def segment_lobes(ct: sitk.Image, lung: sitk.Image) -> sitk.Image:
    """uint8 lobe labels (LOBE_LABELS: 1 RUL .. 5 LLL) on the lung mask's grid; approximate."""
    if ct.GetSize() != lung.GetSize():
        raise InputError(
            f"lung mask: size {lung.GetSize()} differs from the CT's {ct.GetSize()}; "
            "rerun the lung mask for this scan"
        )
    labels = sitk.GetArrayViewFromImage(lung)
    lobes = np.zeros(labels.shape, dtype=np.uint8)
    sides = (
        (LUNG_RIGHT, LOBE_LABELS["rul"], LOBE_LABELS["rml"], LOBE_LABELS["rll"]),
        (LUNG_LEFT, LOBE_LABELS["lul"], None, LOBE_LABELS["lll"]),
    )
    cm3 = float(np.prod(lung.GetSpacing())) / MM3_PER_CM3
    for side, upper, middle, lower in sides:
        index = np.nonzero(labels == side)
        if index[0].size == 0:
            continue
        height, depth, x = _normalised_position(lung, index)
        lobe = _split(height, depth, x, upper, middle, lower)
        lobes[index] = lobe
        counts = {
            name: np.count_nonzero(lobe == value) * cm3
            for name, value in LOBE_LABELS.items()
            if value in (upper, middle, lower)
        }
        log.info(
            "lobes (approximate): %s", ", ".join(f"{k} {v:.1f} cm3" for k, v in counts.items())
        )
    image = sitk.GetImageFromArray(lobes)
    image.CopyInformation(lung)
    return image


def _split(
    height: np.ndarray,
    depth: np.ndarray,
    x: np.ndarray,
    upper: int,
    middle: int | None,
    lower: int,
) -> np.ndarray:
    """Lobe labels of one lung's voxels from their normalised positions (``x`` only breaks
    ties, so the result does not depend on how the array is stored)."""
    names = {value: name for name, value in LOBE_LABELS.items()}
    # signed position across the oblique plane: low = below and behind it
    slope = OBLIQUE_POSTERIOR_HEIGHT / (1.0 - OBLIQUE_ANTERIOR_DEPTH)
    is_lower = _lowest(LOBE_FRACTION[names[lower]], height - slope * depth, -depth, x)
    lobe = np.full(height.shape, upper, dtype=np.uint8)
    lobe[is_lower] = lower
    if middle is not None and not is_lower.all():
        share = LOBE_FRACTION[names[middle]] / (1.0 - LOBE_FRACTION[names[lower]])
        rest = np.flatnonzero(~is_lower)
        lobe[rest[_lowest(share, height[rest], depth[rest], x[rest])]] = middle
    return lobe


def _lowest(share: float, key: np.ndarray, *tie_breaks: np.ndarray) -> np.ndarray:
    """Mask of the ``share`` of voxels lowest in ``key``, ties broken by ``tie_breaks`` in
    turn, so a plane can end within a slice as well as between slices."""
    chosen = np.zeros(key.shape, dtype=bool)
    chosen[np.lexsort((*tie_breaks[::-1], key))[: round(share * key.size)]] = True
    return chosen


def _normalised_position(
    image: sitk.Image, index: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(height, depth) in [0, 1] over the voxels ``index`` (numpy z, y, x), from their physical
    superior (+z) and posterior (+y) coordinates in LPS, and the physical x (mm)."""
    matrix = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())[None, :]
    origin = np.array(image.GetOrigin())
    ijk = (index[2], index[1], index[0])  # ITK index order (x, y, z)

    def physical(axis: int) -> np.ndarray:  # rounded: the same voxel, however stored
        mm = origin[axis] + sum(matrix[axis, k] * ijk[k] for k in range(3))
        return np.round(mm, COORDINATE_DECIMALS)

    return _unit(physical(2)), _unit(physical(1)), physical(0)


def _unit(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.full(values.shape, 0.5)
    return (values - low) / (high - low)
