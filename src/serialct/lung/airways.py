"""Trachea and main bronchi, grown slice by slice from a seed in the top slices."""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi

from serialct.lung.morphology import (
    SLICE_2D,
)

log = logging.getLogger("serialct")


# trachea seed: a round air component near the body's centre in the top slices
TRACHEA_SEARCH_MM = 40.0

TRACHEA_MIN_AREA_MM2 = 40.0  # ~7 mm diameter

TRACHEA_MAX_AREA_MM2 = 800.0  # ~32 mm diameter

TRACHEA_MAX_CENTRE_OFFSET = 0.2  # fraction of the body's width

TRACHEA_MIN_FILL = 0.5  # component area / bounding-box area (roundness)

AIRWAY_BRANCH_MAX_AREA_MM2 = 800.0  # a grown airway component larger than this is lung: stop

# main bronchi: grown this far below the carina. The left main bronchus is 40-50 mm long, the
# right 20-25 mm (Gray's Anatomy, 41st ed., ch. 54); past the right one's end the growth follows
# its lobar bronchi, a few cm3 of airway that lungmask's convention would keep.
AIRWAY_BELOW_CARINA_MM = 50.0

# the carina: the first slice down the trachea where it has two branches at least this large
# (main bronchi are 10-16 mm across, ~80-200 mm2; the oesophagus' air, often touching the
# trachea's wall in a slice, is a few mm2 to tens of mm2)
BRONCHUS_MIN_AREA_MM2 = 40.0

# a soft-tissue kernel blurs the trachea's lumen to -900..-980 HU, so few of its pixels are below
# the default airway_hu (measured: Lung_Dx-A0001's kernel B series in ../shared/data/real)
SOFT_KERNEL_AIRWAY_HU = 60.0
TRACHEA_MIN_LENGTH_MM = 20.0  # ... and then the seed must go on as a tube this far down

AIRWAY_STEP_MM = 3.0  # a branch may shift this much in-plane from one slice to the next

AIRWAY_MARGIN_MM = 3.0  # removed around the airway lumen (its partial-volume wall)

AIRWAY_ZONE_MM = 5.0  # no gap along z is filled this close to the airway


def find_airways(
    hu: np.ndarray,
    candidates: np.ndarray,
    body: np.ndarray,
    spacing: tuple[float, ...],
    airway_hu: float,
) -> np.ndarray:
    """Trachea and main bronchi: grown slice by slice from a seed in the top slices, below
    ``airway_hu`` or, when no seed is found there, below ``airway_hu`` + SOFT_KERNEL_AIRWAY_HU
    (a soft-tissue kernel blurs a narrow lumen)."""
    out = np.zeros(hu.shape, dtype=bool)
    for limit in (airway_hu, airway_hu + SOFT_KERNEL_AIRWAY_HU):
        air = candidates & (hu < limit)
        seed_z, seed = _trachea_seed(air, body, spacing)
        if seed is not None and (limit == airway_hu or _is_tube(air, seed_z, seed, spacing)):
            break
        seed = None
    if seed is None:
        log.info("lung mask: no trachea found in the top %.0f mm", TRACHEA_SEARCH_MM)
        return out
    if limit != airway_hu:
        log.info("lung mask: trachea found below %.0f HU (not below airway_hu)", limit)
    out[seed_z] = seed
    pixel_mm2 = spacing[1] * spacing[2]
    step = np.ones((3, 3), dtype=bool)
    n_step = max(1, round(AIRWAY_STEP_MM / min(spacing[1:])))
    below_carina = max(1, round(AIRWAY_BELOW_CARINA_MM / spacing[0]))
    for direction in (1, -1):  # up to the top of the volume, then down through the carina
        previous, z, stop_z = seed, seed_z + direction, None
        while 0 <= z < hu.shape[0] and (stop_z is None or z != stop_z):
            comps, _ = ndi.label(air[z])
            reach = ndi.binary_dilation(previous, structure=step, iterations=n_step)
            touched = np.unique(comps[reach & (comps > 0)])
            areas = ndi.sum_labels(np.ones_like(comps), comps, touched) * pixel_mm2
            keep = touched[areas <= AIRWAY_BRANCH_MAX_AREA_MM2]
            if keep.size == 0:
                break
            branches = np.count_nonzero(
                areas[areas <= AIRWAY_BRANCH_MAX_AREA_MM2] >= BRONCHUS_MIN_AREA_MM2
            )
            if direction < 0 and branches >= 2 and stop_z is None:
                stop_z = z - below_carina
                log.info("lung mask: carina at slice %d", z)
            previous = np.isin(comps, keep)
            out[z] = previous
            z += direction
    margin = max(1, round(AIRWAY_MARGIN_MM / min(spacing[1:])))
    out = ndi.binary_dilation(out, structure=SLICE_2D, iterations=margin) & candidates
    log.info(
        "lung mask: trachea seeded at slice %d, airway in %d slices",
        seed_z,
        int(np.count_nonzero(out.any(axis=(1, 2)))),
    )
    return out


def _is_tube(air: np.ndarray, z: int, seed: np.ndarray, spacing: tuple[float, ...]) -> bool:
    """Whether the seed goes on down as one air component of a trachea's size for
    TRACHEA_MIN_LENGTH_MM (not a pocket of aerated lung, as at a lung base)."""
    pixel_mm2 = spacing[1] * spacing[2]
    n_step = max(1, round(AIRWAY_STEP_MM / min(spacing[1:])))
    previous = seed
    for below in range(1, max(1, round(TRACHEA_MIN_LENGTH_MM / spacing[0])) + 1):
        if z - below < 0:
            return False
        comps, _ = ndi.label(air[z - below])
        reach = ndi.binary_dilation(previous, iterations=n_step)
        touched = np.unique(comps[reach & (comps > 0)])
        if touched.size != 1:
            return False
        previous = comps == touched[0]
        if (
            not TRACHEA_MIN_AREA_MM2
            <= np.count_nonzero(previous) * pixel_mm2
            <= TRACHEA_MAX_AREA_MM2
        ):
            return False
    return True


def _trachea_seed(
    air: np.ndarray, body: np.ndarray, spacing: tuple[float, ...]
) -> tuple[int, np.ndarray | None]:
    """The most central small round air component in the top slices, or None."""
    occupied = np.flatnonzero(air.any(axis=(1, 2)))
    if occupied.size == 0:
        return 0, None
    top = int(occupied[-1])
    n_search = max(1, round(TRACHEA_SEARCH_MM / spacing[0]))
    pixel_mm2 = spacing[1] * spacing[2]
    for z in range(top, max(top - n_search, -1), -1):
        body_x = np.flatnonzero(body[z].any(axis=0))
        if body_x.size == 0:
            continue
        centre, width = 0.5 * (body_x[0] + body_x[-1]), float(body_x[-1] - body_x[0] + 1)
        comps, n = ndi.label(air[z])
        best, best_offset = 0, np.inf
        for i, box in enumerate(ndi.find_objects(comps), start=1):
            area = np.count_nonzero(comps[box] == i)
            fill = area / ((box[0].stop - box[0].start) * (box[1].stop - box[1].start))
            offset = abs(0.5 * (box[1].start + box[1].stop - 1) - centre) / width
            if (
                TRACHEA_MIN_AREA_MM2 <= area * pixel_mm2 <= TRACHEA_MAX_AREA_MM2
                and fill >= TRACHEA_MIN_FILL
                and offset <= TRACHEA_MAX_CENTRE_OFFSET
                and offset < best_offset
            ):
                best, best_offset = i, offset
        if best:
            return z, comps == best
    return 0, None
