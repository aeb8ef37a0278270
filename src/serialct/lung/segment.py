"""The lung mask pipeline on a work grid: body and candidates, airways, the two lungs, the
fills per side, then full resolution (the steps of the package docstring)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from serialct.constants import LUNG_BACKGROUND, LUNG_LEFT, LUNG_RIGHT, MM3_PER_CM3
from serialct.lung.airways import AIRWAY_ZONE_MM, find_airways
from serialct.lung.edge import midpoint_edge
from serialct.lung.fills import (
    BiteRules,
    between_lungs,
    fill_bites,
    fill_slice_holes,
    fill_z_gaps,
    keep_lesion_fills,
)
from serialct.lung.floor import fill_floor
from serialct.lung.morphology import (
    SLICE_2D,
    close_ball,
    distance_mm,
    either,
    largest_component,
    under_lung,
)
from serialct.lung.refine import refine
from serialct.lung.sides import assign_sides, lung_parts
from serialct.orientation import back_to_grid, to_work

log = logging.getLogger("serialct")


MIN_COARSE_VOXELS = 16  # an axis is shrunk for the work grid only if this many voxels remain


def segment_lungs(ct: sitk.Image, lung_cfg: dict[str, Any]) -> sitk.Image:
    """uint8 lung labels on the CT's grid: 0 background, LUNG_RIGHT, LUNG_LEFT."""
    threshold = float(lung_cfg["threshold_hu"])
    oriented = to_work(ct)
    spacing = tuple(float(s) for s in oriented.GetSpacing()[::-1])  # (z, y, x)
    factors = shrink_factors(oriented.GetSize()[::-1], spacing, float(lung_cfg["grid_mm"]))
    if all(f == 1 for f in factors):
        hu = sitk.GetArrayViewFromImage(oriented)
        labels, _, _ = segment_grid(hu, spacing, lung_cfg)
    else:
        coarse = sitk.BinShrink(oriented, factors[::-1])  # block means, origin kept consistent
        coarse_spacing = tuple(float(s) for s in coarse.GetSpacing()[::-1])
        coarse_labels, airway, candidates = segment_grid(
            sitk.GetArrayViewFromImage(coarse), coarse_spacing, lung_cfg
        )
        hu = sitk.GetArrayViewFromImage(oriented)
        labels = refine(hu, threshold, coarse_labels, airway, candidates, factors)
    if lung_cfg["midpoint_edge"]:
        labels = midpoint_edge(labels, hu, spacing, threshold)
    cm3 = float(np.prod(spacing)) / MM3_PER_CM3
    log.info(
        "lung mask: right %.1f cm3, left %.1f cm3 (work grid %s of %s voxels)",
        np.count_nonzero(labels == LUNG_RIGHT) * cm3,
        np.count_nonzero(labels == LUNG_LEFT) * cm3,
        "x".join(map(str, factors)),
        "x".join(f"{s:.2f}" for s in spacing),
    )
    return back_to_grid(labels, oriented, ct)


