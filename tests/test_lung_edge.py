"""serialct.lung.edge: the mask's outer layer at the partial-volume midpoint, on hand-made
volumes whose true edge is known (a sphere drawn at 4x resolution, averaged into voxels and
blurred by a point-spread function of one voxel, as a scanner does)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

import serialct.lung.edge as edge_module
from serialct.lung.edge import INTERIOR_MM, SOFT_TISSUE_HU, midpoint_edge

SPACING = (2.0, 2.0, 2.0)
THRESHOLD = -300.0
SUPER = 4  # sub-voxels per voxel side
PSF_VOXELS = 1.0  # Gaussian sigma of the point-spread function


def _ball(shape: tuple[int, int, int], centre: tuple[float, ...], radius: float) -> np.ndarray:
    """Share (0-1) of each voxel inside the ball (voxel units), from SUPER^3 sub-voxels."""
    grids = np.meshgrid(
        *[(np.arange(n * SUPER) + 0.5) / SUPER for n in shape], indexing="ij", sparse=True
    )
    inside = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) <= radius**2
    return inside.reshape(shape[0], SUPER, shape[1], SUPER, shape[2], SUPER).mean(axis=(1, 3, 5))


def _scan(lung_hu: float) -> tuple[np.ndarray, np.ndarray]:
    """(HU, share of lung) of a ball of lung at ``lung_hu`` in soft tissue."""
    share = _ball((30, 30, 30), (15.0, 15.0, 15.0), 11.3)
    hu = share * lung_hu + (1 - share) * SOFT_TISSUE_HU
    return ndi.gaussian_filter(hu, PSF_VOXELS), share


def test_the_edge_moves_to_the_partial_volume_midpoint() -> None:
    hu, share = _scan(-850.0)
    labels = (hu < THRESHOLD).astype(np.uint8)  # the threshold counts voxels 37 % lung and up
    out = midpoint_edge(labels.copy(), hu, SPACING, THRESHOLD)
    truth = share.sum()
    before, after = labels.sum() / truth - 1, (out > 0).sum() / truth - 1
    assert before > 0.03  # measured: +3.7 %
    assert abs(after) < 0.02, after  # measured: +1.0 %
    assert set(np.unique(out[labels == 0])) == {0}  # it only removes


def test_ground_glass_against_the_wall_keeps_its_edge() -> None:
    # a lesion at -500 HU: its edge voxels between -405 and -300 HU are mostly lesion
    hu, _ = _scan(-500.0)
    labels = (hu < THRESHOLD).astype(np.uint8)
    out = midpoint_edge(labels.copy(), hu, SPACING, THRESHOLD)
    assert (out > 0).sum() == labels.sum()


def test_fill_added_voxels_above_the_threshold_stay() -> None:
    hu, _ = _scan(-850.0)
    labels = (hu < THRESHOLD).astype(np.uint8)
    dense = (hu >= THRESHOLD) & (hu < 0)
    labels[dense] = 1  # as if a fill had put a consolidation's rim in
    out = midpoint_edge(labels.copy(), hu, SPACING, THRESHOLD)
    assert (out[dense] > 0).all()


def test_a_scans_cut_is_not_an_edge() -> None:
    hu, _ = _scan(-850.0)
    cut_hu, labels = hu[:15], (hu[:15] < THRESHOLD).astype(np.uint8)  # the ball's lower half
    out = midpoint_edge(labels.copy(), cut_hu, SPACING, THRESHOLD)
    top = labels[-1] > 0
    assert (out[-1][top] > 0).sum() >= 0.9 * top.sum()  # only the top slice's own rim goes
    assert (out > 0).sum() < labels.sum()


def test_no_lung_is_returned_unchanged() -> None:
    labels = np.zeros((4, 5, 6), dtype=np.uint8)
    assert midpoint_edge(labels, np.zeros(labels.shape), SPACING, THRESHOLD) is labels


def _whole_volume(labels: np.ndarray, hu: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """The rule without slabs or crops: the reference the block-wise version must equal."""
    face = ndi.generate_binary_structure(3, 1)
    lung = labels > 0
    surface = lung & ~ndi.binary_erosion(lung, face, border_value=1)
    inner = lung & ~surface
    size = [max(3, 2 * round(INTERIOR_MM / s / 2) + 1) for s in spacing]
    total = ndi.uniform_filter(np.where(inner, hu, 0.0), size, mode="constant")
    count = ndi.uniform_filter(inner.astype(float), size, mode="constant")
    midpoint = (total / np.maximum(count, 1e-12) + SOFT_TISSUE_HU) / 2
    out = labels.copy()
    out[surface & (count > 1e-9) & (hu < THRESHOLD) & (hu >= midpoint)] = 0
    return out


@pytest.mark.parametrize("slab", [3, 7, 32])
def test_blocks_give_the_whole_volume_answer(monkeypatch, slab: int) -> None:  # type: ignore[no-untyped-def]
    """Slabs along z, crops in-plane and a gap in the lung longer than a slab: the same voxels
    as the rule computed on the whole volume at once (anisotropic voxels, lung inset)."""
    rng = np.random.default_rng(0)
    parts = np.zeros((40, 36, 44), np.uint8)
    parts[2:16, 5:30, 6:38] = 1
    parts[28:39, 8:28, 10:20] = 2  # 12 empty slices between the two parts
    hu = np.where(parts > 0, -850.0, SOFT_TISSUE_HU) + rng.normal(0, 60, parts.shape)
    hu = ndi.gaussian_filter(hu, 1.0)
    grown = ndi.grey_dilation(parts, size=(3, 3, 3))
    labels = np.where(hu < THRESHOLD, grown, 0).astype(np.uint8)
    spacing = (1.0, 0.7, 0.7)
    monkeypatch.setattr(edge_module, "SLAB", slab)
    expected = _whole_volume(labels, hu, spacing)
    assert (expected != labels).any()
    assert np.array_equal(midpoint_edge(labels.copy(), hu, spacing, THRESHOLD), expected)
