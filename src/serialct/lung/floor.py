"""The lung's floor brought down onto the diaphragm dome where a dense lesion lines it (and the
apex, upside down)."""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi

from serialct.lung.morphology import (
    SLICE_2D,
    convex_hull,
)

log = logging.getLogger("serialct")


FLOOR_MAX_SLICE_MM = 3.5  # work-grid slices thicker than this get no floor fill

FLOOR_WALL_PX = 2  # probed lung lies this many work-grid pixels inside the lung's outline

FLOOR_RUN_MM = 6.0  # a column's floor is the bottom of its lowest run of this much lung

FLOOR_MIN_HEIGHT_MM = 100.0  # a lung shorter than this along z gets no floor fill

FLOOR_PROBE_MM = (3.0, 10.0)  # the lung this far above a column's floor tells if it is lined

FLOOR_NEIGHBOUR_MM = 20.0  # a column probed only at the wall takes the lining of the nearest

FLOOR_ABOVE_DOME_MM = 6.0  # ... probed column this close, if its floor is this far above the dome

DOME_MIN_COLUMNS = 50  # fewer unlined floor columns than this: no dome fitted

DOME_QUANTILE = 0.15  # the dome is fitted as this quantile of the unlined floors

DOME_ITERATIONS = 30  # reweighted least-squares steps of that quantile fit

DOME_RESIDUAL_MM = 0.5  # residuals below this weigh as this (the fit's weights stay finite)

DOME_UNIT_MM = 100.0  # in-plane unit of the dome's polynomial (a well-conditioned fit)

FLOOR_OUTLINE_MM = 60.0  # outline of the lung from the slices this far above

FLOOR_RIM_MM = 40.0  # floors are lowered only this close to the edge of the lung's footprint


def fill_floor(
    mask: np.ndarray,
    spacing: tuple[float, ...],
    hu: np.ndarray,
    lined_hu: float,
    depth_mm: float,
    avoid: np.ndarray | None,
    wall_columns: bool = True,
) -> np.ndarray:
    """Lower the lung's floor (its lowest voxel in each z column) where a dense lesion lies on
    the diaphragm: a column whose lung just above the floor (FLOOR_PROBE_MM, past the
    partial-volume voxel) is denser than ``lined_hu`` (median) is lesion-lined, and so is a
    column probed only against the side walls whose floor lies FLOOR_ABOVE_DOME_MM above the
    dome, next to a lined one (FLOOR_NEIGHBOUR_MM); its floor is
    brought down to a dome (quadratic) fitted to the unlined floors, never below the
    lowest unlined floor of this lung and by at most ``depth_mm``; only within FLOOR_RIM_MM of
    the edge of the lung's footprint (the costophrenic recesses, not over the dome's top or the
    heart) and within the lung's outline in the slices up to FLOOR_OUTLINE_MM above (not into
    the chest wall). Not inside ``avoid``."""
    if depth_mm <= 0 or not mask.any() or spacing[0] > FLOOR_MAX_SLICE_MM:
        return mask  # (thick slices: the floor is too coarse to model)
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    if (zs[-1] - zs[0] + 1) * spacing[0] < FLOOR_MIN_HEIGHT_MM:
        return mask  # a few slices: no diaphragm to model
    # a column's floor: the bottom of its lowest run of FLOOR_RUN_MM of lung (a stray thin
    # sheet below it is not the floor)
    run = max(1, round(FLOOR_RUN_MM / spacing[0]))
    solid = mask.copy()
    for k in range(1, run):
        solid[:-k] &= mask[k:]
        solid[-k:] = False
    columns = solid.any(axis=0)
    floor = np.argmax(solid, axis=0)
    first = max(2, round(FLOOR_PROBE_MM[0] / spacing[0]))  # past the partial-volume voxel
    last = max(first + 1, round(FLOOR_PROBE_MM[1] / spacing[0]))
    probe_z = np.clip(floor[None] + np.arange(first, last)[:, None, None], 0, mask.shape[0] - 1)
    probe_hu = np.take_along_axis(hu, probe_z, axis=0).astype(np.float32)
    # lung away from its side walls (partial volume with the chest wall is not a lesion)
    interior = ndi.binary_erosion(mask, structure=SLICE_2D, iterations=FLOOR_WALL_PX)
    probe_in = np.take_along_axis(interior, probe_z, axis=0)
    del interior
    probe_hu[~probe_in] = -np.inf  # outside the lung: counts as aerated
    median = np.median(probe_hu, axis=0)
    lined = columns & (median > lined_hu)
    reliable = columns & ~lined
    if not lined.any() or not reliable.any():
        return mask
    # the diaphragm is a dome: a lined column's floor comes down to the dome fitted to the
    # unlined floors, never below the lowest unlined floor
    lowest = fit_dome(floor, reliable, columns, spacing)
    if lowest is None:
        return mask
    lowest = np.maximum(lowest, float(floor[reliable].min()))
    # a column probed only against the side walls (the lung above its floor is a thin rim
    # there, so it counted as aerated) whose floor lies well above the dome takes the lining
    # of the nearest probed column: a lesion-lined recess is lined to its edge
    if wall_columns:
        probed = columns & np.isfinite(median)
        wall = columns & ~probed & (floor - lowest > FLOOR_ABOVE_DOME_MM / spacing[0])
        if wall.any():
            dist, (iy, ix) = ndi.distance_transform_edt(
                ~probed, sampling=spacing[1:], return_indices=True
            )
            lined |= wall & lined[iy, ix] & (dist <= FLOOR_NEIGHBOUR_MM)
    # a floor far above the dome (by more than depth_mm) lies on something else: the heart
    lined &= floor - lowest <= depth_mm / spacing[0]
    new_floor = np.where(lined, np.ceil(lowest), floor).astype(np.int32)
    # only near the footprint's edge (costophrenic recesses), not over the dome or the heart
    hull = convex_hull(columns) | columns
    rim = ndi.distance_transform_edt(np.pad(hull, 1), sampling=spacing[1:])[1:-1, 1:-1]
    lined &= rim <= FLOOR_RIM_MM
    index = np.arange(mask.shape[0])[:, None, None]
    fill = (index >= new_floor[None]) & (index < floor[None]) & lined[None]
    if avoid is not None:
        fill &= ~avoid
    # within the outline of the lung in this slice and the few above it (not the chest wall)
    window = max(1, round(FLOOR_OUTLINE_MM / spacing[0]))
    for z in np.flatnonzero(fill.any(axis=(1, 2))):
        outline = mask[z : z + window + 1].any(axis=0)
        fill[z] &= convex_hull(outline) if outline.any() else False
    return mask | fill


