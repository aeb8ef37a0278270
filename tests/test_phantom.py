"""Synthetic phantom: volumes hit their targets, labels are consistent, HU look like chest CT."""

from __future__ import annotations

import numpy as np
import pytest

from serialct.constants import LESION_CONSOLIDATION, LESION_GGO, LOBE_LABELS, LUNG_LEFT, LUNG_RIGHT
from serialct.phantom import (
    DEFAULT_SHAPE,
    EXTENT_MM,
    HU_CONSOLIDATION_RANGE,
    HU_GGO_RANGE,
    HU_PARENCHYMA,
    Phantom,
    draw_phantom,
    spacing_for_shape,
)

SMALL = (32, 96, 96)


@pytest.fixture(scope="module")
def sick() -> Phantom:
    return draw_phantom(np.random.default_rng(7), DEFAULT_SHAPE, 12.0, 0.25)


def test_spacing_keeps_physical_extent() -> None:
    assert spacing_for_shape((300, 512, 512)) == pytest.approx((320 / 300, 360 / 512, 360 / 512))
    for shape in (DEFAULT_SHAPE, (300, 512, 512)):
        extent = np.array(spacing_for_shape(shape)) * shape
        assert extent == pytest.approx(EXTENT_MM)


@pytest.mark.parametrize("percent", [0.5, 3.0, 12.0, 45.0])
def test_lesion_percent_hits_target(percent: float) -> None:
    ph = draw_phantom(np.random.default_rng(int(percent * 10)), SMALL, percent, 0.2)
    vol = ph.volumes_cm3()
    assert 100 * vol["lesion"] / vol["lung"] == pytest.approx(percent, rel=0.05)
    assert vol["consolidation"] / vol["lesion"] == pytest.approx(0.2, abs=0.02)
    assert vol["ggo"] + vol["consolidation"] == pytest.approx(vol["lesion"])


def test_volumes_and_dtypes(sick: Phantom) -> None:
    assert sick.hu.dtype == np.int16 and sick.hu.shape == DEFAULT_SHAPE
    for arr in (sick.lung, sick.lobes, sick.lesion):
        assert arr.dtype == np.uint8 and arr.shape == DEFAULT_SHAPE
    vol = sick.volumes_cm3()
    assert 3000 < vol["lung"] < 5000
    voxel_cm3 = np.prod(sick.spacing) / 1000
    assert vol["lesion"] == pytest.approx(np.count_nonzero(sick.lesion) * voxel_cm3)


def test_lung_scale_shrinks_lungs() -> None:
    big = draw_phantom(np.random.default_rng(3), SMALL, lung_scale=1.0).volumes_cm3()["lung"]
    small = draw_phantom(np.random.default_rng(3), SMALL, lung_scale=0.8).volumes_cm3()["lung"]
    assert small / big == pytest.approx(0.8, abs=0.06)


def test_labels_consistent(sick: Phantom) -> None:
    lung = sick.lung > 0
    assert np.all(sick.lesion[~lung] == 0)
    assert np.array_equal(sick.lobes > 0, lung)
    right = (sick.lobes >= LOBE_LABELS["rul"]) & (sick.lobes <= LOBE_LABELS["rll"])
    left = sick.lobes >= LOBE_LABELS["lul"]
    assert np.all(sick.lung[right] == LUNG_RIGHT) and np.all(sick.lung[left] == LUNG_LEFT)
    # patient's right = lower x = low column index
    cols = (
        np.nonzero(sick.lung == LUNG_RIGHT)[2].mean(),
        np.nonzero(sick.lung == LUNG_LEFT)[2].mean(),
    )
    assert cols[0] < DEFAULT_SHAPE[2] / 2 < cols[1]
    assert set(np.unique(sick.lobes)) == {0, 1, 2, 3, 4, 5}
    lobe_pct = sick.lobe_lesion_percent()
    assert list(lobe_pct) == ["rul", "rml", "rll", "lul", "lll"]
    assert sum(p > 0 for p in lobe_pct.values()) >= 4  # 12 % burden spreads over many lobes


