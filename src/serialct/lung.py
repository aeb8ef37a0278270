"""Left and right lung masks by thresholding and morphology (the paper's "adaptive thresholding
and morphological operation").

Steps, on the CT re-oriented to LPS (array axes: inferior->superior, anterior->posterior,
right->left; the result is turned back to the CT's own orientation):

1. body: the largest connected component above ``threshold_hu``, holes filled slice by slice;
2. candidates: voxels below ``threshold_hu`` in the holes of the body (so not outside air);
3. trachea and main bronchi: seeded in the top slices (a small, round, central component below
   ``airway_hu``) and grown slice by slice while each branch stays small, down to a little below
   the carina; removed with a margin so they no longer join the lungs;
4. the two largest components are the lungs; if the lungs touch and form one component, it is
   eroded (distance map thresholds) until it splits in two, and every voxel goes to the nearer
   part; the side comes from the PHYSICAL x of each part (the patient's right has lower x);
5. per side (never gluing the lungs): closing with a ball of ``closing_mm`` (exact, in mm, via
   distance maps); slice holes filled when small or enclosed by lung in 3D (not the diaphragm
   dome ringed by the lung base); and concavities of each slice's convex hull up to
   ``subpleural_mm`` deep added, so vessels and dense subpleural lesions (HU ~ 0, against the
   chest wall) are inside the mask.

Limits: broad dense subpleural lesions deeper than ``subpleural_mm`` are only partly put back
(a larger ``closing_mm`` helps; a larger ``subpleural_mm`` soon takes in the heart's impression).
Thin volumes (a few slices) work: the closing repeats the edge slices where the lung reaches the
end of the volume, as if the lung went on.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

from serialct.constants import LUNG_BACKGROUND, LUNG_LEFT, LUNG_RIGHT, MM3_PER_CM3

log = logging.getLogger("serialct")

WORK_ORIENTATION = "LPS"  # array (z, y, x) = (inferior->superior, anterior->posterior, R->L)

# trachea seed: a round air component near the body's centre in the top slices
TRACHEA_SEARCH_MM = 40.0
TRACHEA_MIN_AREA_MM2 = 40.0  # ~7 mm diameter
TRACHEA_MAX_AREA_MM2 = 800.0  # ~32 mm diameter
TRACHEA_MAX_CENTRE_OFFSET = 0.2  # fraction of the body's width
TRACHEA_MIN_FILL = 0.5  # component area / bounding-box area (roundness)
AIRWAY_BRANCH_MAX_AREA_MM2 = 800.0  # a grown airway component larger than this is lung: stop
AIRWAY_BELOW_CARINA_MM = 30.0  # main bronchi: grow this far below the carina
AIRWAY_STEP_MM = 3.0  # a branch may shift this much in-plane from one slice to the next
AIRWAY_MARGIN_MM = 3.0  # removed around the airway lumen (its partial-volume wall)

SECOND_LUNG_FRACTION = 0.1  # a second component smaller than this x the largest is not a lung
SPLIT_EROSIONS_MM = (*range(1, 10), *range(10, 31, 2))  # tried in turn on touching lungs

_HULL_TOLERANCE = 1e-9

_SLICE_2D = np.zeros((3, 3, 3), dtype=bool)
_SLICE_2D[1] = ndi.generate_binary_structure(2, 1)  # in-plane connectivity only


def segment_lungs(ct: sitk.Image, lung_cfg: dict[str, Any]) -> sitk.Image:
    """uint8 lung labels on the CT's grid: 0 background, LUNG_RIGHT, LUNG_LEFT."""
    threshold = float(lung_cfg["threshold_hu"])
    oriented = sitk.DICOMOrient(ct, WORK_ORIENTATION)
    hu = sitk.GetArrayViewFromImage(oriented)
    spacing = tuple(float(s) for s in oriented.GetSpacing()[::-1])  # (z, y, x)

    body = _largest_component(hu > threshold)
    inside = ndi.binary_fill_holes(body, structure=_SLICE_2D)
    candidates = inside & ~body & (hu < threshold)
    del inside
    airway = _airways(hu, candidates, body, spacing, float(lung_cfg["airway_hu"]))
    candidates &= ~airway
    parts = _lung_parts(candidates, body, spacing)
    labels = np.zeros(hu.shape, dtype=np.uint8)
    if not parts:
        log.warning("lung mask: no lung found (no air-like region inside the body)")
    depth_mm = float(lung_cfg["subpleural_mm"])
    for part, side in _sides(oriented, parts, body):
        others = [p for p in parts if p is not part]
        # bites near the other lung are mediastinum (junction lines), not the chest wall
        near_other = _distance(others[0], spacing) <= depth_mm if others else None
        closed = _close(part, spacing, float(lung_cfg["closing_mm"]))
        closed = _fill_holes(closed, spacing, float(lung_cfg["closing_mm"]))
        closed = _fill_bites(closed, spacing, depth_mm, near_other)
        # the other side keeps its own voxels: closing never moves one lung into the other
        labels[closed & (labels == LUNG_BACKGROUND)] = side
        labels[part] = side
    cm3 = float(np.prod(spacing)) / MM3_PER_CM3
    log.info(
        "lung mask: right %.1f cm3, left %.1f cm3 (airway %.1f cm3 removed)",
        np.count_nonzero(labels == LUNG_RIGHT) * cm3,
        np.count_nonzero(labels == LUNG_LEFT) * cm3,
        np.count_nonzero(airway) * cm3,
    )
    return _back_to_grid(labels, oriented, ct)


