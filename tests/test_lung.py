"""Lung masks on a synthetic chest phantom (volume truth) and on real CT slices."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from lung_phantom import LUNG_SEMI, flipped, make_chest

import serialct.lung.floor as floor_module
from serialct.config import defaults
from serialct.constants import LUNG_LEFT, LUNG_RIGHT, MM3_PER_CM3
from serialct.lung import lung_qc, lung_volume_cm3, segment_lungs
from serialct.lung.floor import fit_dome
from serialct.phantom import draw_phantom, origin_for_shape

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
# Middle-slice lung areas (cm2) of the real samples, checked by eye on the mask outlines
# (right lung follows the mediastinum, left lung the heart; at the bases liver and stomach out,
# the oesophagus' air out): (right, left).
REAL_AREAS_CM2 = {
    "lungmask-chest-slices": (126.6, 71.9),
    "ge-3slice-lung-bases": (89.1, 85.4),
}
REAL_AREA_TOLERANCE = 0.08  # relative


@pytest.fixture(scope="module")
def lung_cfg() -> dict:
    return defaults()["lung"]


@pytest.fixture(scope="module")
def chest():
    return make_chest()


@pytest.fixture(scope="module")
def timed_mask(chest, lung_cfg) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    mask = segment_lungs(chest.image, lung_cfg)
    return sitk.GetArrayFromImage(mask), time.perf_counter() - start


@pytest.fixture(scope="module")
def chest_mask(timed_mask) -> np.ndarray:
    return timed_mask[0]


def _read_series(folder: Path) -> sitk.Image:
    if not folder.is_dir():
        pytest.skip(f"real sample {folder} not present")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _physical_x(image: sitk.Image, mask: np.ndarray) -> np.ndarray:
    z, y, x = np.nonzero(mask)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    steps = direction[0] * np.array(image.GetSpacing())
    return image.GetOrigin()[0] + steps[0] * x + steps[1] * y + steps[2] * z


def test_geometry_and_labels(chest, chest_mask):
    out = segment_lungs(chest.image, defaults()["lung"])
    assert out.GetPixelID() == sitk.sitkUInt8
    assert out.GetSize() == chest.image.GetSize()
    assert np.allclose(out.GetOrigin(), chest.image.GetOrigin())
    assert set(np.unique(chest_mask)) == {0, LUNG_RIGHT, LUNG_LEFT}


def test_volume_matches_truth(chest, chest_mask):
    voxel_cm3 = float(np.prod(chest.image.GetSpacing())) / MM3_PER_CM3
    truth = np.count_nonzero(chest.lung) * voxel_cm3
    measured = np.count_nonzero(chest_mask) * voxel_cm3
    assert measured == pytest.approx(truth, rel=0.03)
    for side in (LUNG_RIGHT, LUNG_LEFT):
        overlap = np.count_nonzero((chest_mask == side) & (chest.lung == side))
        assert overlap / np.count_nonzero(chest.lung == side) > 0.98


def test_consolidation_inside_mask(chest, chest_mask):
    assert np.mean(chest_mask[chest.lesions] > 0) > 0.95
    assert np.mean(chest_mask[chest.subpleural] > 0) > 0.95


def test_closing_is_what_puts_subpleural_lesions_back(chest, lung_cfg):
    bare = dict(lung_cfg, closing_mm=0, subpleural_mm=0)
    mask = sitk.GetArrayFromImage(segment_lungs(chest.image, bare))
    assert np.mean(mask[chest.subpleural] > 0) < 0.8


def test_trachea_and_bronchi_excluded(chest, chest_mask):
    assert chest.airway.sum() > 500
    assert np.mean(chest_mask[chest.airway] > 0) < 0.02


def test_right_lung_has_lower_physical_x(chest, chest_mask):
    right = _physical_x(chest.image, chest_mask == LUNG_RIGHT)
    left = _physical_x(chest.image, chest_mask == LUNG_LEFT)
    assert right.max() < 0 < left.min()


@pytest.mark.parametrize("axes", [(2,), (0, 2), (0, 1, 2)])
def test_flipped_storage_gives_the_same_physical_mask(chest, chest_mask, lung_cfg, axes):
    image = flipped(chest.image, axes)
    mask = sitk.GetArrayFromImage(segment_lungs(image, lung_cfg))
    assert np.array_equal(np.flip(mask, axis=axes), chest_mask)
    right = _physical_x(image, mask == LUNG_RIGHT)
    left = _physical_x(image, mask == LUNG_LEFT)
    assert right.mean() < left.mean()


def test_touching_lungs_are_split(lung_cfg):
    chest = make_chest(centre_x=LUNG_SEMI[0] - 1.5, seed=1)
    contact = np.count_nonzero(np.diff(chest.lung.astype(np.int8), axis=2) == 1)  # R->L faces
    assert contact > 20  # the phantom's lungs do touch
    mask = sitk.GetArrayFromImage(segment_lungs(chest.image, lung_cfg))
    for side in (LUNG_RIGHT, LUNG_LEFT):
        overlap = np.count_nonzero((mask == side) & (chest.lung == side))
        assert overlap / np.count_nonzero(chest.lung == side) > 0.97


def test_thin_volume(chest, chest_mask, lung_cfg):
    middle = slice(20, 23)
    thin = sitk.GetImageFromArray(sitk.GetArrayFromImage(chest.image)[middle])
    thin.SetSpacing(chest.image.GetSpacing())
    mask = sitk.GetArrayFromImage(segment_lungs(thin, lung_cfg))
    truth = chest.lung[middle]
    assert np.count_nonzero(mask) == pytest.approx(np.count_nonzero(truth), rel=0.03)
    assert np.mean(mask[truth == LUNG_RIGHT] == LUNG_RIGHT) > 0.98


def test_no_body_gives_an_empty_mask(lung_cfg):
    air = sitk.GetImageFromArray(np.full((3, 16, 16), -1000, dtype=np.int16))
    assert not sitk.GetArrayFromImage(segment_lungs(air, lung_cfg)).any()


def test_lung_volume_cm3():
    mask = np.zeros((4, 10, 10), dtype=np.uint8)
    mask[1:3, 2:7, 2:7] = LUNG_RIGHT
    mask[0, 0, 0] = LUNG_LEFT
    image = sitk.GetImageFromArray(mask)
    image.SetSpacing((2.0, 2.0, 5.0))
    assert lung_volume_cm3(image) == pytest.approx(51 * 20.0 / MM3_PER_CM3)


def test_speed_small_volume(timed_mask):
    mask, seconds = timed_mask
    assert mask.shape == (48, 128, 128)
    assert seconds < 5.0  # about 0.5 s on 2 cores


def _side_areas(image: sitk.Image, mask: np.ndarray) -> dict[int, tuple[float, float]]:
    """Per side: area (cm2) on the middle slice, mean physical x."""
    z = mask.shape[0] // 2
    pixel_cm2 = image.GetSpacing()[0] * image.GetSpacing()[1] / 100.0
    out = {}
    for side in (LUNG_RIGHT, LUNG_LEFT):
        one = np.zeros_like(mask, dtype=bool)
        one[z] = mask[z] == side
        out[side] = (np.count_nonzero(one) * pixel_cm2, float(_physical_x(image, one).mean()))
    return out


@pytest.mark.parametrize("folder", sorted(REAL_AREAS_CM2))
def test_real_slices(folder, lung_cfg):
    image = _read_series(REAL / folder)
    mask = sitk.GetArrayFromImage(segment_lungs(image, lung_cfg))
    areas = _side_areas(image, mask)
    for side, expected in zip((LUNG_RIGHT, LUNG_LEFT), REAL_AREAS_CM2[folder], strict=True):
        assert areas[side][0] == pytest.approx(expected, rel=REAL_AREA_TOLERANCE)
    assert areas[LUNG_RIGHT][1] < areas[LUNG_LEFT][1]
    # the right lung is on the image's left half (identity direction in these samples)
    z = mask.shape[0] // 2
    assert np.nonzero(mask[z] == LUNG_RIGHT)[1].mean() < mask.shape[2] / 2
    hu = sitk.GetArrayFromImage(image)
    assert np.median(hu[mask > 0]) < -600  # aerated lung, not soft tissue
    # a few slices: the QC says so (small volume, lung reaching the first/last slice)
    reasons = lung_qc(sitk.GetImageFromArray(mask), lung_cfg)
    assert any(r.startswith("coverage:") for r in reasons)


def test_real_chest_png(lung_cfg, tmp_path):
    """Writes /tmp/lung_real.png (the real chest slice with the mask outline) to look at."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = _read_series(REAL / "lungmask-chest-slices")
    mask = sitk.GetArrayFromImage(segment_lungs(image, lung_cfg))
    hu = sitk.GetArrayFromImage(image)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(hu[0], cmap="gray", vmin=-1200, vmax=400)
    for side, colour in ((LUNG_RIGHT, "red"), (LUNG_LEFT, "cyan")):
        ax.contour(mask[0] == side, levels=[0.5], colors=colour, linewidths=0.8)
    ax.set_title("lung mask: red = right, cyan = left")
    ax.axis("off")
    target = Path("/tmp/lung_real.png")
    try:
        fig.savefig(target, dpi=100, bbox_inches="tight")
    except OSError:
        fig.savefig(tmp_path / "lung_real.png", dpi=100, bbox_inches="tight")
    plt.close(fig)


