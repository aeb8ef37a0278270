"""The lung's outer edge at the partial-volume midpoint (step 7 of the package docstring).

A voxel on the lung's edge holds part lung, part chest wall (or heart, diaphragm). Counting it
as lung is right when more than half of it is lung, that is when its HU lies below the
midpoint between the lung just inside and the soft tissue outside: for aerated lung at about
-850 HU and soft tissue at +40 HU that is about -405 HU, well below ``threshold_hu`` (-300),
which counts edge voxels that are mostly wall. The CIP expert mask's edge lies at about
-415 HU (``benchmarks/real_lung_masks.md``), and a blurred phantom's true edge is at the
midpoint too. So the outermost layer of the mask loses the voxels at or above its local
midpoint; "just inside" is the mean of the mask's inner voxels around it, so a ground-glass
lesion against the wall (-500 HU inside, midpoint about -230 HU) keeps its edge, and voxels
at or above ``threshold_hu`` (put in by the fills: consolidation) are never touched.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from scipy import ndimage as ndi

# Muscle and blood, the chest wall's and the heart's soft tissue: about +40 HU (the standard
# Hounsfield scale, e.g. Bushberg et al., The Essential Physics of Medical Imaging, 3rd ed.,
# table 10-1: muscle +10..+40, blood +40).
SOFT_TISSUE_HU: Final = 40.0
# "Just inside": the mean of the mask's inner voxels in a box about this wide (mm; at least
# 3 voxels a side), a few voxels of parenchyma at CT resolution.
INTERIOR_MM: Final = 6.0
MIN_INNER_SHARE: Final = 1e-4  # (a box mean: one inner voxel in 9x9x3 is 0.004)
SLAB: Final = 32  # slices per block: memory is a few arrays of a slab, not of the volume
_FACE = ndi.generate_binary_structure(3, 1)


def midpoint_edge(
    labels: np.ndarray, hu: np.ndarray, spacing: tuple[float, ...], threshold: float
) -> np.ndarray:
    """``labels`` (uint8, LPS work arrays; changed in place and returned) without the edge
    voxels that are mostly not lung: voxels of the mask with a face neighbour outside it (the
    volume's own faces do not count: a scan's cut is not an edge), whose HU is below
    ``threshold`` and at or above (local inside mean + SOFT_TISSUE_HU) / 2."""
    zs = np.flatnonzero(labels.any(axis=(1, 2)))
    if zs.size == 0:
        return labels
    size = [max(3, 2 * round(INTERIOR_MM / s / 2) + 1) for s in spacing]
    halo = size[0] // 2 + 1  # the box's reach, plus one slice for the surface test
    peeled = []  # found on the mask as given, removed at the end
    n = labels.shape[0]
    for start in range(int(zs[0]), int(zs[-1]) + 1, SLAB):
        stop = min(start + SLAB, n)
        lo, hi = max(start - halo, 0), min(stop + halo, n)
        lung = labels[lo:hi] > 0
        found = ndi.find_objects(lung.astype(np.uint8))
        if not found:  # (a gap in the lung's z range longer than a slab)
            continue
        # the slab's lung with one voxel around it in-plane; (its own faces count as lung
        # beyond: only the volume's ends are real there, and those are a scan's cut)
        box = (slice(lo, hi),) + tuple(
            slice(max(b.start - 1, 0), min(b.stop + 1, m))
            for b, m in zip(found[0][1:], labels.shape[1:], strict=True)
        )
        lung = lung[:, box[1], box[2]]
        surface = lung & ~ndi.binary_erosion(lung, _FACE, border_value=1)
        inner = lung & ~surface
        part_hu = hu[box]
        # zero beyond the box: total / count is the exact mean of the inner voxels in reach
        total = ndi.uniform_filter(
            np.where(inner, part_hu, 0).astype(np.float32), size, mode="constant"
        )
        count = ndi.uniform_filter(inner.astype(np.float32), size, mode="constant")
        midpoint = (total / np.maximum(count, np.float32(MIN_INNER_SHARE)) + SOFT_TISSUE_HU) / 2
        peel = surface & (count > MIN_INNER_SHARE) & (part_hu < threshold) & (part_hu >= midpoint)
        peel[: start - lo] = False
        peel[stop - lo :] = False
        z, y, x = np.nonzero(peel)
        peeled.append((z + lo, y + box[1].start, x + box[2].start))
    for z, y, x in peeled:
        labels[z, y, x] = 0
    return labels
