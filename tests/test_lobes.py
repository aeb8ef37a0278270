"""The approximate lobe split (completeness, sides, anatomical order, agreement with the phantom's
true lobes) and user lobe masks (lobes_from)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from lung_phantom import flipped, make_chest
from scipy import ndimage

from serialct.config import defaults
from serialct.constants import LOBE_LABELS, LOBE_SIDE, LUNG_LEFT, LUNG_RIGHT
from serialct.errors import InputError
from serialct.lobes import load_user_lobes, segment_lobes, user_lobes_path
from serialct.lung import segment_lungs
from serialct.phantom import draw_phantom, origin_for_shape


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


def _phantom_image(ph, array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(ph.spacing[::-1])
    image.SetOrigin(origin_for_shape(array.shape)[::-1])
    return image


def test_lobes_match_phantom_truth():
    """Planes alone (6.7 mm slices: no fissure search) on phantoms whose lobes take shares of
    their lung drawn across and beyond the published range (serialct.phantom), with fissure
    tilt, carina and bronchi varied too, while the planes assume the published means: each lobe
    overlaps its true lobe and the per-lobe lesion percent (our lobes, true lesions) is near the
    truth. Phantom and split share one model (a plane of given tilt at a lobe share), so this
    measures how far the means carry across patients, not whether fissures are planes. Measured
    on these seeds: worst lobe Dice 0.84 (middle lobe 0.73), mean Dice 0.90, per-lobe error up
    to 5.2 points, mean 1.7. The planes at fixed height fractions used before issue 17 measured
    worst 0.72 (middle 0.46), mean 0.77, errors up to 22.6, mean 4.4 on the same phantoms, and
    fail the mean-Dice bound."""
    dice, overlaps, errors = {}, [], []
    for seed, percent in ((3, 30.0), (4, 45.0), (5, 20.0), (7, 35.0), (8, 42.0)):
        ph = draw_phantom(np.random.default_rng(seed), (48, 128, 128), percent, 0.4)
        lung = _phantom_image(ph, ph.lung)
        lobes = sitk.GetArrayFromImage(segment_lobes(lung, lung))
        truth = ph.lobe_lesion_percent()
        for name, value in LOBE_LABELS.items():
            ours, true = lobes == value, ph.lobes == value
            overlap = 2 * np.count_nonzero(ours & true) / (ours.sum() + true.sum())
            dice[name] = min(dice.get(name, 1.0), overlap)
            overlaps.append(overlap)
            measured = 100 * np.count_nonzero(ph.lesion[ours]) / ours.sum()
            errors.append(abs(measured - truth[name]))
    print(dice, np.mean(overlaps), max(errors), np.mean(errors))
    assert all(d > (0.6 if name == "rml" else 0.78) for name, d in dice.items()), dice
    assert np.mean(overlaps) >= 0.85
    assert max(errors) <= 13.0 and np.mean(errors) <= 3.0


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
    """The same lung, twice as finely sampled in z, keeps the same lobes to within half a coarse
    slice: a level fissure plane takes whole slices (measured: the right middle and upper lobes
    differ by 7.4 % and 4.2 %, a third of the right lung's largest slice; the others by under
    0.1 %)."""
    image, lung, lobes = chest
    lung_a = sitk.GetArrayFromImage(lung)
    fine = sitk.GetImageFromArray(np.repeat(lung_a, 2, axis=0))
    spacing = lung.GetSpacing()
    fine.SetSpacing((spacing[0], spacing[1], spacing[2] / 2))
    fine.SetOrigin(lung.GetOrigin())
    fine_lobes = sitk.GetArrayFromImage(segment_lobes(fine, fine))
    coarse = sitk.GetArrayFromImage(lobes)
    for name, value in LOBE_LABELS.items():
        one_slice = (lung_a == LOBE_SIDE[name]).sum(axis=(1, 2)).max()
        fine_n, coarse_n = np.count_nonzero(fine_lobes == value), np.count_nonzero(coarse == value)
        difference = abs(fine_n - 2 * coarse_n)
        assert difference <= one_slice, (name, difference, one_slice)  # half a coarse slice


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


def _lobe_file(path, array: np.ndarray, spacing=(2.0, 2.0, 2.0)) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


def test_user_lobes_resampled_onto_the_ct(tmp_path):
    coarse = np.zeros((5, 6, 6), dtype=np.uint8)
    coarse[1:4, 1:5, 1:3] = LOBE_LABELS["rll"]
    coarse[1:4, 1:5, 3:5] = LOBE_LABELS["lul"]
    _lobe_file(tmp_path / "p1_s1.nii.gz", coarse)
    ct = sitk.Image(12, 12, 10, sitk.sitkInt16)  # 1 mm voxels over the same 12x12x10 mm
    ct.SetOrigin((-0.5, -0.5, -0.5))
    lobes = load_user_lobes(tmp_path / "p1_s1.nii.gz", ct)
    assert lobes.GetSize() == ct.GetSize() and lobes.GetPixelID() == sitk.sitkUInt8
    array = sitk.GetArrayFromImage(lobes)
    assert set(np.unique(array)) == {0, LOBE_LABELS["rll"], LOBE_LABELS["lul"]}
    assert np.count_nonzero(array) == 8 * np.count_nonzero(coarse)  # nearest neighbour


def test_user_lobes_bad_labels_are_an_input_error(tmp_path):
    bad = np.zeros((4, 4, 4), dtype=np.uint8)
    bad[1, 1, 1] = 7
    _lobe_file(tmp_path / "bad.nii.gz", bad)
    with pytest.raises(InputError, match="bad.nii.gz.*1-5"):
        load_user_lobes(tmp_path / "bad.nii.gz", sitk.Image(4, 4, 4, sitk.sitkInt16))


def test_user_lobes_outside_the_ct_are_an_input_error(tmp_path):
    lobes = np.ones((4, 4, 4), dtype=np.uint8)
    image = sitk.GetImageFromArray(lobes)
    image.SetOrigin((500.0, 0.0, 0.0))
    sitk.WriteImage(image, str(tmp_path / "far.nii.gz"))
    with pytest.raises(InputError, match="overlap"):
        load_user_lobes(tmp_path / "far.nii.gz", sitk.Image(4, 4, 4, sitk.sitkInt16))


def test_user_lobes_path_layouts(tmp_path):
    (tmp_path / "A" / "p1").mkdir(parents=True)
    (tmp_path / "A" / "p1" / "s1.nii.gz").touch()
    (tmp_path / "p2_s3.nrrd").touch()
    assert user_lobes_path(tmp_path, "A", "p1", "s1") == tmp_path / "A" / "p1" / "s1.nii.gz"
    assert user_lobes_path(tmp_path, "B", "p2", "s3") == tmp_path / "p2_s3.nrrd"
    assert user_lobes_path(tmp_path, "A", "p1", "s2") is None
    with pytest.raises(InputError, match="lobes_from"):
        user_lobes_path(tmp_path / "missing", "A", "p1", "s1")


def test_segment_masks_step_uses_user_lobes_and_writes_qc(tmp_path):
    from serialct.steps import segment_masks

    phantom = make_chest()
    ct_path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(phantom.image, str(ct_path))
    config = defaults()
    reasons = segment_masks(ct_path, tmp_path / "lung.nii.gz", tmp_path / "lobes.nii.gz", config)
    qc = json.loads((tmp_path / "lung_qc.json").read_text())
    assert qc["qc_messages"] == reasons and qc["lobes"] == "approximate"
    user = np.full(sitk.GetArrayFromImage(phantom.image).shape, LOBE_LABELS["rml"], np.uint8)
    user_image = sitk.GetImageFromArray(user)
    user_image.CopyInformation(phantom.image)
    sitk.WriteImage(user_image, str(tmp_path / "user.nii.gz"))
    segment_masks(
        ct_path, tmp_path / "lung.nii.gz", tmp_path / "lobes.nii.gz", config,
        user_lobes=tmp_path / "user.nii.gz",
    )  # fmt: skip
    lobes = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "lobes.nii.gz")))
    assert np.all(lobes == LOBE_LABELS["rml"])
    assert json.loads((tmp_path / "lung_qc.json").read_text())["lobes"].endswith("user.nii.gz")


def _fissure_volume(
    spacing: tuple[float, float, float], hide: bool = False
) -> tuple[sitk.Image, sitk.Image, np.ndarray]:
    """A block of right lung (z, y, x voxels 100 x 100 x 80) with an oblique and a horizontal
    fissure drawn as thin bright sheets off the planes (undulating, and placed to give lobes near
    the published extremes: lower lobe 42 % of the lung, middle lobe 13 %, so that the planes,
    placed at the mean shares of 49 % and 17 %, lie 0.06-0.07 of the lung height off them),
    blurred, with noise; optionally a dense lesion hiding part of the oblique fissure. Returns
    CT, lung mask and the true lobes (drawn from the same surfaces)."""
    shape = (100, 100, 80)
    z, y, x = np.indices(shape, dtype=float)
    lung = np.zeros(shape, dtype=np.uint8)
    lung[5:95, 5:95, 5:75] = LUNG_RIGHT
    height, depth = (z - 5) / 89, (y - 5) / 89
    oblique = 0.10 + 0.64 * depth + 0.03 * np.sin(2 * np.pi * x * spacing[2] / 50)
    horizontal = 0.51 + 0.02 * np.cos(2 * np.pi * y * spacing[1] / 60)
    lower = height < oblique
    middle = ~lower & (height < horizontal)
    truth = np.where(
        lower, LOBE_LABELS["rll"], np.where(middle, LOBE_LABELS["rml"], LOBE_LABELS["rul"])
    )
    truth = np.where(lung > 0, truth, 0).astype(np.uint8)
    hu = np.where(lung > 0, -850.0, 40.0)
    for surface, region in ((oblique, lung > 0), (horizontal, (lung > 0) & ~lower)):
        sheet = np.abs(height - surface) * 89 <= 0.5  # one voxel along z
        hu[sheet & region] = -450.0
    if hide:
        hu[30:70, 40:80, 5:45] = np.where(lung[30:70, 40:80, 5:45] > 0, 0.0, 40.0)
    rng = np.random.default_rng(0)
    hu = ndimage.gaussian_filter(hu, 0.6) + rng.normal(0, 25, shape)

    def image(a: np.ndarray) -> sitk.Image:
        out = sitk.GetImageFromArray(a)
        out.SetSpacing(spacing[::-1])
        return out

    return image(hu.astype(np.int16)), image(lung), truth


def _agreement(ours: sitk.Image, truth: np.ndarray, where: np.ndarray | None = None) -> float:
    a = sitk.GetArrayFromImage(ours)
    inside = truth > 0 if where is None else (truth > 0) & where
    return float(np.mean(a[inside] == truth[inside]))


def test_visible_fissures_move_the_split_off_the_planes():
    """Thin-section CT: the split follows the drawn fissures (6-7 % of the lung height off the
    planes, undulating), where the planes alone put ~16 % of the voxels in the wrong lobe; on
    thick voxels the same image gives the planes' split (no search). The bound was 0.97 (0.981
    measured) with the fissures above the old height-fraction planes; with them below the
    share-placed planes, toward the front the smoothed shift falls short of the fissure and
    most of the 3 % left are middle-lobe voxels called lower lobe."""
    ct, lung, truth = _fissure_volume((1.0, 0.8, 0.8))
    assert _agreement(segment_lobes(ct, lung), truth) >= 0.96  # measured 0.968
    thick = (2.0, 0.8, 0.8)
    ct.SetSpacing(thick[::-1])
    lung.SetSpacing(thick[::-1])
    planes = _agreement(segment_lobes(ct, lung), truth)
    assert planes < 0.9  # measured 0.841


def test_fissure_hidden_by_a_dense_lesion_is_bridged():
    """A consolidation hides a third of the oblique fissure: the split is still right away from
    it and, inside it, closer to the truth than the planes."""
    ct, lung, truth = _fissure_volume((1.0, 0.8, 0.8), hide=True)
    hidden = np.zeros(truth.shape, dtype=bool)
    hidden[30:70, 40:80, 5:45] = True
    ours = segment_lobes(ct, lung)
    assert _agreement(ours, truth, ~hidden) >= 0.97  # measured 0.976
    thick = (2.0, 0.8, 0.8)
    ct.SetSpacing(thick[::-1])
    lung.SetSpacing(thick[::-1])
    # measured 0.922 vs 0.681
    assert (
        _agreement(ours, truth, hidden) > _agreement(segment_lobes(ct, lung), truth, hidden) + 0.1
    )


def test_fissure_search_ignores_storage_order():
    """The same fissured lung stored reversed along every axis gets the same lobes."""
    ct, lung, _ = _fissure_volume((1.0, 0.8, 0.8))
    lobes = sitk.GetArrayFromImage(segment_lobes(ct, lung))
    axes = (0, 1, 2)
    reversed_lobes = segment_lobes(flipped(ct, axes), flipped(lung, axes))
    assert np.array_equal(np.flip(sitk.GetArrayFromImage(reversed_lobes), axis=axes), lobes)


def test_validation_carries_true_lobes_onto_the_mask():
    """benchmarks/lung_validation.py's ``mask`` source: every voxel of our lung mask takes the
    nearest true lobe, so tissue wrongly in the mask dilutes that lobe and missed lung drops out
    (the true lobes merely cut to the mask would see the misses only)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "lung_validation.py"
    spec = importlib.util.spec_from_file_location("lung_validation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lobes = np.zeros((4, 6, 10), dtype=np.uint8)
    lobes[:, 1:5, 1:5], lobes[:, 1:5, 5:9] = 1, 2
    mask = lobes > 0
    mask[:, 1, 1:5] = False  # a missed row of lobe 1
    mask[:, 5, 6:9] = True  # tissue below lobe 2 wrongly in the mask
    carried = module._nearest_labels(lobes, mask)
    assert np.array_equal(carried[:, 5, 6:9], np.full((4, 3), 2))
    assert not carried[:, 1, 1:5].any()
    assert np.array_equal(carried[lobes > 0] > 0, mask[lobes > 0])
    assert not carried[~mask].any()