# --- synthetic chest phantoms (serialct.phantom) with true lung, lobes and lesions ---

# (shape, seed, lesion percent, consolidation fraction, min Dice, max |volume error|, min share
# of lesion voxels inside). Issue 4's goals are Dice >= 0.97 and volume within 3 %. Since the
# fills on the mediastinal side need a ground-glass halo (issue 17: on real CT they took in
# the heart and hilum), the coarse (2.8 mm) dense phantoms lose consolidation lying bare
# against their mediastinum: measured seed 3 lesion share 0.895, seed 8 Dice 0.9697, volume
# -4.2 %, lesion share 0.883 (before: all goals met); at 300x512x512 see
# benchmarks/lung_validation.py.
PHANTOM_CASES = [
    ((48, 128, 128), 1, 0.0, 0.15, 0.97, 0.03, 0.9),
    ((48, 128, 128), 6, 0.0, 0.15, 0.97, 0.03, 0.9),
    ((48, 128, 128), 3, 30.0, 0.4, 0.97, 0.03, 0.88),
    ((48, 128, 128), 8, 42.0, 0.45, 0.965, 0.05, 0.87),
    ((96, 192, 192), 1, 0.0, 0.15, 0.97, 0.03, 0.9),
    ((96, 192, 192), 8, 42.0, 0.45, 0.97, 0.03, 0.9),
]


