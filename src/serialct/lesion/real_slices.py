"""Real labelled slices in the legacy trainer: what was loaded, how it is augmented, how it scores.

:class:`RealData` holds the slices (:class:`serialct.lesion.data.SliceSet`) with the window and
pixel spacing they were read with; :func:`sample_real` draws augmented crops of them ("basic":
zoom half the time, crop, mirror, HU shift, noise; "strong": also rotation, an elastic warp,
contrast scaling and blur, and every slice zoomed); :func:`mixed_batch` fills a batch with
phantom slices (:mod:`serialct.lesion.phantom_slices`) and real ones; :func:`real_slice_dice`
scores held-out slices through the ``segment-slices`` path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import torch
from scipy import ndimage

from serialct.lesion.data import SliceSet
from serialct.lesion.net import CLIP_HU_LOW, PREPROCESS, CovidLesionNet, preprocess
from serialct.lesion.phantom_slices import (
    NOISE_HU_MAX,
    SMOOTH_PROBABILITY,
    SMOOTH_SIGMA_PX,
    PhantomPool,
    sample_phantom_batch,
)
from serialct.lesion.scoring import dice
from serialct.lesion.train_args import REAL_FRACTION

REAL_ZOOM_PROBABILITY: Final = 0.5
REAL_ZOOM_RANGE: Final = (0.8, 1.25)
REAL_HU_SHIFT: Final = 40.0  # uniform +- shift of real slices (the window is only a guess)
REAL_AUGMENTATIONS: Final = ("basic", "strong")
STRONG_ROTATION_DEG: Final = 20.0  # "strong": uniform +- in-plane rotation
STRONG_ZOOM_RANGE: Final = (0.75, 1.33)  # "strong": zoom of every slice, log-uniform
STRONG_CONTRAST_RANGE: Final = (0.85, 1.15)  # "strong": HU scaled about STRONG_CONTRAST_PIVOT_HU
STRONG_CONTRAST_PIVOT_HU: Final = -600.0
STRONG_ELASTIC_PROBABILITY: Final = 0.5
STRONG_ELASTIC_SIGMA_PX: Final = 8.0  # smoothness of the random displacement field
STRONG_ELASTIC_ALPHA_PX: Final = 4.0  # typical displacement after smoothing


@dataclass
class RealData:
    """Labelled real slices mixed into training: the slices and how they were read."""

    slices: SliceSet
    window: tuple[float, float]  # (center, width) of the 8-bit slice images
    pixel_spacing_mm: float | None  # assumed spacing of the slice images; None = native size
    fraction: float = REAL_FRACTION  # expected share of real slices in a batch
    sources: tuple[str, ...] = ()  # slice-set folders, for the command line
    volumes: tuple[tuple[str, str], ...] = ()  # (image, label) volume files

    def command_args(self) -> list[str]:
        """The ``serialct train`` flags that load this data."""
        args: list[str] = []
        for src in self.sources:
            args += ["--real-slices", src]
        for img, lab in self.volumes:
            args += ["--volume", img, lab]
        args += ["--window-center", str(self.window[0]), "--window-width", str(self.window[1])]
        sp = self.pixel_spacing_mm
        args += ["--slice-pixel-spacing", "native" if sp is None else str(sp)]
        args += ["--real-fraction", str(self.fraction)]
        return args


def crop(
    rng: np.random.Generator, a: np.ndarray, b: np.ndarray, size: tuple[int, int], fill: float
) -> tuple[np.ndarray, np.ndarray]:
    """Random ``size`` crop of ``a`` and ``b`` (padded with ``fill`` / 0 when smaller)."""
    ph, pw = max(size[0] - a.shape[0], 0), max(size[1] - a.shape[1], 0)
    if ph or pw:
        pad = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
        a = np.pad(a, pad, constant_values=fill)
        b = np.pad(b, pad, constant_values=0)
    y0 = int(rng.integers(0, a.shape[0] - size[0] + 1))
    x0 = int(rng.integers(0, a.shape[1] - size[1] + 1))
    return a[y0 : y0 + size[0], x0 : x0 + size[1]], b[y0 : y0 + size[0], x0 : x0 + size[1]]


def strong_geometry(
    rng: np.random.Generator, hu: np.ndarray, les: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Zoom, rotation and (half the time) a smooth elastic warp of a slice and its mask."""
    z = float(np.exp(rng.uniform(*np.log(STRONG_ZOOM_RANGE))))
    hu = ndimage.zoom(hu, z, order=1)
    les = ndimage.zoom(les, z, order=0)
    angle = float(rng.uniform(-STRONG_ROTATION_DEG, STRONG_ROTATION_DEG))
    hu = ndimage.rotate(hu, angle, reshape=False, order=1, cval=float(CLIP_HU_LOW))
    les = ndimage.rotate(les, angle, reshape=False, order=0, cval=0)
    if rng.random() < STRONG_ELASTIC_PROBABILITY:
        sigma, alpha = STRONG_ELASTIC_SIGMA_PX, STRONG_ELASTIC_ALPHA_PX
        d = [ndimage.gaussian_filter(rng.standard_normal(hu.shape), sigma) for _ in range(2)]
        norm = alpha / max(float(np.std(d[0])), 1e-6)
        yy, xx = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in hu.shape), indexing="ij")
        coords = [yy + d[0] * norm, xx + d[1] * norm]
        hu = ndimage.map_coordinates(hu, coords, order=1, cval=float(CLIP_HU_LOW))
        les = ndimage.map_coordinates(les, coords, order=0, cval=0)
    return hu, les


