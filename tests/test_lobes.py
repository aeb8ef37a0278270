"""The approximate lobe split: completeness, sides, fractions and anatomical order."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from lung_phantom import flipped, make_chest

from serialct.config import defaults
from serialct.constants import LOBE_LABELS, LOBE_SIDE, LUNG_LEFT, LUNG_RIGHT
from serialct.errors import InputError
from serialct.lobes import LOBE_FRACTION, segment_lobes
from serialct.lung import segment_lungs


@pytest.fixture(scope="module")
def chest():
    phantom = make_chest()
    lung = segment_lungs(phantom.image, defaults()["lung"])
    return phantom.image, lung, segment_lobes(phantom.image, lung)


def _physical(image: sitk.Image, mask: np.ndarray) -> np.ndarray:
    """(n, 3) LPS coordinates (mm) of the voxels of ``mask``."""
    z, y, x = np.nonzero(mask)
    matrix = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    return np.array(image.GetOrigin()) + np.stack([x, y, z], axis=1) @ matrix.T


def test_every_lung_voxel_has_one_lobe_of_its_side(chest):
    _, lung, lobes = chest
    lung_a = sitk.GetArrayFromImage(lung)
    lobes_a = sitk.GetArrayFromImage(lobes)
    assert lobes.GetPixelID() == sitk.sitkUInt8
    assert np.array_equal(lung_a > 0, lobes_a > 0)
    for name, value in LOBE_LABELS.items():
        side = LOBE_SIDE[name]
        assert np.all(lung_a[lobes_a == value] == side)
        assert np.count_nonzero(lobes_a == value) > 0


def test_lobe_fractions(chest):
    _, lung, lobes = chest
    lung_a = sitk.GetArrayFromImage(lung)
    lobes_a = sitk.GetArrayFromImage(lobes)
    for name, value in LOBE_LABELS.items():
        share = np.count_nonzero(lobes_a == value) / np.count_nonzero(lung_a == LOBE_SIDE[name])
        assert share == pytest.approx(LOBE_FRACTION[name], abs=0.02)


def test_lobes_in_anatomical_order(chest):
    _, _, lobes = chest
    lobes_a = sitk.GetArrayFromImage(lobes)
    centre = {
        name: _physical(lobes, lobes_a == value).mean(axis=0) for name, value in LOBE_LABELS.items()
    }
    x, y, z = 0, 1, 2  # LPS: +y posterior, +z superior
    assert centre["rul"][z] > centre["rml"][z] and centre["rul"][z] > centre["rll"][z] + 20
    assert centre["lul"][z] > centre["lll"][z] + 20
    assert centre["rml"][y] < centre["rll"][y] - 10  # middle lobe in front of the lower
    assert centre["lul"][y] < centre["lll"][y]
    assert max(centre[n][x] for n in ("rul", "rml", "rll")) < 0 < centre["lll"][x]


def test_superior_apex_is_upper_lobe(chest):
    _, lung, lobes = chest
    lung_a = sitk.GetArrayFromImage(lung)
    lobes_a = sitk.GetArrayFromImage(lobes)
    for side, upper, lower in (
        (LUNG_RIGHT, LOBE_LABELS["rul"], LOBE_LABELS["rll"]),
        (LUNG_LEFT, LOBE_LABELS["lul"], LOBE_LABELS["lll"]),
    ):
        zs = np.flatnonzero((lung_a == side).any(axis=(1, 2)))
        top, bottom = zs[-1], zs[0]  # identity direction: last slice is superior
        assert np.all(lobes_a[top][lung_a[top] == side] == upper)
        posterior_base = lobes_a[bottom][lung_a[bottom] == side]
        assert np.mean(posterior_base == lower) > 0.5


def test_flipped_storage_gives_the_same_lobes(chest):
    image, lung, lobes = chest
    axes = (0, 1, 2)
    flipped_lobes = segment_lobes(flipped(image, axes), flipped(lung, axes))
    assert np.array_equal(
        np.flip(sitk.GetArrayFromImage(flipped_lobes), axis=axes), sitk.GetArrayFromImage(lobes)
    )


def test_anisotropy_does_not_matter(chest):
    """The same lung, twice as finely sampled in z, keeps the same lobe shares."""
    image, lung, lobes = chest
    fine = sitk.GetImageFromArray(np.repeat(sitk.GetArrayFromImage(lung), 2, axis=0))
    spacing = lung.GetSpacing()
    fine.SetSpacing((spacing[0], spacing[1], spacing[2] / 2))
    fine.SetOrigin(lung.GetOrigin())
    fine_lobes = sitk.GetArrayFromImage(segment_lobes(fine, fine))
    coarse = sitk.GetArrayFromImage(lobes)
    for value in LOBE_LABELS.values():
        assert np.count_nonzero(fine_lobes == value) == pytest.approx(
            2 * np.count_nonzero(coarse == value), rel=0.05
        )


def test_one_lung_only():
    lung = np.zeros((10, 12, 12), dtype=np.uint8)
    lung[2:8, 3:9, 1:5] = LUNG_LEFT
    image = sitk.GetImageFromArray(lung)
    lobes = sitk.GetArrayFromImage(segment_lobes(image, image))
    assert set(np.unique(lobes[lung > 0])) == {LOBE_LABELS["lul"], LOBE_LABELS["lll"]}
    assert not lobes[lung == 0].any()


def test_grid_mismatch_is_an_input_error():
    ct = sitk.Image(8, 8, 4, sitk.sitkInt16)
    lung = sitk.Image(8, 8, 5, sitk.sitkUInt8)
    with pytest.raises(InputError, match="lung mask"):
        segment_lobes(ct, lung)
