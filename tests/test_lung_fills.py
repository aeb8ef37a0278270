"""serialct.lung.fills: what morphology may put back into a lung, on hand-made slices.

A slab of identical slices: a right and a left lung (aerated, -850 HU) either side of a
mediastinum; candidate fills are placed by hand against the chest wall, against the
mediastinum, and against the mediastinum inside a ground-glass halo."""

from __future__ import annotations

import numpy as np
import pytest

from serialct.lung.fills import (
    BiteRules,
    between_lungs,
    costal,
    fill_slice_holes,
    fill_z_gaps,
    keep_lesion_fills,
)

SPACING = (2.0, 2.0, 2.0)
SHAPE = (5, 60, 100)  # z, y, x: 2 mm voxels
RULES = BiteRules(depth_mm=15, lined_depth_mm=60, lined_hu=-850 + 120, aerated_hu=-300)


def _scene():
    y, x = np.mgrid[0 : SHAPE[1], 0 : SHAPE[2]]
    right = ((y - 30) / 22) ** 2 + ((x - 25) / 18) ** 2 <= 1
    left = ((y - 30) / 22) ** 2 + ((x - 75) / 18) ** 2 <= 1
    hu = np.full(SHAPE, 40.0)
    lungs = np.broadcast_to(right | left, SHAPE)
    hu[lungs] = -850.0
    return hu, np.broadcast_to(right, SHAPE).copy(), np.broadcast_to(left, SHAPE).copy()


def _blob(cy: int, cx: int, r: int = 4) -> np.ndarray:
    y, x = np.mgrid[0 : SHAPE[1], 0 : SHAPE[2]]
    return np.broadcast_to((y - cy) ** 2 + (x - cx) ** 2 <= r * r, SHAPE).copy()


def test_chest_wall_fill_kept_mediastinal_fill_refused() -> None:
    hu, right, left = _scene()
    wall = _blob(30, 7) & ~right  # the right lung's lateral edge (x 7), outside the lung
    mediastinum = _blob(30, 43) & ~right  # its medial edge, towards the left lung
    right &= ~_blob(30, 7) & ~_blob(30, 43)  # the lung the threshold saw: both bitten out
    joint = between_lungs(right, left, SPACING)
    kept = keep_lesion_fills(wall | mediastinum, right, hu, SPACING, RULES, joint)
    assert kept[wall].all()
    assert not kept[mediastinum].any()


def test_mediastinal_fill_in_a_ground_glass_halo_is_kept() -> None:
    hu, right, left = _scene()
    lesion = _blob(30, 43)
    halo = _blob(30, 43, r=9) & right & ~lesion
    hu[halo] = -550.0  # ground glass around the consolidation
    right &= ~lesion
    joint = between_lungs(right, left, SPACING)
    kept = keep_lesion_fills(lesion & ~right, right, hu, SPACING, RULES, joint)
    assert kept[lesion & ~right].all()


def test_costal_uses_the_other_lung_from_nearby_slices() -> None:
    """A slice without the other lung (a lung base below the other's dome) still knows where
    the mediastinum is: the joint hull takes the other lung from the slices around it."""
    _, right, left = _scene()
    left[2:] = False  # the left lung only in slices 0-1 (4 mm away)
    joint = between_lungs(right, left, SPACING)
    fill = np.zeros(SHAPE, dtype=np.int32)
    fill[3][_blob(30, 46)[3] & ~right[3]] = 1  # medial, in slice 3
    assert not costal(fill, right, joint)[0]


def test_fill_z_gaps_bridges_short_gaps_only() -> None:
    mask = np.zeros((20, 4, 4), dtype=bool)
    mask[[0, 4, 15]] = True  # a 3-slice (6 mm) gap and a 10-slice (20 mm) gap
    filled = fill_z_gaps(mask, SPACING, gap_mm=10.0, avoid=None)
    assert filled[1:4].all() and not filled[5:15].any()


def test_fill_slice_holes_fills_vessels_and_enclosed_holes_not_the_dome() -> None:
    mask = np.zeros((3, 40, 40), dtype=bool)
    mask[:, 5:35, 5:35] = True
    mask[:, 18:21, 18:21] = False  # a vessel, 6 mm across
    filled = fill_slice_holes(mask, SPACING, radius_mm=5.0)
    assert filled[:, 18:21, 18:21].all()
    # a 40 mm hole ringed by lung in slice 1 that opens sideways in slice 2 (the diaphragm's
    # dome under the lung base, the mediastinum at its side) stays out; covered, it is filled
    dome = np.zeros((4, 40, 40), dtype=bool)
    dome[1:3, 5:35, 5:35] = True
    dome[1:3, 10:30, 10:30] = False
    dome[2, 18:22, 30:35] = False  # the ring opens sideways in slice 2
    dome[3, 5:35, 5:35] = True  # lung over the top
    assert not fill_slice_holes(dome, SPACING, radius_mm=5.0)[1, 20, 20]
    dome[2, 18:22, 30:35] = True
    assert fill_slice_holes(dome, SPACING, radius_mm=5.0)[1, 20, 20]


@pytest.mark.parametrize("side", ["right", "left"])
def test_costal_is_symmetric(side: str) -> None:
    hu, right, left = _scene()
    lung, other = (right, left) if side == "right" else (left, right)
    wall_x, med_x = (7, 43) if side == "right" else (92, 57)
    fills = np.zeros(SHAPE, dtype=np.int32)
    fills[(_blob(30, wall_x) & ~lung)] = 1
    fills[(_blob(30, med_x) & ~lung)] = 2
    lung_seen = lung & (fills == 0)
    verdict = costal(fills, lung_seen, between_lungs(lung_seen, other, SPACING))
    assert verdict.tolist() == [True, False]
