"""serialct.lung.morphology: convex hulls of slices, distances and closing in mm, and what lies
under the lung, on hand-made arrays (work orientation: axis 0 inferior -> superior)."""

from __future__ import annotations

import numpy as np
import pytest

from serialct.lung.morphology import close_ball, convex_hull, distance_mm, under_lung


def test_convex_hull_fills_the_notch_of_an_l():
    """An L (a vertical bar, columns 1-2, and a foot, rows 7-8): its hull is bounded by the
    rows and columns 1-8 and the line from (1, 2) to (7, 8), x <= y + 1."""
    mask = np.zeros((11, 11), dtype=bool)
    mask[1:9, 1:3] = True
    mask[7:9, 1:9] = True
    y, x = np.mgrid[0:11, 0:11]
    expected = (y >= 1) & (y <= 8) & (x >= 1) & (x <= 8) & (x <= y + 1)
    hull = convex_hull(mask)
    assert hull.shape == mask.shape
    assert np.array_equal(hull, expected)
    assert hull[5, 4] and not mask[5, 4]  # the notch
    assert not hull[3, 6]  # beyond the diagonal


def test_convex_hull_of_a_line_is_empty():
    mask = np.zeros((8, 8), dtype=bool)
    mask[3, 1:7] = True
    assert not convex_hull(mask).any()


def test_distance_mm_uses_the_spacing():
    spacing = (2.0, 1.0, 0.5)  # (z, y, x) mm
    mask = np.zeros((9, 9, 9), dtype=bool)
    mask[4, 4, 4] = True
    z, y, x = np.indices(mask.shape)
    expected = np.sqrt(((z - 4) * 2.0) ** 2 + ((y - 4) * 1.0) ** 2 + ((x - 4) * 0.5) ** 2)
    dist = distance_mm(mask, spacing)
    assert dist[4, 4, 4] == 0
    assert dist[4, 4, 8] == pytest.approx(2.0)  # 4 voxels of 0.5 mm
    assert dist[8, 4, 4] == pytest.approx(8.0)  # 4 voxels of 2 mm
    assert np.allclose(dist, expected, atol=1e-4)


SPACING = (2.0, 1.0, 3.0)  # (z, y, x) mm
RADIUS_MM = 5.0


def _two_blocks(axis: int, gap: int) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Two blocks facing each other across ``gap`` voxels along ``axis`` (1 or 2), and the
    gap's middle, away from the blocks' edges."""
    shape = [20, 40, 40]
    mask = np.zeros(shape, dtype=bool)
    block = [slice(4, 16), slice(6, 34), slice(6, 34)]  # 24 mm x 28 mm x 84 mm across
    first, second = list(block), list(block)
    first[axis] = slice(2, 10)
    second[axis] = slice(10 + gap, 18 + gap)
    mask[tuple(first)] = True
    mask[tuple(second)] = True
    middle = [slice(8, 12), slice(18, 22), slice(18, 22)]
    middle[axis] = slice(10, 10 + gap)
    return mask, tuple(middle)


@pytest.mark.parametrize(
    ("axis", "gap", "bridged"),
    [
        (2, 2, True),  # 3 mm voxels: blocks 9 mm apart (centre to centre) < 2r = 10 mm
        (2, 3, False),  # 12 mm apart
        (1, 8, True),  # 1 mm voxels: 9 mm apart
        (1, 11, False),  # 12 mm apart
    ],
)
def test_close_ball_bridges_gaps_narrower_than_its_diameter_in_mm(axis, gap, bridged):
    mask, middle = _two_blocks(axis, gap)
    closed = close_ball(mask, SPACING, RADIUS_MM)
    assert closed.dtype == bool and closed.shape == mask.shape
    assert not (mask & ~closed).any()  # a closing only adds
    assert closed[middle].all() == bridged
    assert closed[middle].any() == bridged


def test_close_ball_adds_nothing_to_a_convex_block_or_with_radius_zero():
    mask, _ = _two_blocks(2, 2)
    assert np.array_equal(close_ball(mask, SPACING, 0.0), mask)
    one = np.zeros_like(mask)
    one[4:16, 6:34, 2:10] = True
    assert np.array_equal(close_ball(one, SPACING, RADIUS_MM), one)


def test_under_lung_marks_only_the_columns_below_the_lung():
    mask = np.zeros((6, 3, 3), dtype=bool)
    mask[3:5, 1, 1] = True  # lung from slice 3 up
    mask[2, 0, 0] = True
    mask[[1, 4], 0, 2] = True  # two runs: under the lower one only
    mask[0:3, 2, 2] = True  # lung down to the first slice: nothing under it
    expected = np.zeros_like(mask)
    expected[0:3, 1, 1] = True
    expected[0:2, 0, 0] = True
    expected[0, 0, 2] = True
    assert np.array_equal(under_lung(mask), expected)