def _phantom_image(ph) -> sitk.Image:
    image = sitk.GetImageFromArray(ph.hu)
    image.SetSpacing(ph.spacing[::-1])
    image.SetOrigin(origin_for_shape(ph.hu.shape)[::-1])
    return image


def _scores(mask: np.ndarray, ph) -> dict[str, float]:
    truth = ph.lung > 0
    lesion = ph.lesion > 0
    return {
        "dice": 2 * np.count_nonzero(mask & truth) / (mask.sum() + truth.sum()),
        "volume": mask.sum() / truth.sum() - 1,
        "lesion_in": float(mask[lesion].mean()) if lesion.any() else 1.0,
    }


@pytest.mark.parametrize(
    ("shape", "seed", "percent", "consolidation", "dice", "volume", "lesion_in"), PHANTOM_CASES
)
def test_phantom_dice_volume_lesions(
    lung_cfg, shape, seed, percent, consolidation, dice, volume, lesion_in
):
    """Normal lungs and lungs with 30-42 % involvement, about half of it consolidated: Dice,
    volume and the share of lesion voxels inside the mask (PHANTOM_CASES)."""
    ph = draw_phantom(np.random.default_rng(seed), shape, percent, consolidation)
    mask = sitk.GetArrayFromImage(segment_lungs(_phantom_image(ph), lung_cfg))
    scores = _scores(mask > 0, ph)
    print(seed, shape, scores)
    assert scores["dice"] >= dice
    assert abs(scores["volume"]) <= volume
    assert scores["lesion_in"] >= lesion_in
    for side in (LUNG_RIGHT, LUNG_LEFT):  # sides right
        assert np.mean(mask[ph.lung == side] == side) > 0.9


def test_dense_lesion_fills_do_the_work(lung_cfg):
    """Without the z-gap fill and the halo-lined deep bites much more consolidation is lost."""
    ph = draw_phantom(np.random.default_rng(8), (48, 128, 128), 42.0, 0.45)
    image = _phantom_image(ph)
    dense = ph.lesion == 2
    full = sitk.GetArrayFromImage(segment_lungs(image, lung_cfg)) > 0
    bare = dict(lung_cfg, z_gap_mm=0, lesion_bite_mm=0)
    less = sitk.GetArrayFromImage(segment_lungs(image, bare)) > 0
    assert full[dense].mean() > less[dense].mean() + 0.1


