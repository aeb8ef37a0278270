"""GGO / consolidation / other split by HU, including the [min, max) boundaries."""

from __future__ import annotations

import numpy as np
import pytest

from serialct.config import defaults
from serialct.constants import LESION_CONSOLIDATION, LESION_GGO, LESION_OTHER
from serialct.lesion.density import split_by_density

HU_CFG = {"ggo": [-750, -300], "consolidation": [-300, 150]}


def test_boundaries() -> None:
    hu = np.array([-1000, -751, -750, -500, -301, -300, 0, 149, 150, 400, -500])
    mask = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0], dtype=np.uint8)
    g, c, o = LESION_GGO, LESION_CONSOLIDATION, LESION_OTHER
    expected = [o, o, g, g, g, c, c, c, o, o, 0]
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
    assert (narrow[mask] == LESION_OTHER).all()


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        split_by_density(np.zeros((2, 2)), np.zeros((2, 3)), HU_CFG)
