"""What thresholding loses and morphology puts back: gaps along z, slice holes, concavities of
the slice outline (bites)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from serialct.lung.morphology import (
    SLICE_2D,
    convex_hull,
)

log = logging.getLogger("serialct")


RIM_DEPTH_PX = 4  # a bite's lung rim: lung pixels up to this many pixels from the bite

RIM_INSIDE_PX = 2  # ... and at least this many pixels inside the lung's edge

MIN_MOUTH_FRACTION = 0.25  # of a deep bite's edge pixels, at least this share on the hull

MAX_DOME_SHARE = 0.5  # deep bites with more of their pixels under the lung stay out

MIN_RIM_PX = 10  # a deep bite with fewer aerated rim pixels than this stays out

# Chosen on the data the results are reported on (not held out): the real chests of
# benchmarks/real_lung_masks.py and the dense phantoms of benchmarks/lung_validation.py.
JOINT_HULL_WINDOW_MM = 30.0  # both lungs' outline from this far above and below a slice
NEIGHBOURHOOD_PX = 2  # the tissue around a fill: this many pixels beyond it, in its slice (1: same)
# a fill with at least this share of that tissue outside the joint hull is costal (phantom seed
# 9, 300x512x512: Dice 0.9698 at 0.5, 0.9752 at 0.25, 0.9753 at 0.1; the real chests gain 3-15
# cm3 from 0.5 to 0.25)
COSTAL_SHARE = 0.25
_RING_FOOTPRINT = np.zeros((3, 2 * NEIGHBOURHOOD_PX + 1, 2 * NEIGHBOURHOOD_PX + 1), dtype=bool)
_RING_FOOTPRINT[1] = True

LESION_MAJORITY = 0.5  # a 3D fill this much costal or lined is kept whole (0.3: the same)

_FAR_MM = 1e6  # a z step this long keeps nearest-voxel searches inside their slice


@dataclass(frozen=True)
class BiteRules:
    """Which concavities of a slice's lung outline are lung (``_slice_bites``)."""

    depth_mm: float  # any concavity up to this deep (subpleural_mm)
    lined_depth_mm: float  # ... up to this deep when lined by dense lung (lesion_bite_mm)
    lined_hu: float  # "dense": the lung rim's median HU above this
    aerated_hu: float  # rim pixels count only below this (aerated or ground glass, not vessels)


def between_lungs(
    lung: np.ndarray, other: np.ndarray | None, spacing: tuple[float, ...]
) -> np.ndarray:
    """Per slice, the convex hull of ``lung`` and of the ``other`` lung as it is in the slices
    up to JOINT_HULL_WINDOW_MM above and below (so a slice without the other lung still has
    its outline): the mediastinum lies inside it, the chest wall outside."""
    both = lung.copy()
    if other is not None:
        k = max(0, round(JOINT_HULL_WINDOW_MM / spacing[0]))
        near = ndi.maximum_filter1d(other.view(np.uint8), size=2 * k + 1, axis=0) > 0
        both |= near & lung.any(axis=(1, 2))[:, None, None]
    out = np.zeros_like(lung)
    for z in np.flatnonzero(lung.any(axis=(1, 2))):
        out[z] = convex_hull(both[z]) | both[z]
    return out


def costal(components: np.ndarray, lung: np.ndarray, joint_hull: np.ndarray) -> np.ndarray:
    """Per labelled slice component (1..n), whether it lies against the chest wall: at least
    COSTAL_SHARE of the non-lung tissue around it (NEIGHBOURHOOD_PX pixels) is outside
    ``joint_hull`` (``between_lungs``). Around the mediastinal side's concavities (heart,
    great vessels, hila, the aorta beside the spine) that tissue lies inside it."""
    n = int(components.max())
    ring = ndi.grey_dilation(components, footprint=_RING_FOOTPRINT)
    ring = np.where((components == 0) & ~lung, ring, 0)
    outside = np.bincount(ring[~joint_hull], minlength=n + 1)[1:]
    total = np.bincount(ring.ravel(), minlength=n + 1)[1:]
    return outside >= COSTAL_SHARE * np.maximum(total, 1)


