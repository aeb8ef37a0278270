"""Lung HU histograms and their distance to a normal-lung reference (Hellinger, IoU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serialct.errors import InputError

REFERENCE_COLUMNS = ("bin_start_hu", "bin_end_hu", "density")


def histogram_edges(hist_cfg: dict[str, Any]) -> np.ndarray:
    """Bin edges from the config's ``histogram`` section (min_hu, max_hu, bin_width_hu)."""
    lo, hi, width = (
        float(hist_cfg["min_hu"]),
        float(hist_cfg["max_hu"]),
        float(hist_cfg["bin_width_hu"]),
    )
    n = (hi - lo) / width if width > 0 else 0.0
    if n < 1 or abs(n - round(n)) > 1e-6:
        raise InputError(
            f"config histogram: max_hu - min_hu ({hi - lo:g}) must be a positive multiple of "
            f"bin_width_hu ({width:g})"
        )
    return np.linspace(lo, hi, int(round(n)) + 1)


def lung_histogram(
    hu: np.ndarray, mask: np.ndarray, hist_cfg: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """HU histogram of the voxels in ``mask`` (values outside the bin range are dropped).

    Returns (edges, density) with density summing to 1 (all zeros if no voxel falls in range).
    """
    edges = histogram_edges(hist_cfg)
    counts, _ = np.histogram(hu[mask.astype(bool)], bins=edges)
    total = counts.sum()
    density = counts / total if total else np.zeros(len(counts))
    return edges, density


def histogram_outside_percent(hu: np.ndarray, mask: np.ndarray, hist_cfg: dict[str, Any]) -> float:
    """Percent of the voxels in ``mask`` whose HU falls outside the histogram's bins (they are
    left out of the histogram; a large share means the bins miss part of the lung)."""
    edges = histogram_edges(hist_cfg)
    values = hu[mask.astype(bool)]
    if values.size == 0:
        return 0.0
    outside = np.count_nonzero((values < edges[0]) | (values >= edges[-1]))
    return 100.0 * outside / values.size


def _normalised(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in length: {p.shape} vs {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0 or (p < 0).any() or (q < 0).any():
        raise ValueError("histograms must be non-negative with a positive sum")
    return p / p.sum(), q / q.sum()


def hellinger(p: np.ndarray, q: np.ndarray) -> float:
    """Hellinger distance sqrt(1 - sum sqrt(p q)) of two histograms (normalised first)."""
    p, q = _normalised(p, q)
    return float(np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(p * q)))))


def histogram_iou(p: np.ndarray, q: np.ndarray) -> float:
    """Intersection over union sum(min) / sum(max) of two histograms (normalised first)."""
    p, q = _normalised(p, q)
    return float(np.minimum(p, q).sum() / np.maximum(p, q).sum())


def write_reference(path: str | Path, edges: np.ndarray, density: np.ndarray) -> None:
    """Write a reference histogram as TSV: bin_start_hu, bin_end_hu, density."""
    table = pd.DataFrame({"bin_start_hu": edges[:-1], "bin_end_hu": edges[1:], "density": density})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False, float_format="%.8g")


def read_reference(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a reference histogram written by :func:`write_reference`; returns (edges, density)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: reference histogram not found")
    try:
        table = pd.read_csv(path, sep="\t")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable TSV: {exc}") from exc
    missing = [c for c in REFERENCE_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; expected "
            f"{', '.join(REFERENCE_COLUMNS)}"
        )
    if table.empty:
        raise InputError(f"{path}: no histogram rows")
    try:
        values = {c: table[c].astype(float).to_numpy() for c in REFERENCE_COLUMNS}
    except ValueError as exc:
        raise InputError(f"{path}: non-numeric value in the histogram: {exc}") from exc
    start, end, density = values["bin_start_hu"], values["bin_end_hu"], values["density"]
    if np.isnan(np.concatenate([start, end, density])).any():
        raise InputError(f"{path}: empty cell in the histogram")
    if (end <= start).any() or not np.allclose(end[:-1], start[1:]):
        raise InputError(
            f"{path}: bins must be contiguous and increasing (bin_end_hu of row i "
            "= bin_start_hu of row i+1)"
        )
    if (density < 0).any() or density.sum() <= 0:
        raise InputError(f"{path}: density must be non-negative with a positive sum")
    return np.append(start, end[-1]), density / density.sum()
