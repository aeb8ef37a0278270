"""The two lungs: the largest candidate components, a merged pair split in two, and which side
each is."""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi

from serialct.constants import LUNG_LEFT, LUNG_RIGHT, MM3_PER_CM3
from serialct.lung.morphology import (
    distance_mm,
)

log = logging.getLogger("serialct")


SECOND_LUNG_FRACTION = 0.1  # a second component smaller than this x the largest is not a lung

SPLIT_EROSIONS_MM = (*range(1, 10), *range(10, 31, 2))  # tried in turn on touching lungs


def lung_parts(
    candidates: np.ndarray, body: np.ndarray, spacing: tuple[float, ...]
) -> list[np.ndarray]:
    """One or two lung masks: the two largest components, a merged pair split in two."""
    comps, n = ndi.label(candidates)
    if n == 0:
        return []
    sizes = np.bincount(comps.ravel())
    sizes[0] = 0
    order = np.argsort(sizes)[::-1]
    cm3 = float(np.prod(spacing)) / MM3_PER_CM3
    log.info(
        "lung mask: %d candidate components, largest %s cm3",
        n,
        ", ".join(f"{sizes[i] * cm3:.1f}" for i in order[: min(n, 3)]),
    )
    largest = comps == order[0]
    if _straddles_midline(largest, body):  # both lungs in one piece
        split = _split(largest, body, spacing)
        if split is not None:
            return split
    if n >= 2 and sizes[order[1]] >= SECOND_LUNG_FRACTION * sizes[order[0]]:
        return [largest, comps == order[1]]
    log.warning("lung mask: only one lung found")
    return [largest]


def body_centre_x(body: np.ndarray) -> float:
    """Middle of the body's x range (array index)."""
    return float(np.mean(np.nonzero(body.any(axis=(0, 1)))[0]))


def _straddles_midline(mask: np.ndarray, body: np.ndarray) -> bool:
    """Whether a sizeable share of ``mask`` lies on each side of the body's middle."""
    columns = np.count_nonzero(mask, axis=(0, 1))
    share = columns[: int(round(body_centre_x(body)))].sum() / max(columns.sum(), 1)
    return min(share, 1.0 - share) >= SECOND_LUNG_FRACTION


def _split(
    mask: np.ndarray, body: np.ndarray, spacing: tuple[float, ...]
) -> list[np.ndarray] | None:
    """Split touching lungs: erode until two large parts on either side of the body's centre,
    then give every voxel to the nearer part. None when no such split exists."""
    box = ndi.find_objects(mask.astype(np.uint8))[0]
    crop = mask[box]
    # depth inside the mask, in mm; not from the volume's first/last slice (thin volumes)
    depth = distance_mm(~np.pad(crop, [(0, 0), (1, 1), (1, 1)]), spacing)[:, 1:-1, 1:-1]
    centre_x = body_centre_x(body) - box[2].start
    for erosion in SPLIT_EROSIONS_MM:
        comps, n = ndi.label(depth > erosion)
        if n < 2:
            if n == 0:
                return None
            continue
        sizes = np.bincount(comps.ravel())
        sizes[0] = 0
        first, second = np.argsort(sizes)[::-1][:2]
        if sizes[second] < SECOND_LUNG_FRACTION * sizes[first]:
            continue
        xs = [ndi.center_of_mass(comps == i)[2] for i in (first, second)]
        if (xs[0] - centre_x) * (xs[1] - centre_x) >= 0:
            continue
        near_first = distance_mm(comps == first, spacing) <= distance_mm(comps == second, spacing)
        parts = []
        for part in (crop & near_first, crop & ~near_first):
            full = np.zeros(mask.shape, dtype=bool)
            full[box] = part
            parts.append(full)
        log.info("lung mask: touching lungs split after a %.0f mm erosion", erosion)
        return parts
    return None


def assign_sides(
    spacing: tuple[float, ...], parts: list[np.ndarray], body: np.ndarray
) -> list[tuple[np.ndarray, int]]:
    """Pair each part with its side. The work arrays are LPS-oriented, so the patient's right
    (lower physical x) is the lower x index."""
    if not parts:
        return []
    xs = [ndi.center_of_mass(part)[2] for part in parts]
    if len(parts) == 1:
        side = LUNG_RIGHT if xs[0] < ndi.center_of_mass(body)[2] else LUNG_LEFT
        return [(parts[0], side)]
    right = int(np.argmin(xs))
    return [(parts[right], LUNG_RIGHT), (parts[1 - right], LUNG_LEFT)]
