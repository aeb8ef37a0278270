"""GGO / consolidation split by HU, including the [min, max) boundaries, and the one meaning of
a lesion voxel outside both ranges on the volume path and on 2D slices (issue 18 point 5)."""

from __future__ import annotations

import numpy as np
import pytest

from serialct.config import defaults
from serialct.constants import LESION_CONSOLIDATION, LESION_GGO, LESION_OTHER
from serialct.lesion.density import split_by_density
from serialct.lesion.slices import labels_from_probability

HU_CFG = {"ggo": [-750, -300], "consolidation": [-300, 150]}


def test_boundaries() -> None:
    hu = np.array([-1000, -751, -750, -500, -301, -300, 0, 149, 150, 400, -500])
    mask = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0], dtype=np.uint8)
    g, c = LESION_GGO, LESION_CONSOLIDATION
    # outside both ranges: the nearer kind (below the GGO range GGO, above consolidation)
    expected = [g, g, g, g, g, c, c, c, c, c, 0]
    out = split_by_density(hu, mask, HU_CFG)
    assert out.dtype == np.uint8
    assert out.tolist() == expected


def test_uses_config_ranges_and_3d() -> None:
    cfg = defaults()["hu"]
    hu = np.full((2, 3, 4), -600, dtype=np.int16)
    hu[1] = 30
    mask = np.zeros(hu.shape, dtype=bool)
    mask[:, 1:, 1:] = True
    out = split_by_density(hu, mask, cfg)
    assert (out[0][mask[0]] == LESION_GGO).all()
    assert (out[1][mask[1]] == LESION_CONSOLIDATION).all()
    assert (out[~mask] == 0).all()
    narrow = split_by_density(hu, mask, {"ggo": [-550, -300], "consolidation": [-300, 0]})
    assert (narrow[0][mask[0]] == LESION_GGO).all()  # -600: below the GGO range
    assert (narrow[1][mask[1]] == LESION_CONSOLIDATION).all()  # +30: above consolidation


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        split_by_density(np.zeros((2, 2)), np.zeros((2, 3)), HU_CFG)


def test_volume_and_slice_paths_agree_and_lesion_is_ggo_plus_consolidation() -> None:
    """Before, a lesion voxel outside both ranges was label 3 on the volume path (in lesion
    percent, in neither GGO nor consolidation) but GGO or consolidation on 2D slices."""
    hu = np.array([[-900, -600, 0, 400]], dtype=float)
    volume = split_by_density(hu, np.ones(hu.shape, bool), HU_CFG)
    slices = labels_from_probability(np.ones(hu.shape), hu, HU_CFG)
    assert volume.tolist() == slices.tolist() == [[1, 1, 2, 2]]
    assert not (volume == LESION_OTHER).any()
