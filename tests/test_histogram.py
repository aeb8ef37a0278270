"""Lung histograms, Hellinger distance and IoU against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serialct.config import defaults
from serialct.errors import InputError
from serialct.histogram import (
    hellinger,
    histogram_edges,
    histogram_iou,
    histogram_outside_percent,
    lung_histogram,
    read_reference,
    write_reference,
)

CFG = {"min_hu": -1000, "max_hu": -900, "bin_width_hu": 50}


def test_lung_histogram_by_hand() -> None:
    hu = np.array([[-1000, -980, -950, -920, -500, -1100]])
    mask = np.array([[1, 1, 1, 1, 1, 1]])
    mask[0, 3] = 0  # -920 is outside the mask
    edges, density = lung_histogram(hu, mask, CFG)
    assert edges.tolist() == [-1000, -950, -900]
    # in range and in mask: -1000, -980 -> bin 0; -950 -> bin 1; -500 and -1100 dropped
    assert density.tolist() == pytest.approx([2 / 3, 1 / 3])


def test_default_config_bins() -> None:
    edges = histogram_edges(defaults()["histogram"])
    assert edges[0] == -1024 and edges[-1] == 200 and len(edges) == 154  # 8 HU bins


def test_empty_mask_gives_zeros() -> None:
    _, density = lung_histogram(np.zeros((2, 2)), np.zeros((2, 2), bool), CFG)
    assert density.tolist() == [0.0, 0.0]


def test_bad_bins_raise() -> None:
    with pytest.raises(InputError, match="bin_width_hu"):
        histogram_edges({"min_hu": -1000, "max_hu": 0, "bin_width_hu": 30})


def test_hellinger_and_iou_by_hand() -> None:
    p = np.array([0.5, 0.5, 0.0])
    q = np.array([0.0, 0.5, 0.5])
    # sum sqrt(pq) = 0.5 -> sqrt(0.5); min sum 0.5, max sum 1.5
    assert hellinger(p, q) == pytest.approx(np.sqrt(0.5))
    assert histogram_iou(p, q) == pytest.approx(1 / 3)
    assert hellinger(p, p) == pytest.approx(0.0, abs=1e-7)
    assert histogram_iou(p, p) == pytest.approx(1.0)
    assert hellinger([1, 0], [0, 1]) == pytest.approx(1.0)
    assert histogram_iou([1, 0], [0, 1]) == 0.0
    # unnormalised counts are normalised first
    assert hellinger([2, 2, 0], [0, 4, 4]) == pytest.approx(np.sqrt(0.5))


def test_mismatched_lengths_raise() -> None:
    with pytest.raises(ValueError):
        hellinger([1, 0], [1, 0, 0])


def test_reference_round_trip(tmp_path: Path) -> None:
    edges = np.array([-1000.0, -990.0, -980.0, -970.0])
    density = np.array([0.2, 0.5, 0.3])
    path = tmp_path / "ref.tsv"
    write_reference(path, edges, density)
    assert path.read_text().splitlines()[0] == "bin_start_hu\tbin_end_hu\tdensity"
    e2, d2 = read_reference(path)
    assert e2.tolist() == edges.tolist()
    assert d2 == pytest.approx(density)


@pytest.mark.parametrize(
    "text, match",
    [
        ("bin_start_hu\tdensity\n-1000\t1\n", "missing column"),
        ("bin_start_hu\tbin_end_hu\tdensity\n-1000\t-990\tx\n", "non-numeric"),
        ("bin_start_hu\tbin_end_hu\tdensity\n-1000\t-990\t1\n-980\t-970\t1\n", "contiguous"),
        ("bin_start_hu\tbin_end_hu\tdensity\n-1000\t-990\t-1\n", "non-negative"),
        ("bin_start_hu\tbin_end_hu\tdensity\n", "no histogram rows"),
    ],
)
def test_bad_reference_raises(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(InputError, match=match):
        read_reference(path)


def test_missing_reference_raises(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_reference(tmp_path / "nope.tsv")


@pytest.mark.parametrize(("kind", "hu"), [("ground glass", -500.0), ("consolidation", 30.0)])
def test_distances_grow_with_involvement_whatever_its_density(kind, hu) -> None:
    """Issue 18: with the default bins, Hellinger distance grows and IoU falls as a larger share
    of a normal lung turns to ground glass or to consolidation alike (before: consolidation at
    +30 HU fell outside -1000..0 HU and was dropped, so it barely moved either), and the share
    of lung voxels outside the bins is reported."""
    cfg = defaults()["histogram"]
    rng = np.random.default_rng(0)
    normal = rng.normal(-850, 60, 200_000)
    mask = np.ones(normal.size, dtype=bool)
    _, reference = lung_histogram(normal, mask, cfg)
    distances, ious = [], []
    for share in (0.0, 0.1, 0.2, 0.3):
        lung = normal.copy()
        lung[: int(share * lung.size)] = rng.normal(hu, 30, int(share * lung.size))
        _, density = lung_histogram(lung, mask, cfg)
        distances.append(hellinger(density, reference))
        ious.append(histogram_iou(density, reference))
        assert histogram_outside_percent(lung, mask, cfg) < 1.0  # the bins hold the lung
    assert np.all(np.diff(distances) > 0.05), (kind, distances)
    assert np.all(np.diff(ious) < -0.05), (kind, ious)
