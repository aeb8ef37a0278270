"""An APPROXIMATE five-lobe split of the lung mask, from geometry alone; or the user's own
lobe masks (``lobes_from``), resampled onto the CT grid.

No fissure is detected. Per lung, every voxel's position is normalised to the lung's physical
extent (mm, from the image direction and origin, so voxel size and array orientation do not
matter): ``height`` 0 at the lung's lowest point to 1 at its apex, ``depth`` 0 at its most
anterior point to 1 at its most posterior one. Planes perpendicular to the sagittal plane stand
in for the fissures (textbook anatomy):

- oblique fissure (both lungs): from the back of the lung at about T4-T5 (OBLIQUE_POSTERIOR_HEIGHT,
  about 70 % of the lung height) down to the front of the diaphragm (OBLIQUE_ANTERIOR_HEIGHT);
  below and behind it is the lower lobe;
- horizontal fissure (right only): level at HORIZONTAL_HEIGHT (about the 4th costal cartilage),
  in front of the oblique one; below it is the middle lobe, above it the upper lobe.

The same planes draw the synthetic phantom's (undulating) fissures, so on phantoms the split is
close to the truth (lobe Dice ~0.9, per-lobe lesion percent within a few points). The phantom's
fissures undulate (+-3 % of the lung height) but are not drawn in the image, so no method can
follow them: at 35-50 % involvement the RML's lesion percent is 5-6.6 points off on the true lung
with our planes and 4.9-6.0 with the phantom's own planes without the undulation (measured,
benchmarks/lung_validation.py column ``geom``); real fissures
are curved and vary between patients, so per-lobe numbers on patients are rough: good for
"which lobes are involved" and the 0-5 lobe scores, not for lobar volumes. Every lung voxel gets
exactly one lobe of its own side.

User lobe masks: ``user_lobes_path`` finds the file of a scan in the ``lobes_from`` folder,
``load_user_lobes`` resamples it (nearest neighbour) onto the CT grid.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import numpy as np
import SimpleITK as sitk

from serialct.constants import LOBE_LABELS, LUNG_LEFT, LUNG_RIGHT, MM3_PER_CM3
from serialct.errors import InputError

log = logging.getLogger("serialct")

OBLIQUE_POSTERIOR_HEIGHT: Final = 0.70  # oblique fissure height at the back of the lung
OBLIQUE_ANTERIOR_HEIGHT: Final = 0.06  # ... and at its front (just above the diaphragm)
HORIZONTAL_HEIGHT: Final = 0.52  # right horizontal fissure (level)
COORDINATE_DECIMALS: Final = 3  # physical coordinates rounded to 1 um before sorting
USER_LOBES_SUFFIXES: Final = (".nii.gz", ".nii", ".nrrd", ".mha")


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
        height, depth = _normalised_position(lung, index)
        lobe = _split(height, depth, upper, middle, lower)
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
    height: np.ndarray, depth: np.ndarray, upper: int, middle: int | None, lower: int
) -> np.ndarray:
    """Lobe labels of one lung's voxels from their normalised positions."""
    oblique = OBLIQUE_ANTERIOR_HEIGHT + (OBLIQUE_POSTERIOR_HEIGHT - OBLIQUE_ANTERIOR_HEIGHT) * depth
    lobe = np.full(height.shape, upper, dtype=np.uint8)
    is_lower = height < oblique
    lobe[is_lower] = lower
    if middle is not None:
        lobe[~is_lower & (height < HORIZONTAL_HEIGHT)] = middle
    return lobe


def _normalised_position(
    image: sitk.Image, index: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """(height, depth) in [0, 1] over the voxels ``index`` (numpy z, y, x), from their physical
    superior (+z) and posterior (+y) coordinates in LPS."""
    matrix = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())[None, :]
    origin = np.array(image.GetOrigin())
    ijk = (index[2], index[1], index[0])  # ITK index order (x, y, z)

    def physical(axis: int) -> np.ndarray:  # rounded: the same voxel, however stored
        mm = origin[axis] + sum(matrix[axis, k] * ijk[k] for k in range(3))
        return np.round(mm, COORDINATE_DECIMALS)

    return _unit(physical(2)), _unit(physical(1))


def _unit(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.full(values.shape, 0.5)
    return (values - low) / (high - low)


def user_lobes_path(folder: Path, center: str, patient: str, scan: str) -> Path | None:
    """The user's lobe mask of one scan in the ``lobes_from`` folder, or None if it has none.

    Looked for, first match wins, with any suffix of USER_LOBES_SUFFIXES (.nii.gz, .nii, .nrrd,
    .mha): ``{folder}/{center}/{patient}/{scan}.nii.gz``, ``{folder}/{patient}/{scan}.nii.gz``,
    ``{folder}/{patient}_{scan}.nii.gz``. Labels: 0 background, 1 RUL, 2 RML, 3 RLL, 4 LUL,
    5 LLL; any grid (it is resampled onto the CT).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"lobes_from: {folder} is not a folder; point it at the lobe masks")
    stems = (
        folder / center / patient / scan,
        folder / patient / scan,
        folder / f"{patient}_{scan}",
    )
    for stem in stems:
        for suffix in USER_LOBES_SUFFIXES:
            candidate = stem.parent / f"{stem.name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def load_user_lobes(path: Path, ct: sitk.Image) -> sitk.Image:
    """A user lobe mask resampled (nearest neighbour) onto the CT grid, as uint8 labels 0-5."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise InputError(f"{path}: not a readable lobe mask image ({err})") from err
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() != 3:
        raise InputError(f"{path}: expected a 3-D single-channel lobe label image")
    values = np.unique(sitk.GetArrayViewFromImage(image))
    allowed = {0, *LOBE_LABELS.values()}
    bad = [v for v in values.tolist() if v not in allowed]
    if bad:
        raise InputError(
            f"{path}: lobe labels must be 0 (background) or 1-5 (RUL, RML, RLL, LUL, LLL); "
            f"found {bad[:5]}"
        )
    image = sitk.Cast(image, sitk.sitkUInt8)
    resampled = sitk.Resample(image, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0)
    if not sitk.GetArrayViewFromImage(resampled).any():
        raise InputError(f"{path}: the lobe mask does not overlap the CT (check its geometry)")
    log.info("lobes: user lobe mask %s resampled onto the CT grid", path)
    return resampled