def test_lobe_lesion_percent_by_hand(sick: Phantom) -> None:
    lab = LOBE_LABELS["rll"]
    expected = (
        100 * np.count_nonzero(sick.lesion[sick.lobes == lab]) / np.count_nonzero(sick.lobes == lab)
    )
    assert sick.lobe_lesion_percent()["rll"] == pytest.approx(expected)


def test_lesion_hu_ranges(sick: Phantom) -> None:
    ggo = np.median(sick.hu[sick.lesion == LESION_GGO])
    cons = np.median(sick.hu[sick.lesion == LESION_CONSOLIDATION])
    assert HU_GGO_RANGE[0] < ggo < HU_GGO_RANGE[1]
    assert HU_CONSOLIDATION_RANGE[0] - 50 < cons < HU_CONSOLIDATION_RANGE[1]
    normal = np.median(sick.hu[(sick.lung > 0) & (sick.lesion == 0)])
    assert HU_PARENCHYMA - 30 < normal < HU_PARENCHYMA + 60
    assert sick.hu[0, 0, 0] < -900  # air outside the body
    assert sick.hu.max() > 400  # bone


def test_lesions_are_subpleural(sick: Phantom) -> None:
    from scipy import ndimage

    lesion = sick.lesion > 0
    depth = ndimage.distance_transform_edt(sick.lung > 0, sampling=sick.spacing)
    # lesions lie closer to the pleura than the lung as a whole
    assert np.median(depth[lesion]) < np.median(depth[sick.lung > 0])


def test_airway_is_air_not_lung(sick: Phantom) -> None:
    top = sick.hu[-1]
    cy, cx = np.array(top.shape) // 2
    window = top[cy - 20 : cy + 20, cx - 5 : cx + 5]
    assert window.min() < -900  # the trachea at the top slice
    assert np.all(sick.lung[-1] == 0)


def test_normal_phantom_has_no_lesion() -> None:
    ph = draw_phantom(np.random.default_rng(1), SMALL)
    assert not ph.lesion.any()
    assert ph.volumes_cm3()["lesion"] == 0.0
    assert all(v == 0.0 for v in ph.lobe_lesion_percent().values())


def test_deterministic() -> None:
    a = draw_phantom(np.random.default_rng(5), SMALL, 4.0)
    b = draw_phantom(np.random.default_rng(5), SMALL, 4.0)
    c = draw_phantom(np.random.default_rng(6), SMALL, 4.0)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.lesion, b.lesion)
    assert not np.array_equal(a.hu, c.hu)


def test_bad_percent_raises() -> None:
    with pytest.raises(ValueError, match="lesion_percent"):
        draw_phantom(np.random.default_rng(0), SMALL, lesion_percent=120.0)


def _fissure_contrast(shape: tuple[int, int, int]) -> float:
    """Mean HU of lesion-free lung at the boundary between lower and upper lobes minus that of
    lesion-free lung away from any lobe boundary, on a normal phantom of ``shape``."""
    from scipy import ndimage

    ph = draw_phantom(np.random.default_rng(0), shape, lesion_percent=0.0)
    lung = ph.lung > 0
    edge = np.zeros(ph.lobes.shape, dtype=bool)
    edge[1:] = (ph.lobes[1:] != ph.lobes[:-1]) & lung[1:] & lung[:-1]  # the lobe changes in z
    near = ndimage.binary_dilation(edge, iterations=3)
    hu = ph.hu.astype(float)
    return float(hu[edge].mean() - hu[lung & ~near].mean())


def test_fissures_visible_only_on_thin_section_grids() -> None:
    """The fissures are a bright line on a sub-1.5 mm grid (as on thin-section CT) and absent
    on a coarse one (the demo's and tests' phantoms are unchanged by them)."""
    assert _fissure_contrast((216, 256, 256)) > 80.0  # 1.48 x 1.41 x 1.41 mm voxels; 121 HU
    assert abs(_fissure_contrast((48, 128, 128))) < 30.0  # -9 HU
