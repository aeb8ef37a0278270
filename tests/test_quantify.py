import numpy as np
import pytest
import SimpleITK as sitk

from serialct import histogram
from serialct.config import defaults
from serialct.constants import LESION_CONSOLIDATION, LESION_GGO, LOBE_LABELS, LUNG_LEFT, LUNG_RIGHT
from serialct.errors import InputError
from serialct.quantify import quantify_scan

SPACING = (2.0, 1.0, 1.5)  # x, y, z in mm (ITK order): 3 mm3 per voxel


def _image(array):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    return image


@pytest.fixture
def scan():
    """Two box lungs of 1000 voxels each; 100 GGO + 50 consolidation voxels in the RUL."""
    shape = (10, 20, 30)
    hu = np.full(shape, -850, np.int16)
    lung = np.zeros(shape, np.uint8)
    lung[:, :10, :10] = LUNG_RIGHT
    lung[:, :10, 20:] = LUNG_LEFT
    lobes = np.zeros(shape, np.uint8)
    lobes[5:, :10, :10] = LOBE_LABELS["rul"]
    lobes[:5, :10, :5] = LOBE_LABELS["rml"]
    lobes[:5, :10, 5:10] = LOBE_LABELS["rll"]
    lobes[5:, :10, 20:] = LOBE_LABELS["lul"]
    lobes[:5, :10, 20:] = LOBE_LABELS["lll"]
    lesion = np.zeros(shape, np.uint8)
    lesion[5:7, :5, :10] = LESION_GGO  # 100 voxels
    lesion[7, :5, :10] = LESION_CONSOLIDATION  # 50 voxels
    hu[lesion == LESION_GGO] = -500
    hu[lesion == LESION_CONSOLIDATION] = 0
    lesion[0, 15, 15] = LESION_GGO  # outside the lung: must not count
    return _image(hu), _image(lung), _image(lobes), _image(lesion), hu, lung


def test_volumes_percents_and_scores(scan):
    ct, lung, lobes, lesion, hu, lung_a = scan
    cfg = defaults()
    cfg["ct_score"]["min_lesion_cm3"] = 0.1  # the box lungs are 3 cm3 each
    reference = histogram.lung_histogram(np.full_like(hu, -850), lung_a > 0, cfg["histogram"])
    m = quantify_scan(ct, lung, lobes, lesion, reference, cfg)
    voxel_cm3 = 3.0 / 1000
    assert m["lung_volume_cm3"] == pytest.approx(2000 * voxel_cm3)
    assert m["right_lung_volume_cm3"] == pytest.approx(1000 * voxel_cm3)
    assert m["lesion_volume_cm3"] == pytest.approx(150 * voxel_cm3)
    assert m["ggo_volume_cm3"] == pytest.approx(100 * voxel_cm3)
    assert m["consolidation_volume_cm3"] == pytest.approx(50 * voxel_cm3)
    assert m["lesion_percent"] == pytest.approx(7.5)
    assert m["lesion_percent_rul"] == pytest.approx(30.0)  # 150 of 500 RUL voxels
    assert m["lesion_percent_lll"] == 0.0
    assert m["ai_score_rul"] == 3
    assert m["involved_lobes"] == 1
    assert m["ai_ct_score"] == 3
    assert 0 < m["hellinger"] <= 1
    assert 0 <= m["iou"] < 1
    # with the default minimum (1 cm3) the 0.45 cm3 in the RUL is a speck: no lobe involved
    m = quantify_scan(ct, lung, lobes, lesion, reference, defaults())
    assert m["ai_score_rul"] == 0 and m["involved_lobes"] == 0 and m["ai_ct_score"] == 0


def test_normal_lung_matches_its_own_reference(scan):
    ct, lung, lobes, _, hu, lung_a = scan
    cfg = defaults()
    normal = _image(np.full_like(hu, -850))
    empty = _image(np.zeros_like(lung_a))
    reference = histogram.lung_histogram(np.full_like(hu, -850), lung_a > 0, cfg["histogram"])
    m = quantify_scan(normal, lung, lobes, empty, reference, cfg)
    assert m["hellinger"] == pytest.approx(0.0, abs=1e-9)
    assert m["iou"] == pytest.approx(1.0)
    assert m["ai_ct_score"] == 0


def test_mismatched_grid_is_refused(scan):
    ct, lung, lobes, lesion, hu, lung_a = scan
    cfg = defaults()
    reference = histogram.lung_histogram(hu, lung_a > 0, cfg["histogram"])
    small = _image(np.zeros((5, 5, 5), np.uint8))
    with pytest.raises(InputError, match="lesion: grid"):
        quantify_scan(ct, lung, lobes, small, reference, cfg)


def test_an_empty_lobe_gives_empty_lobe_values_and_score(scan):
    """Issue 18: a lung whose left lower lobe has no voxels reported lesion_percent_lll 0.0 and
    a full AI CT score; now its per-lobe values, involved lobes and the score are empty, with
    the reason."""
    ct, lung, lobes, lesion, hu, lung_a = scan
    array = sitk.GetArrayFromImage(lobes)
    array[array == LOBE_LABELS["lll"]] = LOBE_LABELS["lul"]
    cfg = defaults()
    reference = histogram.lung_histogram(np.full_like(hu, -850), lung_a > 0, cfg["histogram"])
    m = quantify_scan(ct, lung, _image(array), lesion, reference, cfg)
    assert m["lesion_percent_lll"] is None and m["ai_score_lll"] is None
    assert m["ai_ct_score"] is None and m["involved_lobes"] is None
    assert any("lll" in message for message in m["lobe_messages"])


def test_lobe_denominators_count_lobe_voxels_inside_the_lung(scan):
    """User lobes (lobes_from) may reach outside the lung mask: a lobe's percent divides by its
    voxels inside the lung only (before, 500 extra RUL voxels outside the lung halved it)."""
    ct, lung, lobes, lesion, hu, lung_a = scan
    array = sitk.GetArrayFromImage(lobes)
    outside = (lung_a == 0) & (array == 0)
    extra = np.flatnonzero(outside)[:500]
    array.reshape(-1)[extra] = LOBE_LABELS["rul"]
    cfg = defaults()
    reference = histogram.lung_histogram(np.full_like(hu, -850), lung_a > 0, cfg["histogram"])
    m = quantify_scan(ct, lung, _image(array), lesion, reference, cfg)
    assert m["lesion_percent_rul"] == pytest.approx(30.0)
