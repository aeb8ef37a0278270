"""serialct.lung.qc: lung volume, the plausibility reasons of a lung mask, and the scan's
coverage of the lungs (in the patient's orientation, whatever the storage order)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from lung_phantom import flipped

from serialct.config import defaults
from serialct.constants import LUNG_LEFT, LUNG_RIGHT, MM3_PER_CM3
from serialct.lung import lung_qc, lung_volume_cm3
from serialct.lung.qc import coverage_reasons


@pytest.fixture(scope="module")
def lung_cfg() -> dict:
    return defaults()["lung"]


def test_lung_volume_cm3():
    mask = np.zeros((4, 10, 10), dtype=np.uint8)
    mask[1:3, 2:7, 2:7] = LUNG_RIGHT
    mask[0, 0, 0] = LUNG_LEFT
    image = sitk.GetImageFromArray(mask)
    image.SetSpacing((2.0, 2.0, 5.0))
    assert lung_volume_cm3(image) == pytest.approx(51 * 20.0 / MM3_PER_CM3)


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


def _stack(areas: list[int]) -> sitk.Image:
    """Lung labels stored inferior (array index 0) to superior, identity direction: slice k
    holds a square of about ``areas[k]`` voxels."""
    array = np.zeros((len(areas), 60, 60), dtype=np.uint8)
    for k, area in enumerate(areas):
        side = int(round(np.sqrt(area)))
        array[k, 2 : 2 + side, 2 : 2 + side] = LUNG_RIGHT
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 5.0))
    return image


TAPERED = [0, 16, 400, 1600, 2500, 1600, 400, 4, 0]  # base to apex in the scan
CUT_APEX = [0, 16, 400, 1600, 2500, 2500]  # the top slice as wide as the widest
CUT_BASE = [1600, 2500, 1600, 400, 16]


def _parts(reasons: list[str]) -> set[str]:
    return {part for part in ("apex", "base") for r in reasons if f"lung {part}" in r}


def test_coverage_lungs_tapering_to_nothing_say_nothing():
    assert coverage_reasons(_stack(TAPERED)) == []


def test_coverage_top_slice_as_wide_as_the_widest_is_a_cut_apex():
    reasons = coverage_reasons(_stack(CUT_APEX))
    assert _parts(reasons) == {"apex"}
    assert all(r.startswith("coverage:") for r in reasons)
    assert "100 %" in reasons[0]


def test_coverage_scan_cut_at_the_base():
    assert _parts(coverage_reasons(_stack(CUT_BASE))) == {"base"}


def test_coverage_small_end_slices_are_not_cuts():
    """An end slice with a crumb of lung (well under COVERAGE_CUT_SHARE of the widest) is the
    lung's tip, not a cut."""
    assert coverage_reasons(_stack([16, 1600, 2500, 1600, 36])) == []


@pytest.mark.parametrize("areas", [TAPERED, CUT_APEX, CUT_BASE])
def test_coverage_is_by_orientation_not_storage_order(areas):
    """The same patient stored superior to inferior (array reversed along z, direction matrix
    flipped) gets the same reasons; the reversed array with the identity direction is another
    patient, cut at the other end."""
    image = _stack(areas)
    expected = _parts(coverage_reasons(image))
    assert _parts(coverage_reasons(flipped(image, (0,)))) == expected
    upside_down = sitk.GetImageFromArray(sitk.GetArrayFromImage(image)[::-1].copy())
    upside_down.CopyInformation(image)
    swap = {"apex": "base", "base": "apex"}
    assert _parts(coverage_reasons(upside_down)) == {swap[p] for p in expected}


def test_coverage_empty_mask():
    assert coverage_reasons(_stack([0, 0, 0])) == []


def test_lung_qc_reports_coverage(lung_cfg):
    reasons = lung_qc(_stack(CUT_APEX), lung_cfg)
    assert any(r.startswith("coverage:") and "apex" in r for r in reasons)