def fit_dome(
    floor: np.ndarray, reliable: np.ndarray, lined: np.ndarray, spacing: tuple[float, ...]
) -> np.ndarray | None:
    """At the ``lined`` columns, a quadratic surface fitted to the ``reliable`` columns' floors
    as their DOME_QUANTILE quantile (z index; -inf elsewhere); None when there are too few
    floors to fit. A quantile, not a mean: floors above the diaphragm (the heart, the
    mediastinum, undetected lesions) would tilt a least-squares fit, which then extrapolates
    far below the true dome where lesions hide the floor (measured: a 45 % involved lung's
    posterior floor fill put 0.9 % of the lung volume into the diaphragm, 0.5 % with this)."""
    y, x = np.nonzero(reliable)
    if y.size < DOME_MIN_COLUMNS:
        return None
    ym, xm = y * spacing[1], x * spacing[2]
    centre = (ym.mean(), xm.mean())

    def design(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        v, u = (yy - centre[0]) / DOME_UNIT_MM, (xx - centre[1]) / DOME_UNIT_MM
        return np.stack([np.ones_like(v), v, u, v * v, v * u, u * u], axis=1)

    a = design(ym, xm)
    z = floor[reliable] * spacing[0]
    # quantile regression (iteratively reweighted least squares): the diaphragm is the lowest
    # smooth dome under the lung; the heart, the mediastinum and undetected lesions lie above
    coef, *_ = np.linalg.lstsq(a, z, rcond=None)
    for _ in range(DOME_ITERATIONS):
        r = z - a @ coef
        w = np.where(r > 0, DOME_QUANTILE, 1 - DOME_QUANTILE) / np.maximum(
            np.abs(r), DOME_RESIDUAL_MM
        )
        root = np.sqrt(w)
        coef, *_ = np.linalg.lstsq(a * root[:, None], z * root, rcond=None)
    out = np.full(floor.shape, -np.inf)
    ly, lx = np.nonzero(lined)
    out[ly, lx] = design(ly * spacing[1], lx * spacing[2]) @ coef / spacing[0]
    return out
