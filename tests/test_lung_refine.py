"""serialct.lung.refine: full-resolution labels from the work grid's, on hand-made arrays, and
the coarse work grid against full resolution on a synthetic phantom."""

from __future__ import annotations

import time

import numpy as np
import pytest
import SimpleITK as sitk
from lung_truth import phantom_image, score_mask

from serialct.config import defaults
from serialct.constants import LUNG_LEFT, LUNG_RIGHT
from serialct.lung import segment_lungs
from serialct.lung.refine import expand, refine
from serialct.phantom import draw_phantom

THRESHOLD = -400.0
AERATED, DENSE = -850.0, 40.0


@pytest.fixture(scope="module")
def lung_cfg() -> dict:
    return defaults()["lung"]


def test_expand_repeats_blocks_and_pads_the_remainder():
    coarse = np.array([[1, 2], [3, 4]])
    out = expand(coarse, (2, 3), (5, 7))
    expected = np.array(
        [[1, 1, 1, 2, 2, 2, 2]] * 2 + [[3, 3, 3, 4, 4, 4, 4]] * 3,
    )
    assert np.array_equal(out, expected)


def test_expand_factor_one_only_pads():
    coarse = np.arange(6).reshape(1, 2, 3)
    out = expand(coarse, (1, 1, 2), (2, 2, 6))
    assert out.shape == (2, 2, 6)
    assert np.array_equal(out[0], [[0, 0, 1, 1, 2, 2], [3, 3, 4, 4, 5, 5]])
    assert np.array_equal(out[1], out[0])


def _scene():
    """Full resolution (6, 16, 32), work grid in-plane blocks of 2 (6, 8, 16). The true lungs'
    edges fall inside blocks (odd first index or odd length); the coarse lungs are the blocks
    wholly inside them, so every true lung voxel lies within one block of its coarse lung."""
    hu = np.full((6, 16, 32), DENSE)
    truth = np.zeros(hu.shape, dtype=np.uint8)
    truth[1:5, 3:13, 3:11] = LUNG_RIGHT
    truth[1:5, 3:13, 19:29] = LUNG_LEFT
    hu[truth > 0] = AERATED
    coarse = np.zeros((6, 8, 16), dtype=np.uint8)
    coarse[1:5, 2:7, 2:5] = LUNG_RIGHT  # full y 4-13, x 4-9
    coarse[1:5, 2:7, 10:14] = LUNG_LEFT  # full y 4-13, x 20-27
    return hu, truth, coarse


def test_refine_follows_the_full_resolution_threshold():
    hu, truth, coarse = _scene()
    airway = np.zeros(coarse.shape, dtype=bool)
    labels = refine(hu, THRESHOLD, coarse, airway, coarse > 0, (1, 2, 2))
    assert labels.shape == hu.shape and labels.dtype == np.uint8
    assert np.array_equal(labels, truth)


def test_refine_keeps_the_core_and_what_morphology_added():
    """Inside the coarse lung minus its edge block, a dense voxel (a vessel) stays lung; in the
    edge band a dense voxel is out, unless morphology added its block (not a candidate)."""
    hu, truth, coarse = _scene()
    candidates = coarse > 0
    hu[2, 8, 6] = DENSE  # right core: coarse (2, 4, 3)
    hu[2, 4, 4] = DENSE  # right edge block: coarse (2, 2, 2), a candidate
    hu[2, 4:6, 20:22] = DENSE  # left edge block: coarse (2, 2, 10) ...
    candidates[2, 2, 10] = False  # ... that the fills added
    airway = np.zeros(coarse.shape, dtype=bool)
    labels = refine(hu, THRESHOLD, coarse, airway, candidates, (1, 2, 2))
    assert labels[2, 8, 6] == LUNG_RIGHT
    assert labels[2, 4, 4] == 0
    assert np.all(labels[2, 4:6, 20:22] == LUNG_LEFT)


def test_refine_band_stays_off_the_airway():
    """The band around the lung does not take aerated voxels within one block of the airway
    (the trachea and bronchi, removed on the work grid, stay out at full resolution)."""
    hu, truth, coarse = _scene()
    hu[1:5, 3:13, 11] = AERATED  # the right lung's block 5 (full x 10-11) all aerated
    airway = np.zeros(coarse.shape, dtype=bool)
    airway[1:5, 2:7, 6] = True  # the next block towards the middle (full x 12-13)
    alone = refine(hu, THRESHOLD, coarse, np.zeros_like(airway), coarse > 0, (1, 2, 2))
    assert np.all(alone[1:5, 3:13, 10:12] == LUNG_RIGHT)
    labels = refine(hu, THRESHOLD, coarse, airway, coarse > 0, (1, 2, 2))
    assert not labels[:, :, 10:16].any()
    assert np.array_equal(labels[:, :, :10], truth[:, :, :10])


def test_refine_empty_coarse_mask():
    hu, _, coarse = _scene()
    empty = np.zeros_like(coarse)
    labels = refine(hu, THRESHOLD, empty, empty > 0, empty > 0, (1, 2, 2))
    assert labels.shape == hu.shape and not labels.any()


def test_work_grid_refined_at_full_resolution(lung_cfg):
    """A coarse work grid (blocks of 2 in-plane) keeps Dice and volume."""
    ph = draw_phantom(np.random.default_rng(3), (96, 192, 192), 30.0, 0.4)
    image = phantom_image(ph)
    start = time.perf_counter()
    coarse = sitk.GetArrayFromImage(segment_lungs(image, dict(lung_cfg, grid_mm=4.0)))
    coarse_s = time.perf_counter() - start
    start = time.perf_counter()
    fine = sitk.GetArrayFromImage(segment_lungs(image, dict(lung_cfg, grid_mm=0)))
    fine_s = time.perf_counter() - start
    scores = score_mask(coarse > 0, ph)
    assert scores["dice"] >= 0.97 and abs(scores["volume"]) <= 0.03
    assert coarse_s < fine_s
    assert np.mean(coarse[fine > 0] == fine[fine > 0]) > 0.97