def _with_and_without_floor_fill(lung_cfg, seed, percent, consolidation):
    ph = draw_phantom(np.random.default_rng(seed), (96, 192, 192), percent, consolidation)
    image = _phantom_image(ph)
    full = sitk.GetArrayFromImage(segment_lungs(image, lung_cfg)) > 0
    bare = sitk.GetArrayFromImage(segment_lungs(image, dict(lung_cfg, floor_fill_mm=0))) > 0
    return ph, full, bare


def test_dense_basal_consolidation_floor_fill(lung_cfg):
    """Half-consolidated 45 % involvement lying on the diaphragm (seed 4, 3.3 mm slices): the
    floor and apex fills bring much of the lost consolidation back (measured here: volume
    -6.8 % -> -2.9 %, Dice 0.959 -> 0.973; at 300x512x512 see benchmarks/lung_validation.py),
    most of what they add is true lung, and nothing lands below or above the true lung."""
    ph, full, bare = _with_and_without_floor_fill(lung_cfg, 4, 45.0, 0.5)
    scores, bare_scores = _scores(full, ph), _scores(bare, ph)
    assert bare_scores["volume"] < -0.06  # the hard case: without the fill
    assert scores["volume"] > bare_scores["volume"] + 0.025
    assert abs(scores["volume"]) <= 0.04
    assert scores["dice"] >= 0.97
    assert scores["dice"] > bare_scores["dice"] + 0.008
    dense = ph.lesion == 2
    assert full[dense].mean() > bare[dense].mean() + 0.08
    added = full & ~bare
    assert ph.lung[added].astype(bool).mean() > 0.75
    occupied = np.flatnonzero((ph.lung > 0).any(axis=(1, 2)))
    assert not full[: occupied[0]].any() and not full[occupied[-1] + 1 :].any()


def test_wall_columns_of_a_lined_recess_are_filled(lung_cfg, monkeypatch):
    """Columns of a lesion-lined costophrenic recess whose lung above the floor is only a thin
    rim against the wall (probed outside the lung's interior) take the lining of the nearest
    probed column, so their floor comes down too (seed 10, 40 % involved, half consolidated;
    measured: 0.47 % of the lung added, 98 % of it true lung, Dice 0.9738 -> 0.9762).
    FLOOR_NEIGHBOUR_MM 0 turns that rule off."""
    ph = draw_phantom(np.random.default_rng(10), (96, 192, 192), 40.0, 0.5)
    image = _phantom_image(ph)
    with_rule = sitk.GetArrayFromImage(segment_lungs(image, lung_cfg)) > 0
    monkeypatch.setattr(floor_module, "FLOOR_NEIGHBOUR_MM", 0.0)
    without = sitk.GetArrayFromImage(segment_lungs(image, lung_cfg)) > 0
    added = with_rule & ~without
    assert not (without & ~with_rule).any()
    assert np.count_nonzero(added) > 0.003 * np.count_nonzero(ph.lung)
    assert ph.lung[added].astype(bool).mean() > 0.9
    assert _scores(with_rule, ph)["dice"] > _scores(without, ph)["dice"] + 0.001


def test_apex_fill_adds_true_lung(lung_cfg):
    """The floor fill run upside down: a dense lesion capping the top of the lung (seed 5, 50 %
    involved) comes back; what is added above the unfilled mask's top is true lung (measured:
    0.41 % of the lung, all of it true lung)."""
    ph, full, bare = _with_and_without_floor_fill(lung_cfg, 5, 50.0, 0.3)
    nothing_above = ~np.logical_or.accumulate(bare[::-1], axis=0)[::-1]
    on_top = full & ~bare & nothing_above
    assert np.count_nonzero(on_top) > 0.002 * np.count_nonzero(ph.lung)
    assert ph.lung[on_top].astype(bool).mean() > 0.95
    assert _scores(full, ph)["dice"] > _scores(bare, ph)["dice"] + 0.004