def shrink_factors(
    shape: tuple[int, ...], spacing: tuple[float, ...], grid_mm: float
) -> tuple[int, ...]:
    """Integer block sizes per axis so the work grid's voxels are about ``grid_mm``; thin axes
    (fewer than MIN_COARSE_VOXELS voxels after shrinking) stay at full resolution."""
    out = []
    for n, s in zip(shape, spacing, strict=True):
        f = max(1, int(np.floor(grid_mm / s + 0.25))) if grid_mm > 0 else 1
        out.append(f if n // f >= MIN_COARSE_VOXELS else 1)
    return tuple(out)


def segment_grid(
    hu: np.ndarray, spacing: tuple[float, ...], lung_cfg: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lung labels, airway and raw candidates (below the threshold, inside the body) on one grid
    (LPS-oriented arrays)."""
    threshold = float(lung_cfg["threshold_hu"])
    body = largest_component(hu > threshold)
    inside = ndi.binary_fill_holes(body, structure=SLICE_2D)
    candidates = inside & ~body & (hu < threshold)
    del inside
    airway = find_airways(hu, candidates, body, spacing, float(lung_cfg["airway_hu"]))
    lung_candidates = candidates & ~airway
    parts = lung_parts(lung_candidates, body, spacing)
    labels = np.zeros(hu.shape, dtype=np.uint8)
    if not parts:
        log.warning("lung mask: no lung found (no air-like region inside the body)")
    # gaps along z are filled neither across the airways nor into the mediastinum
    airway_zone = distance_mm(airway, spacing) <= AIRWAY_ZONE_MM if airway.any() else None
    for part, side in assign_sides(spacing, parts, body):
        others = [p for p in parts if p is not part]
        other = others[0] if others else None
        closed = _fill_side(part, other, airway_zone, hu, spacing, lung_cfg)
        # the other side keeps its own voxels: closing never moves one lung into the other
        labels[closed & (labels == LUNG_BACKGROUND)] = side
        labels[part] = side
    log.info(
        "lung mask: airway %.1f cm3 removed",
        np.count_nonzero(airway) * float(np.prod(spacing)) / MM3_PER_CM3,
    )
    return labels, airway, candidates


def _fill_side(
    part: np.ndarray,
    other: np.ndarray | None,
    airway_zone: np.ndarray | None,
    hu: np.ndarray,
    spacing: tuple[float, ...],
    lung_cfg: dict[str, Any],
) -> np.ndarray:
    """One lung with what thresholding lost put back (step 5): every fill but the small slice
    holes only on the costal side or where the lung along it is dense (``keep_lesion_fills``:
    a lesion, not the mediastinum). Where the scan cuts the lung (lung in its first or last
    slice) nothing is added in that end slice and the floor (apex) is not modelled: the
    lung's end there is the scan's, not the diaphragm's."""
    threshold = float(lung_cfg["threshold_hu"])
    depth_mm = float(lung_cfg["subpleural_mm"])
    closing_mm = float(lung_cfg["closing_mm"])
    fill_mm = float(lung_cfg["floor_fill_mm"])
    lined_hu = float(np.median(hu[part])) + float(lung_cfg["lesion_rim_delta_hu"])
    rules = BiteRules(depth_mm, float(lung_cfg["lesion_bite_mm"]), lined_hu, threshold)
    joint_hull = between_lungs(part, other, spacing)

    def lesions_only(filled: np.ndarray, before: np.ndarray) -> np.ndarray:
        return before | keep_lesion_fills(filled & ~before, part, hu, spacing, rules, joint_hull)

    # bites near the other lung are mediastinum (junction lines), not the chest wall
    near_other = distance_mm(other, spacing) <= depth_mm if other is not None else None
    avoid = either(near_other, airway_zone)
    closed = lesions_only(close_ball(part, spacing, closing_mm), part)
    z_gaps = fill_z_gaps(closed, spacing, float(lung_cfg["z_gap_mm"]), avoid)
    closed = lesions_only(z_gaps, closed)
    closed = fill_slice_holes(closed, spacing, closing_mm)
    closed = fill_bites(closed, spacing, rules, near_other, hu, joint_hull, under_lung(closed))
    cut_base, cut_apex = bool(part[0].any()), bool(part[-1].any())
    if not cut_base:
        closed = fill_floor(closed, spacing, hu, lined_hu, fill_mm, avoid)
    if not cut_apex:  # the apex the same way, upside down: a dense lesion capping the lung's top
        closed = fill_floor(
            closed[::-1], spacing, hu[::-1], lined_hu, fill_mm,
            None if avoid is None else avoid[::-1], wall_columns=False,
        )[::-1]  # fmt: skip
    if part.shape[0] > 2:  # (thin volumes: every slice is an end slice)
        for end in [0] * cut_base + [-1] * cut_apex:
            closed[end] = part[end] | (
                closed[end] & fill_slice_holes(part, spacing, closing_mm)[end]
            )
    return closed
