"""Full-resolution labels from the work grid's."""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi

from serialct.constants import LUNG_BACKGROUND

log = logging.getLogger("serialct")


def refine(
    hu: np.ndarray,
    threshold: float,
    coarse: np.ndarray,
    airway: np.ndarray,
    candidates: np.ndarray,
    factors: tuple[int, ...],
) -> np.ndarray:
    """Full-resolution labels from the work grid's: the inner lung and everything morphology
    added (vessels, dense lesions) as they are; in a band one coarse voxel wide around the
    lung, the full-resolution threshold decides. Each voxel takes the side of the nearest
    coarse lung voxel."""
    lung = coarse > 0
    if not lung.any():
        return np.zeros(hu.shape, dtype=np.uint8)
    cube = np.ones((3, 3, 3), dtype=bool)
    # (not eroded from the volume's first and last slice: thin volumes)
    core = ndi.binary_erosion(lung, cube, border_value=1) | (lung & ~candidates)
    band = ndi.binary_dilation(lung, cube) & ~ndi.binary_dilation(airway, cube)
    box = ndi.find_objects(band.astype(np.uint8))[0]  # everything else stays background
    _, nearest = ndi.distance_transform_edt(~lung[box], return_indices=True)
    side = coarse[box][tuple(nearest)]
    del nearest
    full = tuple(
        slice(b.start * f, n if b.stop == m else b.stop * f)
        for b, f, n, m in zip(box, factors, hu.shape, coarse.shape, strict=True)
    )
    shape = tuple(s.stop - s.start for s in full)
    out = expand(band[box], factors, shape) & (hu[full] < threshold)
    out |= expand(core[box], factors, shape)
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[full] = np.where(out, expand(side, factors, shape), np.uint8(LUNG_BACKGROUND))
    return labels


def expand(array: np.ndarray, factors: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """A coarse array repeated back to ``shape`` (blocks of ``factors``; the remainder that
    BinShrink dropped at the far ends repeats the last block)."""
    out = array
    for axis, (f, n) in enumerate(zip(factors, shape, strict=True)):
        if f > 1:
            out = np.repeat(out, f, axis=axis)
        if out.shape[axis] < n:
            pad = [(0, 0)] * out.ndim
            pad[axis] = (0, n - out.shape[axis])
            out = np.pad(out, pad, mode="edge")
    return out