def lung_volume_cm3(lung: sitk.Image) -> float:
    """Volume of all lung voxels (both sides) in cm3."""
    voxel_mm3 = float(np.prod(lung.GetSpacing()))
    return float(np.count_nonzero(sitk.GetArrayViewFromImage(lung))) * voxel_mm3 / MM3_PER_CM3


def _back_to_grid(labels: np.ndarray, oriented: sitk.Image, ct: sitk.Image) -> sitk.Image:
    """Labels computed on the LPS-oriented grid, returned on the CT's own grid."""
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(oriented)
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(ct.GetDirection())
    image = sitk.DICOMOrient(image, code)
    image.CopyInformation(ct)
    return image


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _airways(
    hu: np.ndarray,
    candidates: np.ndarray,
    body: np.ndarray,
    spacing: tuple[float, ...],
    airway_hu: float,
) -> np.ndarray:
    """Trachea and main bronchi: grown slice by slice from a seed in the top slices."""
    air = candidates & (hu < airway_hu)
    out = np.zeros(hu.shape, dtype=bool)
    seed_z, seed = _trachea_seed(air, body, spacing)
    if seed is None:
        log.info("lung mask: no trachea found in the top %.0f mm", TRACHEA_SEARCH_MM)
        return out
    out[seed_z] = seed
    pixel_mm2 = spacing[1] * spacing[2]
    step = np.ones((3, 3), dtype=bool)
    n_step = max(1, round(AIRWAY_STEP_MM / min(spacing[1:])))
    below_carina = max(1, round(AIRWAY_BELOW_CARINA_MM / spacing[0]))
    for direction in (1, -1):  # up to the top of the volume, then down through the carina
        previous, z, stop_z = seed, seed_z + direction, None
        while 0 <= z < hu.shape[0] and (stop_z is None or z != stop_z):
            comps, _ = ndi.label(air[z])
            reach = ndi.binary_dilation(previous, structure=step, iterations=n_step)
            touched = np.unique(comps[reach & (comps > 0)])
            areas = ndi.sum_labels(np.ones_like(comps), comps, touched) * pixel_mm2
            keep = touched[areas <= AIRWAY_BRANCH_MAX_AREA_MM2]
            if keep.size == 0:
                break
            if direction < 0 and keep.size >= 2 and stop_z is None:
                stop_z = z - below_carina
                log.info("lung mask: carina at slice %d", z)
            previous = np.isin(comps, keep)
            out[z] = previous
            z += direction
    margin = max(1, round(AIRWAY_MARGIN_MM / min(spacing[1:])))
    out = ndi.binary_dilation(out, structure=_SLICE_2D, iterations=margin) & candidates
    log.info(
        "lung mask: trachea seeded at slice %d, airway in %d slices",
        seed_z,
        int(np.count_nonzero(out.any(axis=(1, 2)))),
    )
    return out


