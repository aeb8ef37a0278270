"""A five-lobe split of the lung mask from fissure geometry and published lobar volumes, refined
by the fissures where thin-section CT shows them; or the user's own lobe masks (``lobes_from``),
resampled onto the CT grid. APPROXIMATE: there is no lobe model.

Planes first. Per lung, every voxel's position is normalised to the lung's physical extent
(mm, from the image direction and origin, so voxel size and array orientation do not matter):
``height`` 0 at the lung's lowest point to 1 at its apex, ``depth`` 0 at its most anterior
point to 1 at its most posterior one. Planes perpendicular to the sagittal plane stand in for
the fissures (textbook anatomy):

- oblique fissure (both lungs): rises from the front of the diaphragm to the back of the lung at
  about T4-T5, OBLIQUE_SLOPE of the lung's height over its depth; below and behind it is the
  lower lobe;
- horizontal fissure (right only): level, in front of the oblique one; below it is the middle
  lobe, above it the upper lobe.

Each plane's level is where its lobes take their share of the lung's volume on the mean adult's
CT (LOBE_VOLUME_PERCENT: lower lobes about half of each lung, the middle lobe about a sixth of
the right), so the split follows the lung's own shape (domes, costophrenic recesses, apex)
instead of fixed fractions of its height. Planes at textbook fractions of the height (0.70 at
the back, 0.06 at the front, 0.52 for the horizontal fissure; used before issue 17) gave lower
lobes of 34-44 % of their lung on all five real chest series of ``../shared/data/real`` (three
patients), against the published 49-50 %: on CIP and Lung_Dx-A0001, 1.8-2.8 SD below the
published lower-lobe volumes. A patient's own lobes differ from the mean by about the
published SD (1.6-2.6 % of both lungs), and more in disease. The levels depend on the lung
mask being whole: a basal consolidation the mask misses moves the oblique plane up. A landmark
the split does not use agrees: where the lung step finds the carina (Lung_Dx-A0001), the lower
lobes' tops now lie 15-20 mm above it, where textbook anatomy puts the oblique fissure's back
end (the carina's level to one vertebra above); the height fractions put them 0-10 mm below.

Then the fissures themselves, when no voxel side exceeds FISSURE_MAX_VOXEL_MM (on thicker
slices a fissure is not visible): within FISSURE_BAND of each plane, every z column's most
ridge-like voxel (a thin sheet brighter than the aerated lung above and below it) marks the
fissure; the columns' offsets from the plane are smoothed robustly and the plane is moved by
them (``_fissure_shift``). Where a dense lesion hides the fissure the offset is bridged from the
columns around it and shrinks towards the plane where none is near; a fissure seen in fewer than
FISSURE_MIN_COLUMNS columns leaves the plane alone (logged).

Not used: the carina and hila. Anchoring the oblique fissure's back end one vertebral level
above the carina was measured (issue 17) and made phantom lobes worse (mean lobe Dice 0.891 ->
0.865 on 9 phantoms at 3.3 mm); with no real lobe labels here nothing can show such an anchor
is better on patients. On coarse voxels (the tests' and the demo's phantoms) there is no
fissure search and the planes alone decide. Real fissures are incomplete in many patients and
lesions hide them, so per-lobe numbers on patients are approximate: good for "which lobes are
involved" and the 0-5 lobe scores, not for lobar volumes. Every lung voxel gets exactly one
lobe of its own side. Measured figures: README, "Limits you should know".

User lobe masks: ``user_lobes_path`` finds the file of a scan in the ``lobes_from`` folder,
``load_user_lobes`` resamples it (nearest neighbour) onto the CT grid.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from serialct.constants import LOBE_LABELS, LUNG_LEFT, LUNG_RIGHT, MM3_PER_CM3
from serialct.errors import InputError
from serialct.orientation import back_to_grid, to_work

log = logging.getLogger("serialct")

# The oblique fissure's tilt, from textbook surface anatomy of the lungs (Gray's Anatomy; Moore,
# Clinically Oriented Anatomy: thorax): the lung reaches from the neck of the 1st rib (T1) to the
# 10th-11th rib at the back, to the 6th costal cartilage at the front; the oblique fissure runs
# from the T3-T4 spinous process (about the T4-T5 body) at the back, (11 - 4.5) / (11 - 1) ~
# 0.65-0.72 of the height, to the 6th costochondral junction at the front, just above the
# diaphragm (~0.06): it rises about 0.64 of the lung's height from front to back.
OBLIQUE_SLOPE: Final = 0.64
# Mean lobe volumes, percent of both lungs, on supine inspiratory CT of 32 asymptomatic adults:
# Yamada Y et al., Respiration 2020;99(7):598 (PMC7490509), Table 3, supine column (SD 1.6-2.6).
LOBE_VOLUME_PERCENT: Final = {"rul": 17.9, "rml": 9.3, "rll": 26.5, "lul": 23.1, "lll": 23.2}
_RIGHT_PERCENT: Final = sum(LOBE_VOLUME_PERCENT[k] for k in ("rul", "rml", "rll"))
_LEFT_PERCENT: Final = sum(LOBE_VOLUME_PERCENT[k] for k in ("lul", "lll"))
# ... as shares of their own lung
LOWER_SHARE: Final = {
    LUNG_RIGHT: LOBE_VOLUME_PERCENT["rll"] / _RIGHT_PERCENT,  # 0.49
    LUNG_LEFT: LOBE_VOLUME_PERCENT["lll"] / _LEFT_PERCENT,  # 0.50
}
MIDDLE_SHARE: Final = LOBE_VOLUME_PERCENT["rml"] / _RIGHT_PERCENT  # 0.17 of the right lung
COORDINATE_DECIMALS: Final = 3  # physical coordinates rounded to 1 um before sorting
USER_LOBES_SUFFIXES: Final = (".nii.gz", ".nii", ".nrrd", ".mha")

# Fissure search (thin-section CT only; see _fissure_shift)
# coarser voxels: no fissure search, the planes alone (1.5 mm is the usual upper limit of
# thin-section, high-resolution CT; thicker sections average the sub-millimetre pleura of a
# fissure away into the lung around it)
FISSURE_MAX_VOXEL_MM: Final = 1.5
FISSURE_BAND: Final = 0.12  # searched this far (height fraction) above and below the plane
FISSURE_ALONG_MM: Final = 1.5  # HU smoothed along x (along both fissures) first
FISSURE_NEIGHBOUR_MM: Final = 2.0  # a fissure voxel is compared with the lung this far off
FISSURE_RIDGE_HU: Final = 60.0  # ... and must be brighter than their mean by this
FISSURE_AERATED_HU: Final = -700.0  # both neighbours aerated (a lesion hides the fissure)
FISSURE_MAX_HU: Final = -300.0  # brighter is a vessel, not a fissure
FISSURE_MIN_COLUMNS: Final = 200  # fewer columns seeing a fissure: the plane is kept
FISSURE_SMOOTH_MM: Final = 12.0  # Gaussian smoothing of the columns' offsets
FISSURE_OUTLIER_MM: Final = 4.0  # columns this far off the first smoothing are dropped
FISSURE_PRIOR_WEIGHT: Final = 0.05  # local column density at which the offset is halved


def segment_lobes(ct: sitk.Image, lung: sitk.Image) -> sitk.Image:
    """uint8 lobe labels (LOBE_LABELS: 1 RUL .. 5 LLL) on the lung mask's grid; approximate."""
    if ct.GetSize() != lung.GetSize():
        raise InputError(
            f"lung mask: size {lung.GetSize()} differs from the CT's {ct.GetSize()}; "
            "rerun the lung mask for this scan"
        )
    oriented = to_work(lung)
    labels = sitk.GetArrayViewFromImage(oriented)
    spacing = tuple(float(v) for v in oriented.GetSpacing()[::-1])  # (z, y, x)
    # thick voxels: fissures are not visible, the planes alone
    hu = sitk.GetArrayFromImage(to_work(ct)) if max(spacing) <= FISSURE_MAX_VOXEL_MM else None
    lobes = np.zeros(labels.shape, dtype=np.uint8)
    sides = (
        (LUNG_RIGHT, LOBE_LABELS["rul"], LOBE_LABELS["rml"], LOBE_LABELS["rll"]),
        (LUNG_LEFT, LOBE_LABELS["lul"], None, LOBE_LABELS["lll"]),
    )
    boxes = ndi.find_objects(labels, max_label=max(LUNG_RIGHT, LUNG_LEFT))
    cm3 = float(np.prod(spacing)) / MM3_PER_CM3
    for side, upper, middle, lower in sides:
        box = boxes[side - 1]
        if box is None:
            continue
        mask = labels[box] == side
        height, depth = _normalised_position(oriented, box, mask)
        crop = None if hu is None else hu[box]
        found = []
        along = height - OBLIQUE_SLOPE * depth  # constant on an oblique plane
        below = along - _level(along, mask, LOWER_SHARE[side])  # under 0: the lower lobe
        del along
        if crop is not None:
            shift = _fissure_shift(crop, mask, below, spacing)
            found.append(shift is not None)
            if shift is not None:
                below = below - shift[None]
        is_lower = np.broadcast_to(below < 0, mask.shape)
        lobe = np.where(is_lower, lower, upper).astype(np.uint8)
        if middle is not None:
            upper_part = mask & ~is_lower
            share = MIDDLE_SHARE * np.count_nonzero(mask) / max(np.count_nonzero(upper_part), 1)
            if share >= 1.0:
                log.warning(
                    "lobes: the fissure found leaves %.0f %% of the right lung above the oblique "
                    "fissure, less than the middle lobe's share: no upper lobe",
                    100 * np.count_nonzero(upper_part) / np.count_nonzero(mask),
                )
            below_h = height - _level(height, upper_part, share)
            if crop is not None:
                shift = _fissure_shift(crop, upper_part, below_h, spacing)
                found.append(shift is not None)
                if shift is not None:
                    below_h = below_h - shift[None]
            lobe[~is_lower & (below_h < 0)] = middle
        del height, depth, below, is_lower
        lobes[box][mask] = lobe[mask]
        counts = {
            name: np.count_nonzero(lobe[mask] == value) * cm3
            for name, value in LOBE_LABELS.items()
            if value in (upper, middle, lower)
        }
        log.info(
            "lobes (approximate; %s): %s",
            f"fissures not looked for, voxels over {FISSURE_MAX_VOXEL_MM} mm"
            if crop is None
            else "fissures " + "/".join("found" if f else "not found: planes" for f in found),
            ", ".join(f"{k} {v:.1f} cm3" for k, v in counts.items()),
        )
    return back_to_grid(lobes, oriented, lung)