def sample_real(
    rng: np.random.Generator,
    real: SliceSet,
    n: int,
    size: tuple[int, ...],
    augment: str = "basic",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` augmented crops of real slices: zoom, crop, mirror, HU shift, noise; ``"strong"``
    adds rotation, an elastic warp, contrast scaling and blur, and zooms every slice."""
    h, w = int(size[0]), int(size[1])
    xs = np.empty((n, h, w), np.float32)
    ys = np.empty((n, h, w), np.int64)
    for k in range(n):
        i = int(rng.integers(0, len(real)))
        hu, les = real.hu[i], real.lesion[i]
        if augment == "strong":
            hu, les = strong_geometry(rng, hu, les)
            c = float(rng.uniform(*STRONG_CONTRAST_RANGE))
            hu = (hu - STRONG_CONTRAST_PIVOT_HU) * c + STRONG_CONTRAST_PIVOT_HU
            if rng.random() < SMOOTH_PROBABILITY:
                hu = ndimage.gaussian_filter(hu, float(rng.uniform(*SMOOTH_SIGMA_PX)))
        elif rng.random() < REAL_ZOOM_PROBABILITY:
            z = float(np.exp(rng.uniform(*np.log(REAL_ZOOM_RANGE))))
            hu = ndimage.zoom(hu, z, order=1)
            les = ndimage.zoom(les, z, order=0)
        hu, les = crop(rng, hu, les, (h, w), float(CLIP_HU_LOW))
        if rng.random() < 0.5:
            hu, les = hu[:, ::-1], les[:, ::-1]
        hu = hu + float(rng.uniform(-REAL_HU_SHIFT, REAL_HU_SHIFT))
        hu = hu + rng.normal(0.0, float(rng.uniform(0, NOISE_HU_MAX)), hu.shape)
        xs[k], ys[k] = hu, les
    xt = torch.from_numpy(np.ascontiguousarray(preprocess(xs, PREPROCESS)[:, None]))
    return xt, torch.from_numpy(ys)


def mixed_batch(
    rng: np.random.Generator,
    pool: PhantomPool,
    real: SliceSet,
    batch_size: int,
    n_real: int,
    augment: str = "basic",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size - n_real`` phantom slices, then ``n_real`` real crops of the pool's size."""
    xs, ys = sample_phantom_batch(rng, pool, batch_size - n_real)
    xr, yr = sample_real(rng, real, n_real, pool[0].shape[1:], augment)
    return torch.cat([xs, xr]), torch.cat([ys, yr])


def real_slice_dice(
    model: CovidLesionNet,
    meta: dict[str, Any],
    device: torch.device,
    slices: SliceSet,
    real: RealData,
) -> list[float]:
    """Per-slice lesion Dice (label > 0) of the ``segment-slices`` path on native slices."""
    from serialct.config import defaults
    from serialct.lesion.slices import segment_slice_array

    config = defaults()
    config["lesion"]["slice_pixel_spacing_mm"] = real.pixel_spacing_mm
    out = []
    for pixels, labels in slices.native:
        pred = segment_slice_array(pixels, model, meta, device, config, *real.window)
        out.append(dice(pred > 0, labels > 0))
    return out
