"""Shared morphology on LPS-oriented work arrays: components, distances in mm, ball closing,
convex hulls of slices."""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

log = logging.getLogger("serialct")


SLICE_2D = np.zeros((3, 3, 3), dtype=bool)

SLICE_2D[1] = ndi.generate_binary_structure(2, 1)  # in-plane connectivity only

_HULL_TOLERANCE = 1e-9


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def distance_mm(mask: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Euclidean distance (mm) of every voxel to the nearest voxel of ``mask`` (0 inside)."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(spacing[::-1])
    dist = sitk.SignedMaurerDistanceMap(
        image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
    )
    return np.maximum(sitk.GetArrayFromImage(dist), 0.0)


def close_ball(mask: np.ndarray, spacing: tuple[float, ...], radius_mm: float) -> np.ndarray:
    """Closing with a ball of ``radius_mm`` (exact in mm). Where the mask reaches the first or
    last slice, those slices are repeated so the closing does not erode the volume's ends."""
    if radius_mm <= 0 or not mask.any():
        return mask
    box = ndi.find_objects(mask.astype(np.uint8))[0]
    pad = [int(np.ceil(radius_mm / s)) + 1 for s in spacing]
    crop = np.pad(mask[box], [(pad[0], pad[0]), (pad[1], pad[1]), (pad[2], pad[2])])
    if box[0].start == 0:
        crop[: pad[0]] = crop[pad[0]]
    if box[0].stop == mask.shape[0]:
        crop[-pad[0] :] = crop[-pad[0] - 1]
    dilated = distance_mm(crop, spacing) <= radius_mm
    closed = distance_mm(~dilated, spacing) > radius_mm
    out = np.zeros_like(mask)
    out[box] = closed[pad[0] : -pad[0], pad[1] : -pad[1], pad[2] : -pad[2]] | mask[box]
    return out


def convex_hull(mask: np.ndarray) -> np.ndarray:
    """Pixels whose centre lies in the convex hull of the mask's pixel centres (row by row
    from the hull's half-planes). Empty when the hull is degenerate."""
    edge = np.argwhere(mask & ~ndi.binary_erosion(mask))
    try:
        equations = ConvexHull(edge).equations  # a*y + b*x + c <= 0 inside
    except (QhullError, ValueError):
        return np.zeros_like(mask)
    rows = np.arange(mask.shape[0], dtype=float)[:, None]
    a, b, c = equations[:, 0], equations[:, 1], equations[:, 2]
    bound = -(a[None, :] * rows + c[None, :]) / np.where(b == 0, 1.0, b)[None, :]
    lo = np.max(np.where(b < 0, bound, -np.inf), axis=1)
    hi = np.min(np.where(b > 0, bound, np.inf), axis=1)
    # facets parallel to the rows: the row is inside only if it satisfies them
    flat = b == 0
    if flat.any():
        ok = np.all(a[flat][None, :] * rows + c[flat][None, :] <= _HULL_TOLERANCE, axis=1)
        hi = np.where(ok, hi, -np.inf)
    cols = np.arange(mask.shape[1], dtype=float)[None, :]
    return (cols >= lo[:, None] - _HULL_TOLERANCE) & (cols <= hi[:, None] + _HULL_TOLERANCE)


def either(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    return a if b is None else a | b


def under_lung(mask: np.ndarray) -> np.ndarray:
    """Voxels with lung above them in their column and none below: the diaphragm's domes."""
    above = np.logical_or.accumulate(mask[::-1], axis=0)[::-1]
    below = np.logical_or.accumulate(mask, axis=0)
    return above & ~below