def keep_lesion_fills(
    added: np.ndarray,
    lung: np.ndarray,
    hu: np.ndarray,
    spacing: tuple[float, ...],
    rules: BiteRules,
    joint_hull: np.ndarray,
) -> np.ndarray:
    """Of the voxels a fill would add to ``lung``, the slice components that are lesion, not
    mediastinum: those against the chest wall (``costal``) and those whose lung rim is dense (the
    aerated or ground-glass lung RIM_INSIDE_PX to RIM_DEPTH_PX pixels inside their edge, below
    ``rules.aerated_hu``, has a median HU above ``rules.lined_hu`` over at least MIN_RIM_PX
    pixels: a lesion in its ground-glass halo). The heart, the great vessels, the hila and the
    mediastinal fat lie on the mediastinal side and border normal lung, so the lung's edge
    stays where the threshold put it there."""
    if not added.any():
        return added
    labels, n = ndi.label(added, structure=SLICE_2D)
    index = np.arange(1, n + 1)
    tight = ndi.find_objects(added.astype(np.uint8))[0]
    box = (tight[0],) + tuple(
        slice(max(b.start - RIM_DEPTH_PX - 1, 0), min(b.stop + RIM_DEPTH_PX + 1, size))
        for b, size in zip(tight[1:], added.shape[1:], strict=True)
    )
    crop = labels[box]
    near, nearest = ndi.distance_transform_edt(
        crop == 0, sampling=(_FAR_MM, *spacing[1:]), return_indices=True
    )
    inner = ndi.binary_erosion(lung[box], structure=SLICE_2D, iterations=RIM_INSIDE_PX)
    rim = inner & (near <= RIM_DEPTH_PX * max(spacing[1:])) & (hu[box] < rules.aerated_hu)
    owner = np.where(rim, crop[tuple(nearest)], 0)
    del nearest, near
    rim_hu = np.asarray(ndi.median(hu[box], owner, index))
    rim_n = np.bincount(owner.ravel(), minlength=n + 1)[1:]
    lined = (rim_n >= MIN_RIM_PX) & (rim_hu > rules.lined_hu)
    on_wall = costal(crop, lung[box], joint_hull[box])
    accepted = np.isin(crop, index[lined | on_wall])
    # a lesion seen as mediastinal in some slices but costal or halo-lined in most of its
    # 3D extent is kept whole
    pieces, m = ndi.label(added[box])
    share = ndi.mean(accepted, pieces, np.arange(1, m + 1)) if m else np.zeros(0)
    mostly = np.flatnonzero(np.asarray(share) >= LESION_MAJORITY) + 1
    out = np.zeros_like(added)
    out[box] = accepted | np.isin(pieces, mostly)
    return out


def fill_z_gaps(
    mask: np.ndarray, spacing: tuple[float, ...], gap_mm: float, avoid: np.ndarray | None
) -> np.ndarray:
    """Fill, column by column along z, gaps of at most ``gap_mm`` between two lung voxels: a
    dense lesion that takes the lung's whole outer rim on some slices has lung above and below
    it, where a slice's convex hull sees nothing missing. Not inside ``avoid``."""
    if gap_mm <= 0 or not mask.any():
        return mask
    n = mask.shape[0]
    index = np.arange(n, dtype=np.int16 if n < 2**15 else np.int32)[:, None, None]
    below = np.where(mask, index, -1)
    np.maximum.accumulate(below, axis=0, out=below)
    above = np.where(mask, index, n)[::-1]
    above = np.minimum.accumulate(above, axis=0)[::-1]
    gap = above.astype(np.float32) - below - 1
    fill = (below >= 0) & (above < n) & (gap * spacing[0] <= gap_mm) & ~mask
    if avoid is not None:
        fill &= ~avoid
    return mask | fill


def fill_slice_holes(mask: np.ndarray, spacing: tuple[float, ...], radius_mm: float) -> np.ndarray:
    """Fill the holes of each slice that are small (vessels) or enclosed by lung in 3D (dense
    lesions). A large slice hole that opens in 3D, such as the diaphragm dome ringed by the
    lung base, stays out. The first and last slices do not count as outside (thin volumes)."""
    if not mask.any():
        return mask
    box = ndi.find_objects(mask.astype(np.uint8))[0]
    crop = np.pad(mask[box], [(0, 0), (1, 1), (1, 1)])
    holes = ndi.binary_fill_holes(crop, structure=SLICE_2D) & ~crop
    slice_holes, n = ndi.label(holes, structure=SLICE_2D)
    area_mm2 = np.bincount(slice_holes.ravel()) * spacing[1] * spacing[2]
    small = area_mm2 <= np.pi * radius_mm**2
    small[0] = False
    background, _ = ndi.label(~crop)
    outside = np.unique(
        np.concatenate([background[:, [0, -1], :].ravel(), background[:, :, [0, -1]].ravel()])
    )
    enclosed = (background > 0) & ~np.isin(background, outside)
    filled = crop | small[slice_holes] | (holes & enclosed)
    out = mask.copy()
    out[box] = filled[:, 1:-1, 1:-1]
    return out