def _trachea_seed(
    air: np.ndarray, body: np.ndarray, spacing: tuple[float, ...]
) -> tuple[int, np.ndarray | None]:
    """The most central small round air component in the top slices, or None."""
    occupied = np.flatnonzero(air.any(axis=(1, 2)))
    if occupied.size == 0:
        return 0, None
    top = int(occupied[-1])
    n_search = max(1, round(TRACHEA_SEARCH_MM / spacing[0]))
    pixel_mm2 = spacing[1] * spacing[2]
    for z in range(top, max(top - n_search, -1), -1):
        body_x = np.flatnonzero(body[z].any(axis=0))
        if body_x.size == 0:
            continue
        centre, width = 0.5 * (body_x[0] + body_x[-1]), float(body_x[-1] - body_x[0] + 1)
        comps, n = ndi.label(air[z])
        best, best_offset = 0, np.inf
        for i, box in enumerate(ndi.find_objects(comps), start=1):
            area = np.count_nonzero(comps[box] == i)
            fill = area / ((box[0].stop - box[0].start) * (box[1].stop - box[1].start))
            offset = abs(0.5 * (box[1].start + box[1].stop - 1) - centre) / width
            if (
                TRACHEA_MIN_AREA_MM2 <= area * pixel_mm2 <= TRACHEA_MAX_AREA_MM2
                and fill >= TRACHEA_MIN_FILL
                and offset <= TRACHEA_MAX_CENTRE_OFFSET
                and offset < best_offset
            ):
                best, best_offset = i, offset
        if best:
            return z, comps == best
    return 0, None


def _lung_parts(
    candidates: np.ndarray, body: np.ndarray, spacing: tuple[float, ...]
) -> list[np.ndarray]:
    """One or two lung masks: the two largest components, a merged pair split in two."""
    comps, n = ndi.label(candidates)
    if n == 0:
        return []
    sizes = np.bincount(comps.ravel())
    sizes[0] = 0
    order = np.argsort(sizes)[::-1]
    cm3 = float(np.prod(spacing)) / MM3_PER_CM3
    log.info(
        "lung mask: %d candidate components, largest %s cm3",
        n,
        ", ".join(f"{sizes[i] * cm3:.1f}" for i in order[: min(n, 3)]),
    )
    largest = comps == order[0]
    if _straddles_midline(largest, body):  # both lungs in one piece
        split = _split(largest, body, spacing)
        if split is not None:
            return split
    if n >= 2 and sizes[order[1]] >= SECOND_LUNG_FRACTION * sizes[order[0]]:
        return [largest, comps == order[1]]
    log.warning("lung mask: only one lung found")
    return [largest]


def _body_centre_x(body: np.ndarray) -> float:
    """Middle of the body's x range (array index)."""
    return float(np.mean(np.nonzero(body.any(axis=(0, 1)))[0]))


def _straddles_midline(mask: np.ndarray, body: np.ndarray) -> bool:
    """Whether a sizeable share of ``mask`` lies on each side of the body's middle."""
    columns = np.count_nonzero(mask, axis=(0, 1))
    share = columns[: int(round(_body_centre_x(body)))].sum() / max(columns.sum(), 1)
    return min(share, 1.0 - share) >= SECOND_LUNG_FRACTION


def _split(
    mask: np.ndarray, body: np.ndarray, spacing: tuple[float, ...]
) -> list[np.ndarray] | None:
    """Split touching lungs: erode until two large parts on either side of the body's centre,
    then give every voxel to the nearer part. None when no such split exists."""
    box = ndi.find_objects(mask.astype(np.uint8))[0]
    crop = mask[box]
    # depth inside the mask, in mm; not from the volume's first/last slice (thin volumes)
    depth = _distance(~np.pad(crop, [(0, 0), (1, 1), (1, 1)]), spacing)[:, 1:-1, 1:-1]
    centre_x = _body_centre_x(body) - box[2].start
    for erosion in SPLIT_EROSIONS_MM:
        comps, n = ndi.label(depth > erosion)
        if n < 2:
            if n == 0:
                return None
            continue
        sizes = np.bincount(comps.ravel())
        sizes[0] = 0
        first, second = np.argsort(sizes)[::-1][:2]
        if sizes[second] < SECOND_LUNG_FRACTION * sizes[first]:
            continue
        xs = [ndi.center_of_mass(comps == i)[2] for i in (first, second)]
        if (xs[0] - centre_x) * (xs[1] - centre_x) >= 0:
            continue
        near_first = _distance(comps == first, spacing) <= _distance(comps == second, spacing)
        parts = []
        for part in (crop & near_first, crop & ~near_first):
            full = np.zeros(mask.shape, dtype=bool)
            full[box] = part
            parts.append(full)
        log.info("lung mask: touching lungs split after a %.0f mm erosion", erosion)
        return parts
    return None


