"""Figures 2-4 and the QC overlay are written as readable PNGs, also with missing data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from cohort_factory import make_cohort
from PIL import Image

from serialct.constants import HU_AIR, HU_SOFT_TISSUE, LESION_CONSOLIDATION, LESION_GGO
from serialct.figures import equation, figure2, figure3, figure4, qc_overlay
from serialct.stats.curves import curve_fit_table

GGO_HU = -500
SHAPE = (20, 64, 64)


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def phantom(folder: Path, radius: int) -> Path:
    """A body with two lungs and one lesion (GGO rim, consolidation core) of the given radius."""
    folder.mkdir(parents=True)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    ct = np.full(SHAPE, HU_SOFT_TISSUE, dtype=np.int16)
    lung = np.zeros(SHAPE, dtype=np.uint8)
    lung[2:18, 16:48, 8:28] = 1
    lung[2:18, 16:48, 36:56] = 2
    ct[lung > 0] = HU_AIR + 150
    distance = np.sqrt((z - 10) ** 2 + (y - 30) ** 2 + (x - 18) ** 2)
    lesion = np.zeros(SHAPE, dtype=np.uint8)
    lesion[(distance <= radius) & (lung > 0)] = LESION_GGO
    lesion[(distance <= radius / 2) & (lung > 0)] = LESION_CONSOLIDATION
    ct[lesion == LESION_GGO] = GGO_HU
    ct[lesion == LESION_CONSOLIDATION] = HU_SOFT_TISSUE
    for name, array in (("ct", ct), ("lung", lung), ("lesion", lesion)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.8, 0.8, 2.5))
        sitk.WriteImage(image, str(folder / f"{name}.nii.gz"))
    return folder


def test_figure2_and_3(tmp_path: Path) -> None:
    scans, _ = make_cohort(8, seed=1)
    fits = curve_fit_table(scans)
    figure2(scans, fits, tmp_path / "f2.png")
    figure3(scans, fits, tmp_path / "f3.png")
    width2, _ = png_size(tmp_path / "f2.png")
    width3, height3 = png_size(tmp_path / "f3.png")
    assert width2 > 400 and width3 > width2 and height3 > 600


def test_figures_without_scores_or_fits(tmp_path: Path) -> None:
    scans, _ = make_cohort(3, seed=1)
    scans = scans.assign(ct_score=np.nan)
    empty_fits = curve_fit_table(scans.iloc[:0])
    figure2(scans, empty_fits, tmp_path / "f2.png")
    figure3(scans.iloc[:0], empty_fits, tmp_path / "f3.png")
    assert png_size(tmp_path / "f2.png")[0] > 0 and png_size(tmp_path / "f3.png")[0] > 0


def test_equation_text() -> None:
    row = pd.Series({"b0": np.nan, "b1": 2.89, "b2": -0.0912, "b3": 0.000794})
    assert equation(row) == "y = 2.89x - 0.0912x$^2$ + 0.000794x$^3$"
    assert equation(pd.Series({"b0": -3.89, "b1": 2.4, "b2": np.nan, "b3": np.nan})) == (
        "y = -3.89 + 2.4x"
    )


def test_figure4_and_qc_overlay(tmp_path: Path) -> None:
    dirs = [phantom(tmp_path / f"s{i}", r) for i, r in enumerate((4, 9, 6))]
    figure4(
        dirs, ["On admission (day 6)", "Week 1 (day 13)", "Week 2 (day 20)"], tmp_path / "f4.png"
    )
    width, height = png_size(tmp_path / "f4.png")
    assert width > height  # three columns, two rows
    qc_overlay(
        dirs[1] / "ct.nii.gz",
        dirs[1] / "lung.nii.gz",
        dirs[1] / "lesion.nii.gz",
        tmp_path / "qc.png",
    )
    with Image.open(tmp_path / "qc.png") as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    red, blue_channel = pixels[..., 0], pixels[..., 2]
    orange = (red > 200) & (red - blue_channel > 80)
    blue = (blue_channel > 180) & (blue_channel - red > 80)
    assert orange.sum() > 20 and blue.sum() > 20  # consolidation and GGO drawn
    # the workflow passes the images it has already read: the same figure
    qc_overlay(*(sitk.ReadImage(str(dirs[1] / f"{n}.nii.gz")) for n in ("ct", "lung", "lesion")),
               tmp_path / "qc_images.png")  # fmt: skip
    assert (tmp_path / "qc_images.png").read_bytes() == (tmp_path / "qc.png").read_bytes()
