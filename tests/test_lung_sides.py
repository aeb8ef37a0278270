"""serialct.lung.sides: the two lungs among the candidates, touching lungs split, and which side
each is; on hand-made boxes (work orientation: x index increases towards the patient's left),
and touching lungs on the chest phantom."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from lung_phantom import LUNG_SEMI, make_chest

from serialct.config import defaults
from serialct.constants import LUNG_LEFT, LUNG_RIGHT
from serialct.lung import segment_lungs
from serialct.lung.sides import assign_sides, body_centre_x, lung_parts

SPACING = (2.0, 2.0, 2.0)  # (z, y, x) mm
SHAPE = (12, 30, 40)


@pytest.fixture(scope="module")
def lung_cfg() -> dict:
    return defaults()["lung"]


def _boxes(*xs: tuple[int, int]) -> list[np.ndarray]:
    out = []
    for x0, x1 in xs:
        box = np.zeros(SHAPE, dtype=bool)
        box[2:10, 5:25, x0:x1] = True
        out.append(box)
    return out


def _body(candidates: np.ndarray) -> np.ndarray:
    """Soft tissue around the lungs: x 1-38 (middle 19.5), the lungs its holes."""
    body = np.zeros(SHAPE, dtype=bool)
    body[:, 1:29, 1:39] = True
    return body & ~candidates


def test_body_centre_x():
    assert body_centre_x(_body(np.zeros(SHAPE, dtype=bool))) == pytest.approx(19.5)


def test_two_lungs_are_two_parts():
    right, left = _boxes((4, 16), (23, 36))
    parts = lung_parts(right | left, _body(right | left), SPACING)
    assert len(parts) == 2
    first = 0 if parts[0][right].any() else 1
    assert np.array_equal(parts[first], right)
    assert np.array_equal(parts[1 - first], left)


def test_lungs_joined_across_the_midline_are_split():
    """Two lungs joined by a bridge one voxel thick across the body's middle: one component,
    split in two, each lung whole in its own part and the bridge shared between them."""
    right, left = _boxes((4, 17), (22, 36))
    bridge = np.zeros(SHAPE, dtype=bool)
    bridge[6, 15, 17:22] = True
    candidates = right | left | bridge
    parts = lung_parts(candidates, _body(candidates), SPACING)
    assert len(parts) == 2
    assert not (parts[0] & parts[1]).any()
    assert np.array_equal(parts[0] | parts[1], candidates)
    first = 0 if parts[0][right].any() else 1
    assert parts[first][right].all() and parts[1 - first][left].all()
    assert parts[first][bridge].any() and parts[1 - first][bridge].any()


def test_one_lung_is_one_part():
    (right,) = _boxes((4, 16))
    speck = np.zeros(SHAPE, dtype=bool)
    speck[5, 15, 30] = True  # far smaller than a lung: not the other one
    for candidates in (right, right | speck):
        parts = lung_parts(candidates, _body(candidates), SPACING)
        assert len(parts) == 1
        assert np.array_equal(parts[0], right)


def test_no_candidates_no_parts():
    empty = np.zeros(SHAPE, dtype=bool)
    assert lung_parts(empty, _body(empty), SPACING) == []


def test_assign_sides_right_is_the_lower_x_index():
    right, left = _boxes((4, 16), (23, 36))
    body = _body(right | left)
    for parts in ([right, left], [left, right]):
        sides = assign_sides(SPACING, parts, body)
        assert len(sides) == 2
        by_side = {side: part for part, side in sides}
        assert set(by_side) == {LUNG_RIGHT, LUNG_LEFT}
        assert by_side[LUNG_RIGHT] is right and by_side[LUNG_LEFT] is left


def test_assign_sides_one_lung_by_the_body_centre():
    right, left = _boxes((4, 16), (23, 36))
    body = _body(right | left)
    for part, expected in ((right, LUNG_RIGHT), (left, LUNG_LEFT)):
        ((out, side),) = assign_sides(SPACING, [part], body)
        assert out is part and side == expected
    assert assign_sides(SPACING, [], body) == []


def test_touching_lungs_are_split(lung_cfg):
    chest = make_chest(centre_x=LUNG_SEMI[0] - 1.5, seed=1)
    contact = np.count_nonzero(np.diff(chest.lung.astype(np.int8), axis=2) == 1)  # R->L faces
    assert contact > 20  # the phantom's lungs do touch
    mask = sitk.GetArrayFromImage(segment_lungs(chest.image, lung_cfg))
    for side in (LUNG_RIGHT, LUNG_LEFT):
        overlap = np.count_nonzero((mask == side) & (chest.lung == side))
        assert overlap / np.count_nonzero(chest.lung == side) > 0.97
