"""serialct.lung.floor: the lung's floor brought down onto the diaphragm dome where a dense
lesion lines it (and the apex, upside down). The fill is judged on synthetic phantoms by
segmenting each with and without it (``floor_fill_mm`` 0); the dome fit on hand-made floors."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from lung_truth import phantom_image, score_mask

import serialct.lung.floor as floor_module
from serialct.config import defaults
from serialct.lung import segment_lungs
from serialct.lung.floor import fit_dome
from serialct.phantom import draw_phantom


@pytest.fixture(scope="module")
def lung_cfg() -> dict:
    return defaults()["lung"]


def _with_and_without_floor_fill(lung_cfg, seed, percent, consolidation):
    ph = draw_phantom(np.random.default_rng(seed), (96, 192, 192), percent, consolidation)
    image = phantom_image(ph)
    full = sitk.GetArrayFromImage(segment_lungs(image, lung_cfg)) > 0
    bare = sitk.GetArrayFromImage(segment_lungs(image, dict(lung_cfg, floor_fill_mm=0))) > 0
    return ph, full, bare


def test_dense_basal_consolidation_floor_fill(lung_cfg):
    """Half-consolidated 45 % involvement lying on the diaphragm (seed 4, 3.3 mm slices): the
    floor and apex fills bring much of the lost consolidation back (measured here: volume
    -6.1 % -> -1.4 %, Dice 0.965 -> 0.976; at 300x512x512 see benchmarks/lung_validation.py),
    most of what they add is true lung (measured 72 %; 75 %+ before the phantoms' hila and
    fissures varied, issue 17), and nothing lands below or above the true lung."""
    ph, full, bare = _with_and_without_floor_fill(lung_cfg, 4, 45.0, 0.5)
    scores, bare_scores = score_mask(full, ph), score_mask(bare, ph)
    assert bare_scores["volume"] < -0.05  # the hard case: without the fill
    assert scores["volume"] > bare_scores["volume"] + 0.025
    assert abs(scores["volume"]) <= 0.04
    assert scores["dice"] >= 0.97
    assert scores["dice"] > bare_scores["dice"] + 0.008
    dense = ph.lesion == 2
    assert full[dense].mean() > bare[dense].mean() + 0.08
    added = full & ~bare
    assert ph.lung[added].astype(bool).mean() > 0.6
    occupied = np.flatnonzero((ph.lung > 0).any(axis=(1, 2)))
    assert not full[: occupied[0]].any() and not full[occupied[-1] + 1 :].any()


def test_wall_columns_of_a_lined_recess_are_filled(lung_cfg, monkeypatch):
    """Columns of a lesion-lined costophrenic recess whose lung above the floor is only a thin
    rim against the wall (probed outside the lung's interior) take the lining of the nearest
    probed column, so their floor comes down too (seed 4, 40 % involved, half consolidated;
    measured: 0.68 % of the lung added, 80 % of it true lung, Dice 0.9750 -> 0.9771). Over seeds
    1-15 of the same kind the rule raises Dice on 14 (+0.0001..+0.0031) and lowers it on seed 3
    (-0.0009, 33 % true lung). Seed 10, used here until the phantoms drew lobe shares (issue 17)
    and so moved its lesions, now adds only 0.29 % (52 % true lung, Dice +0.0001).
    FLOOR_NEIGHBOUR_MM 0 turns that rule off."""
    ph = draw_phantom(np.random.default_rng(4), (96, 192, 192), 40.0, 0.5)
    image = phantom_image(ph)
    with_rule = sitk.GetArrayFromImage(segment_lungs(image, lung_cfg)) > 0
    monkeypatch.setattr(floor_module, "FLOOR_NEIGHBOUR_MM", 0.0)
    without = sitk.GetArrayFromImage(segment_lungs(image, lung_cfg)) > 0
    added = with_rule & ~without
    assert not (without & ~with_rule).any()
    assert np.count_nonzero(added) > 0.003 * np.count_nonzero(ph.lung)
    assert ph.lung[added].astype(bool).mean() > 0.5
    assert score_mask(with_rule, ph)["dice"] > score_mask(without, ph)["dice"] + 0.0005


def test_apex_fill_adds_true_lung(lung_cfg):
    """The floor fill run upside down: a dense lesion capping the top of the lung (seed 5, 50 %
    involved) comes back; what is added above the unfilled mask's top is true lung (measured:
    0.41 % of the lung, all of it true lung)."""
    ph, full, bare = _with_and_without_floor_fill(lung_cfg, 5, 50.0, 0.3)
    nothing_above = ~np.logical_or.accumulate(bare[::-1], axis=0)[::-1]
    on_top = full & ~bare & nothing_above
    assert np.count_nonzero(on_top) > 0.002 * np.count_nonzero(ph.lung)
    assert ph.lung[on_top].astype(bool).mean() > 0.95
    assert score_mask(full, ph)["dice"] > score_mask(bare, ph)["dice"] + 0.004


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
    assert score_mask(full, ph)["dice"] >= 0.99