def fill_bites(
    mask: np.ndarray,
    spacing: tuple[float, ...],
    rules: BiteRules,
    avoid: np.ndarray | None,
    hu: np.ndarray,
    joint_hull: np.ndarray,
    dome: np.ndarray | None = None,
) -> np.ndarray:
    """Per slice, add the concavities of the convex hull that are at most ``depth_mm`` deep
    and on the costal side (``costal``: a dense lesion biting into the lung from the chest
    wall) or with a lung rim (median HU) denser than ``lined_hu`` (a consolidation in its
    ground-glass halo; the heart, the great vessels and the hila lie on the mediastinal side
    and border normal, aerated lung), and those with a dense rim at most
    ``lined_depth_mm`` deep and open widely onto the hull and not over the diaphragm
    (``dome``). A bite touching ``avoid`` (the region near the other lung) lies between the
    lungs and is left out.
    """
    if rules.depth_mm <= 0:
        return mask
    out = mask.copy()
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        tight = ndi.find_objects(mask[z].astype(np.uint8))[0]
        box = tuple(  # one pixel of room for the pleural rim
            slice(max(b.start - 1, 0), min(b.stop + 1, n))
            for b, n in zip(tight, mask.shape[1:], strict=True)
        )
        bites = _slice_bites(
            mask[z][box],
            spacing[1:],
            rules,
            hu[z][box],
            joint_hull[z][box],
            None if dome is None else dome[z][box],
        )
        if avoid is not None and bites.any():
            labels, n = ndi.label(bites)
            touching = np.unique(labels[avoid[z][box] & bites])
            bites &= ~np.isin(labels, touching[touching > 0])
        out[z][box] |= bites
    return out


def _slice_bites(
    mask: np.ndarray,
    spacing_yx: tuple[float, ...],
    rules: BiteRules,
    hu: np.ndarray,
    joint_hull: np.ndarray,
    dome: np.ndarray | None = None,
) -> np.ndarray:
    """Bites of one slice: components of hull-minus-mask at most ``depth_mm`` deep on the
    costal side or with a dense lung rim, or with a dense rim, open and at most
    ``lined_depth_mm`` deep; with the pixel rim just outside the hull."""
    inside_hull = convex_hull(mask) | mask
    bites, n = ndi.label(inside_hull & ~mask)
    if n == 0:
        return bites > 0
    depth = ndi.distance_transform_edt(np.pad(inside_hull, 1), sampling=spacing_yx)[1:-1, 1:-1]
    index = np.arange(1, n + 1)
    deepest = np.asarray(ndi.maximum(depth, bites, index))
    # the lung just inside each bite's edge (skipping the partial-volume pixel)
    near = ndi.distance_transform_edt(bites == 0, sampling=spacing_yx)
    step = max(spacing_yx)
    # aerated or ground-glass lung only: the hilum's vessels next to the heart do not count
    # (2 pixels inside the lung, so a thin basal rim of partial volume over the dome is no rim)
    rim = ndi.binary_erosion(mask, iterations=RIM_INSIDE_PX) & (near <= RIM_DEPTH_PX * step)
    rim &= hu < rules.aerated_hu
    _, owner = ndi.distance_transform_edt(bites == 0, return_indices=True)
    owner_label = np.where(rim, bites[tuple(owner)], 0)
    rim_hu = np.asarray(ndi.median(hu, owner_label, index))
    rim_n = np.asarray(ndi.sum_labels(rim, owner_label, index))
    lined = (rim_hu > rules.lined_hu) & (rim_n >= MIN_RIM_PX)
    on_wall = costal(bites[None], mask[None], joint_hull[None])
    ok = (lined | on_wall) & (deepest <= rules.depth_mm)
    if rules.lined_depth_mm > rules.depth_mm and np.any(lined & ~ok):
        # an open bite (wide mouth on the hull), not a ring of lung around the diaphragm dome
        mouth = bites * (ndi.binary_dilation(~inside_hull) & (bites > 0))
        contact = bites * (ndi.binary_dilation(mask) & (bites > 0))
        mouth_n = np.bincount(mouth.ravel(), minlength=n + 1)[1:]
        contact_n = np.bincount(contact.ravel(), minlength=n + 1)[1:]
        is_open = mouth_n >= MIN_MOUTH_FRACTION * np.maximum(mouth_n + contact_n, 1)
        if dome is not None:  # mostly over the diaphragm: the dome ringed by the lung base
            size = np.bincount(bites.ravel(), minlength=n + 1)[1:]
            is_open &= np.bincount(bites[dome], minlength=n + 1)[1:] <= MAX_DOME_SHARE * size
        ok |= lined & (deepest <= rules.lined_depth_mm) & is_open
    accepted = np.isin(bites, np.flatnonzero(ok) + 1)
    # plus the one-pixel partial-volume rim at the pleura, just outside the hull
    return accepted | (ndi.binary_dilation(accepted) & ~inside_hull)