def test_dome_is_a_low_quantile_fit():
    """The diaphragm dome under the lung, fitted to column floors where a quarter of the floors
    lie 50 mm higher (the heart under the lung): the quantile fit stays on the dome (measured:
    95 % of columns within 0.9 mm); a least-squares fit is tilted, 42 mm off at the 95th
    percentile."""
    spacing = (2.0, 2.0, 2.0)
    y, x = np.mgrid[0:60, 0:50]
    r2 = ((y - 30) / 30.0) ** 2 + ((x - 25) / 25.0) ** 2
    inside = r2 < 1
    true_mm = 20.0 + 40.0 * (1 - r2)
    heart = inside & (x < 20) & (y < 30)
    floor = np.round((true_mm + 50.0 * heart) / spacing[0]).astype(int)
    dome = fit_dome(floor, inside, inside, spacing)
    error = np.abs(dome[inside] * spacing[0] - true_mm[inside])
    assert np.percentile(error, 95) < 2.5
    a = np.stack([np.ones(inside.sum()), y[inside], x[inside], y[inside] ** 2,
                  y[inside] * x[inside], x[inside] ** 2], axis=1)  # fmt: skip
    coef, *_ = np.linalg.lstsq(a, floor[inside] * spacing[0], rcond=None)
    assert np.percentile(np.abs(a @ coef - true_mm[inside]), 95) > 8


def test_floor_fill_leaves_normal_lungs_alone(lung_cfg):
    """On a normal lung (no lesion lines the floor) the fill adds almost nothing."""
    ph, full, bare = _with_and_without_floor_fill(lung_cfg, 1, 0.0, 0.15)
    assert np.count_nonzero(full & ~bare) < 0.003 * np.count_nonzero(ph.lung)
    assert _scores(full, ph)["dice"] >= 0.99


def test_work_grid_refined_at_full_resolution(lung_cfg):
    """A coarse work grid (blocks of 2 in-plane) keeps Dice and volume."""
    ph = draw_phantom(np.random.default_rng(3), (96, 192, 192), 30.0, 0.4)
    image = _phantom_image(ph)
    start = time.perf_counter()
    coarse = sitk.GetArrayFromImage(segment_lungs(image, dict(lung_cfg, grid_mm=4.0)))
    coarse_s = time.perf_counter() - start
    start = time.perf_counter()
    fine = sitk.GetArrayFromImage(segment_lungs(image, dict(lung_cfg, grid_mm=0)))
    fine_s = time.perf_counter() - start
    scores = _scores(coarse > 0, ph)
    assert scores["dice"] >= 0.97 and abs(scores["volume"]) <= 0.03
    assert coarse_s < fine_s
    assert np.mean(coarse[fine > 0] == fine[fine > 0]) > 0.97


def _labels(right: int, left: int, shape=(20, 40, 40), spacing=(10.0, 10.0, 10.0)):
    """A label image with ``right`` and ``left`` voxels (1 cm3 each), away from the border."""
    array = np.zeros(shape, dtype=np.uint8)
    inner = np.zeros(shape, dtype=bool)
    inner[2:-2, 2:-2, 2:-2] = True
    cells = np.flatnonzero(inner)
    array.reshape(-1)[cells[:right]] = LUNG_RIGHT
    array.reshape(-1)[cells[right : right + left]] = LUNG_LEFT
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    return image


def test_lung_qc_plausible_mask_has_no_reasons(lung_cfg):
    assert lung_qc(_labels(2600, 2200), lung_cfg) == []


@pytest.mark.parametrize(
    ("right", "left", "expected"),
    [
        (600, 500, "lung volume 1100 cm3"),
        (6000, 5000, "lung volume 11000 cm3"),
        (3500, 1000, "ratio 3.50"),
        (1000, 2500, "ratio 0.40"),
        (3000, 0, "only the right lung"),
    ],
)
def test_lung_qc_reasons(lung_cfg, right, left, expected):
    reasons = lung_qc(_labels(right, left), lung_cfg)
    assert any(expected in r for r in reasons), reasons


def test_lung_qc_border(lung_cfg):
    image = _labels(2600, 2200)
    array = sitk.GetArrayFromImage(image)
    array[10, 0, 5] = LUNG_LEFT
    touching = sitk.GetImageFromArray(array)
    touching.CopyInformation(image)
    assert any("image border" in r for r in lung_qc(touching, lung_cfg))
