"""The lung mask against the only expert lung mask in ``../shared/data/real``: CIP's
``wholeLung-64.nrrd``, drawn on the same real chest CT (GE, 79 slices of 4 mm, 64x64 at 4.17 mm).

Issue 17's goal on normal real lungs is volume within 3 % and Dice >= 0.97. Measured with the
partial-volume edge (``lung.midpoint_edge``): +1.9 %, Dice 0.984; with the edge at
``threshold_hu`` as before: +5.0 %, Dice 0.974 (``benchmarks/real_lung_masks.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from serialct.config import defaults
from serialct.dicom.convert import convert_dicom_dir
from serialct.lung import segment_lungs

CIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "cip-ct64-lung-mask"
MAX_VOLUME_ERROR = 0.03
MIN_DICE = 0.97

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ct_and_expert(tmp_path_factory: pytest.TempPathFactory) -> tuple[sitk.Image, np.ndarray]:
    out = tmp_path_factory.mktemp("cip")
    table = convert_dicom_dir(CIP / "dicom", out)
    ct = sitk.ReadImage(str(out / Path(table.loc[table["path"] != "", "path"].iloc[0]).name))
    expert = sitk.ReadImage(str(CIP / "wholeLung-64.nrrd"))
    on_ct = sitk.Resample(expert, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return ct, sitk.GetArrayFromImage(on_ct) > 0


def _score(ct: sitk.Image, truth: np.ndarray, midpoint_edge: bool) -> tuple[float, float]:
    lung_cfg = {**defaults()["lung"], "midpoint_edge": midpoint_edge}
    ours = sitk.GetArrayFromImage(segment_lungs(ct, lung_cfg)) > 0
    dice = 2 * np.count_nonzero(ours & truth) / (ours.sum() + truth.sum())
    return ours.sum() / truth.sum() - 1, dice


def test_lung_mask_matches_the_cip_expert_mask(ct_and_expert) -> None:  # type: ignore[no-untyped-def]
    volume, dice = _score(*ct_and_expert, midpoint_edge=True)
    print(f"CIP expert: volume {100 * volume:+.1f} %, Dice {dice:.3f}")
    assert abs(volume) <= MAX_VOLUME_ERROR
    assert dice >= MIN_DICE


def test_the_threshold_edge_alone_misses_the_goal(ct_and_expert) -> None:  # type: ignore[no-untyped-def]
    # the comparison that shows the edge rule is what meets the goal (not the test's leniency)
    volume, _ = _score(*ct_and_expert, midpoint_edge=False)
    assert volume > MAX_VOLUME_ERROR