def _level(values: np.ndarray, mask: np.ndarray, share: float) -> float:
    """A level for ``values < level`` that holds the nearest to ``share`` of ``mask``'s voxels
    (``values`` broadcasts to ``mask``; ties, such as a whole slice at one height, go together
    to the side that leaves the smaller error)."""
    inside = np.broadcast_to(values, mask.shape)[mask]
    if inside.size == 0:
        return 0.0
    target = min(max(share, 0.0), 1.0) * inside.size
    value = np.quantile(inside, target / inside.size, method="inverted_cdf")
    below, upto = np.count_nonzero(inside < value), np.count_nonzero(inside <= value)
    return float(value if target - below <= upto - target else np.nextafter(value, np.inf))


def _fissure_shift(
    hu: np.ndarray, mask: np.ndarray, offset: np.ndarray, spacing: tuple[float, ...]
) -> np.ndarray | None:
    """Per (y, x) column, the fissure's height minus the plane's (height fraction), or None
    when too few columns show it. ``offset``: every voxel's height minus the plane's.

    A fissure is a thin bright sheet in aerated lung: per z column of ``mask``, the voxel within
    FISSURE_BAND of the plane whose HU (smoothed along x, along the sheet) exceeds the mean of
    the voxels FISSURE_NEIGHBOUR_MM above and below, both aerated, by the most, if by at least
    FISSURE_RIDGE_HU, and is not a vessel (FISSURE_MAX_HU). The columns' offsets are smoothed
    (Gaussian, FISSURE_SMOOTH_MM), outliers dropped and smoothed again; where few columns see
    the fissure (dense lesions hide it) the offset shrinks towards 0, the plane.
    """
    k = max(1, round(FISSURE_NEIGHBOUR_MM / spacing[0]))
    if hu.shape[0] <= 2 * k:
        return None
    smooth = ndi.gaussian_filter1d(hu, FISSURE_ALONG_MM / spacing[2], axis=2, output=np.float32)
    centre, above, below = smooth[k:-k], smooth[2 * k :], smooth[: -2 * k]
    inner = (slice(k, -k),)
    score = np.where(
        mask[inner]
        & (np.abs(offset[inner]) <= FISSURE_BAND)
        & (above < FISSURE_AERATED_HU)
        & (below < FISSURE_AERATED_HU)
        & (centre < FISSURE_MAX_HU),
        centre - 0.5 * (above + below),
        -np.inf,
    ).astype(np.float32)
    del smooth, centre, above, below
    best_z = np.argmax(score, axis=0)[None]  # per column, the most ridge-like voxel
    hit = np.take_along_axis(score, best_z, axis=0)[0] >= FISSURE_RIDGE_HU
    del score
    if np.count_nonzero(hit) < FISSURE_MIN_COLUMNS:
        return None
    found = np.broadcast_to(offset, mask.shape)[inner]
    values = np.where(hit, np.take_along_axis(found, best_z, axis=0)[0], 0.0)
    weights = hit.astype(np.float64)
    sigma = [FISSURE_SMOOTH_MM / s for s in spacing[1:]]

    def smoothed(w: np.ndarray) -> np.ndarray:
        num = ndi.gaussian_filter(values * w, sigma, mode="constant")
        den = ndi.gaussian_filter(w, sigma, mode="constant")
        return num / (den + FISSURE_PRIOR_WEIGHT)

    lung_mm = max(np.count_nonzero(mask.any(axis=(1, 2))) * spacing[0], spacing[0])
    inlier = weights * (np.abs(values - smoothed(weights)) <= FISSURE_OUTLIER_MM / lung_mm)
    # (clipped: beyond the band nothing was searched)
    surface = np.clip(smoothed(inlier), -FISSURE_BAND, FISSURE_BAND)
    log.info(
        "lobes: fissure seen in %d columns (%d kept), offset %.3f..%.3f of the lung height",
        int(weights.sum()), int(inlier.sum()), float(surface.min()), float(surface.max()),
    )  # fmt: skip
    return surface


