"""Split lesion voxels into GGO and consolidation by their CT density."""

from __future__ import annotations

from typing import Any

import numpy as np

from serialct.constants import (
    LESION_BACKGROUND,
    LESION_CONSOLIDATION,
    LESION_GGO,
)


def split_by_density(hu: np.ndarray, lesion_mask: np.ndarray, hu_cfg: dict[str, Any]) -> np.ndarray:
    """Label lesion voxels by HU range: uint8 0 outside lesions, LESION_GGO, LESION_CONSOLIDATION.

    ``hu_cfg`` is ``config["hu"]``: ``ggo`` and ``consolidation`` are [min, max) ranges. A lesion
    voxel in the GGO range is LESION_GGO, in the consolidation range LESION_CONSOLIDATION (GGO wins
    if the ranges overlap). A lesion voxel outside both takes the nearer kind: below the GGO range
    (a lesion's aerated edge) GGO, otherwise (above the consolidation range: calcification, a
    vessel) consolidation. So lesion = GGO + consolidation on the volume path and on 2D slices
    alike; LESION_OTHER (3) stays reserved for label maps made elsewhere and is never written.
    """
    if hu.shape != lesion_mask.shape:
        raise ValueError(f"hu shape {hu.shape} != lesion mask shape {lesion_mask.shape}")
    lesion = lesion_mask > 0
    ggo_lo, ggo_hi = hu_cfg["ggo"]
    con_lo, con_hi = hu_cfg["consolidation"]
    out = np.full(hu.shape, LESION_BACKGROUND, dtype=np.uint8)
    out[lesion & (hu < ggo_lo)] = LESION_GGO
    out[lesion & (hu >= ggo_lo)] = LESION_CONSOLIDATION
    out[lesion & (hu >= con_lo) & (hu < con_hi)] = LESION_CONSOLIDATION
    out[lesion & (hu >= ggo_lo) & (hu < ggo_hi)] = LESION_GGO
    return out