def _distance(mask: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Euclidean distance (mm) of every voxel to the nearest voxel of ``mask`` (0 inside)."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(spacing[::-1])
    dist = sitk.SignedMaurerDistanceMap(
        image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
    )
    return np.maximum(sitk.GetArrayFromImage(dist), 0.0)


def _sides(
    oriented: sitk.Image, parts: list[np.ndarray], body: np.ndarray
) -> list[tuple[np.ndarray, int]]:
    """Pair each part with its side from its centroid's PHYSICAL x (right = lower x)."""

    def physical_x(mask: np.ndarray) -> float:
        z, y, x = ndi.center_of_mass(mask)
        return oriented.TransformContinuousIndexToPhysicalPoint((x, y, z))[0]

    xs = [physical_x(part) for part in parts]
    if not parts:
        return []
    if len(parts) == 1:
        side = LUNG_RIGHT if xs[0] < physical_x(body) else LUNG_LEFT
        return [(parts[0], side)]
    right = int(np.argmin(xs))
    return [(parts[right], LUNG_RIGHT), (parts[1 - right], LUNG_LEFT)]


def _close(mask: np.ndarray, spacing: tuple[float, ...], radius_mm: float) -> np.ndarray:
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
    dilated = _distance(crop, spacing) <= radius_mm
    closed = _distance(~dilated, spacing) > radius_mm
    out = np.zeros_like(mask)
    out[box] = closed[pad[0] : -pad[0], pad[1] : -pad[1], pad[2] : -pad[2]] | mask[box]
    return out


def _fill_holes(mask: np.ndarray, spacing: tuple[float, ...], radius_mm: float) -> np.ndarray:
    """Fill the holes of each slice that are small (vessels) or enclosed by lung in 3D (dense
    lesions). A large slice hole that opens in 3D, such as the diaphragm dome ringed by the
    lung base, stays out. The first and last slices do not count as outside (thin volumes)."""
    if not mask.any():
        return mask
    box = ndi.find_objects(mask.astype(np.uint8))[0]
    crop = np.pad(mask[box], [(0, 0), (1, 1), (1, 1)])
    holes = ndi.binary_fill_holes(crop, structure=_SLICE_2D) & ~crop
    slice_holes, n = ndi.label(holes, structure=_SLICE_2D)
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


def _fill_bites(
    mask: np.ndarray, spacing: tuple[float, ...], depth_mm: float, avoid: np.ndarray | None
) -> np.ndarray:
    """Per slice, add the concavities of the convex hull that are at most ``depth_mm`` deep
    (dense subpleural lesions bite into the lung from the chest wall; the heart and the
    mediastinum make much deeper concavities and stay out). A bite touching ``avoid`` (the
    region near the other lung) lies between the lungs and is left out."""
    if depth_mm <= 0:
        return mask
    out = mask.copy()
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        tight = ndi.find_objects(mask[z].astype(np.uint8))[0]
        box = tuple(  # one pixel of room for the pleural rim
            slice(max(b.start - 1, 0), min(b.stop + 1, n))
            for b, n in zip(tight, mask.shape[1:], strict=True)
        )
        bites = _slice_bites(mask[z][box], spacing[1:], depth_mm)
        if avoid is not None and bites.any():
            labels, n = ndi.label(bites)
            touching = np.unique(labels[avoid[z][box] & bites])
            bites &= ~np.isin(labels, touching[touching > 0])
        out[z][box] |= bites
    return out


def _slice_bites(mask: np.ndarray, spacing_yx: tuple[float, ...], depth_mm: float) -> np.ndarray:
    """Bites of one slice: components of hull-minus-mask at most ``depth_mm`` deep, with the
    pixel rim just outside the hull under them."""
    inside_hull = _convex_hull(mask) | mask
    bites, n = ndi.label(inside_hull & ~mask)
    if n == 0:
        return bites > 0
    depth = ndi.distance_transform_edt(np.pad(inside_hull, 1), sampling=spacing_yx)[1:-1, 1:-1]
    deepest = np.asarray(ndi.maximum(depth, bites, np.arange(1, n + 1)))
    accepted = np.isin(bites, np.flatnonzero(deepest <= depth_mm) + 1)
    # plus the one-pixel partial-volume rim at the pleura, just outside the hull
    return accepted | (ndi.binary_dilation(accepted) & ~inside_hull)


def _convex_hull(mask: np.ndarray) -> np.ndarray:
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