def _normalised_position(
    image: sitk.Image, box: tuple[slice, ...], mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(height, depth) over the box ``box`` (numpy z, y, x) of ``image``, 0 to 1 over the
    voxels of ``mask``: from their physical superior (+z) and posterior (+y) coordinates in LPS.
    Broadcastable arrays (a coordinate depends only on the axes its direction touches)."""
    matrix = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())[None, :]
    origin = np.array(image.GetOrigin())
    shape = mask.shape
    # ITK index (i, j, k) = numpy (x, y, z) axes 2, 1, 0
    grids = [
        np.arange(box[2 - c].start, box[2 - c].stop).reshape(
            [-1 if a == 2 - c else 1 for a in range(3)]
        )
        for c in range(3)
    ]

    def physical(axis: int) -> np.ndarray:  # rounded: the same voxel, however stored
        mm = origin[axis] + sum(matrix[axis, c] * grids[c] for c in range(3) if matrix[axis, c])
        return np.round(np.asarray(mm, dtype=np.float64), COORDINATE_DECIMALS)

    return _unit(physical(2), mask, shape), _unit(physical(1), mask, shape)


def _unit(values: np.ndarray, mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``values`` scaled to 0-1 over the voxels of ``mask`` (0.5 everywhere if constant)."""
    inside = np.broadcast_to(values, shape)[mask]
    low, high = float(inside.min()), float(inside.max())
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
