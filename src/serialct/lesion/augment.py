"""Augmentation of 2D training slices (HU + soft lesion target) for unknown orientation, pixel
size and display window.

- **orientation**: one of the 8 flips/rotations by 90 degrees (slice exports come mirrored and
  rotated; the net is made indifferent to it), then a small rotation;
- **scale**: a log-uniform zoom (crops of unknown pixel size);
- **window**: HU scaled about the aerated-lung reference and shifted (an estimated window is off
  by some tens of HU and a few per cent), and half the time clipped at a random top as a narrow
  display window clips soft tissue;
- **acquisition**: in-plane blur (kernels, resampling) and Gaussian noise.

Written with numpy/scipy (already dependencies) rather than TorchIO/MONAI: these are 2D slices
with soft targets, and the whole pipeline is a dozen lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import ndimage

from serialct.lesion.window import REFERENCE_LUNG_HU

ROTATION_DEG: Final = 15.0
ZOOM_RANGE: Final = (0.75, 1.33)
HU_SCALE_RANGE: Final = (0.85, 1.18)
HU_SHIFT: Final = 60.0
CLIP_PROBABILITY: Final = 0.5
CLIP_TOP_RANGE_HU: Final = (-150.0, 200.0)  # top of a narrow lung window (C -700 W 1200: -100)
BLUR_PROBABILITY: Final = 0.4
BLUR_SIGMA_PX: Final = (0.3, 1.0)
NOISE_HU_MAX: Final = 25.0
PAD_HU: Final = 40.0  # soft tissue: crops cut at the chest wall continue as body


@dataclass(frozen=True)
class Augment:
    """Which augmentations run (``window`` and ``geometry`` off for validation-style crops)."""

    geometry: bool = True
    window: bool = True
    acquisition: bool = True


def dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """The ``k``-th (0-7) of the 8 flips/90-degree rotations of a 2D array."""
    a = np.rot90(a, k % 4)
    return a[:, ::-1] if k >= 4 else a


def crop_or_pad(
    rng: np.random.Generator, hu: np.ndarray, target: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """A random ``size`` x ``size`` window of the slice, padded with :data:`PAD_HU` / 0."""
    ph, pw = max(size - hu.shape[0], 0), max(size - hu.shape[1], 0)
    if ph or pw:
        y0, x0 = int(rng.integers(0, ph + 1)), int(rng.integers(0, pw + 1))
        pad = ((y0, ph - y0), (x0, pw - x0))
        hu = np.pad(hu, pad, constant_values=PAD_HU)
        target = np.pad(target, pad, constant_values=0.0)
    y0 = int(rng.integers(0, hu.shape[0] - size + 1))
    x0 = int(rng.integers(0, hu.shape[1] - size + 1))
    return hu[y0 : y0 + size, x0 : x0 + size], target[y0 : y0 + size, x0 : x0 + size]


def augment_slice(
    rng: np.random.Generator,
    hu: np.ndarray,
    target: np.ndarray,
    size: int,
    which: Augment = Augment(),
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented ``size`` x ``size`` crop (HU float32, target float32) of a slice."""
    hu, target = hu.astype(np.float32), target.astype(np.float32)
    if which.geometry:
        k = int(rng.integers(0, 8))
        hu, target = dihedral(hu, k), dihedral(target, k)
        zoom = float(np.exp(rng.uniform(*np.log(ZOOM_RANGE))))
        hu, target = ndimage.zoom(hu, zoom, order=1), ndimage.zoom(target, zoom, order=1)
        angle = float(rng.uniform(-ROTATION_DEG, ROTATION_DEG))
        hu = ndimage.rotate(hu, angle, reshape=False, order=1, mode="nearest")
        target = ndimage.rotate(target, angle, reshape=False, order=1, cval=0.0)
    hu, target = crop_or_pad(rng, hu, target, size)
    if which.window:
        scale = float(np.exp(rng.uniform(*np.log(HU_SCALE_RANGE))))
        hu = (hu - REFERENCE_LUNG_HU) * scale + REFERENCE_LUNG_HU
        hu = hu + float(rng.uniform(-HU_SHIFT, HU_SHIFT))
        if rng.random() < CLIP_PROBABILITY:
            hu = np.minimum(hu, float(rng.uniform(*CLIP_TOP_RANGE_HU)))
    if which.acquisition:
        if rng.random() < BLUR_PROBABILITY:
            hu = ndimage.gaussian_filter(hu, float(rng.uniform(*BLUR_SIGMA_PX)))
        sigma = float(rng.uniform(0.0, NOISE_HU_MAX))
        hu = hu + rng.normal(0.0, sigma, hu.shape).astype(np.float32)
    return np.ascontiguousarray(hu, np.float32), np.ascontiguousarray(np.clip(target, 0, 1))
