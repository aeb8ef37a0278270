"""Partial-volume layers on the lung's upper and lower surface are not lesions; lesions are kept."""

from __future__ import annotations

import numpy as np

from serialct.lesion.partial_volume import drop_surface_layers, on_surface


def _lung() -> np.ndarray:
    """12 slices; the lung fills slices 2-9, and a dome (a block of non-lung) rises from the
    floor into slices 2-4 on one side."""
    lung = np.zeros((12, 20, 20), dtype=bool)
    lung[2:10, 2:18, 2:18] = True
    lung[2:5, 2:18, 2:8] = False  # the dome under the left part
    return lung


def test_surface_is_where_the_slice_above_or_below_is_not_lung() -> None:
    lung = _lung()
    surface = on_surface(lung)
    assert surface[2, 10, 10] and surface[9, 10, 10]  # floor and top of the lung
    assert surface[5, 10, 4]  # just above the dome
    assert not surface[6, 10, 10] and not surface[5, 10, 10]
    cut = np.ones((4, 3, 3), dtype=bool)  # lung in every slice of the scan: no surface
    assert not on_surface(cut).any()


def test_layers_go_lesions_stay() -> None:
    lung = _lung()
    lesion = np.zeros_like(lung)
    lesion[5, 4:12, 3:7] = True  # a one-slice layer on the dome
    lesion[2, 12:16, 12:16] = True  # a one-slice layer on the floor
    lesion[2:6, 2:6, 12:16] = True  # a lesion on the floor reaching up 4 slices
    lesion[7, 8:12, 10:14] = True  # a one-slice lesion inside the lung
    kept = drop_surface_layers(lesion, lung)
    assert not kept[5, 4:12, 3:7].any() and not kept[2, 12:16, 12:16].any()
    assert kept[2:6, 2:6, 12:16].all() and kept[7, 8:12, 10:14].all()
    assert not drop_surface_layers(np.zeros_like(lung), lung).any()
