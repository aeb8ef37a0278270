"""Phantom slices for the legacy trainer: a pool of synthetic volumes, augmented batches from it,
and the validation of a checkpoint on new phantoms.

A pool of phantoms (:mod:`serialct.phantom`) is drawn once (drawing is the slow part) with lesion
burdens spread log-uniformly over the cohort's range plus some normal lungs, and slices are sampled
from it on the fly: mirrored left-right, half of them blurred in-plane, all with extra noise, so
that the net does not learn "smooth = lesion" from the phantoms' fixed noise texture (without blur
augmentation, a net called blurred normal lung lesion). :func:`validate` runs the full
:func:`serialct.lesion.infer.segment_lesions` path on held-out phantoms, half of them at twice the
in-plane resolution so that resampling is covered.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from serialct.lesion.checkpoint import save_checkpoint
from serialct.lesion.infer import segment_lesions
from serialct.lesion.net import PREPROCESS, CovidLesionNet, preprocess
from serialct.lesion.scoring import dice

if TYPE_CHECKING:
    from serialct.phantom import Phantom

log = logging.getLogger("serialct")

LESION_PERCENT_RANGE: Final = (0.3, 50.0)  # log-uniform burden of the training pool
NORMAL_FRACTION: Final = 0.15  # pool volumes without lesions
CONSOLIDATION_FRACTION_RANGE: Final = (0.0, 0.5)
LUNG_SCALE_RANGE: Final = (0.85, 1.1)
LUNG_SLICE_PROBABILITY: Final = 0.9  # otherwise any slice, lung or not
NOISE_HU_MAX: Final = 20.0  # extra Gaussian noise, sigma drawn from [0, this]
SMOOTH_PROBABILITY: Final = 0.5  # slices blurred in-plane first (smoother kernels, resampling)
SMOOTH_SIGMA_PX: Final = (0.3, 1.2)
VAL_LESION_PERCENT_RANGE: Final = (0.5, 40.0)
VAL_SEED_OFFSET: Final = 100_003

PhantomPool = tuple[np.ndarray, np.ndarray, np.ndarray]  # hu int16, lesion uint8, has_lung bool


def draw_volume(
    rng: np.random.Generator, shape: tuple[int, int, int], lesion_percent: float
) -> Phantom:
    """One phantom (:func:`serialct.phantom.draw_phantom`) with random consolidation and size."""
    from serialct.phantom import draw_phantom  # lazy: only training needs phantoms

    return draw_phantom(
        rng,
        shape=shape,
        lesion_percent=lesion_percent,
        consolidation_fraction=float(rng.uniform(*CONSOLIDATION_FRACTION_RANGE)),
        lung_scale=float(rng.uniform(*LUNG_SCALE_RANGE)),
    )


def draw_pool(rng: np.random.Generator, n: int, shape: tuple[int, int, int]) -> PhantomPool:
    """Slices of ``n`` phantoms, stacked: hu int16 (s, y, x), lesion uint8, has_lung bool (s,)."""
    hu, lesion, has_lung = [], [], []
    lo, hi = np.log(LESION_PERCENT_RANGE)
    for _ in range(n):
        percent = 0.0 if rng.random() < NORMAL_FRACTION else float(np.exp(rng.uniform(lo, hi)))
        p = draw_volume(rng, shape, percent)
        hu.append(p.hu.astype(np.int16))
        lesion.append((p.lesion > 0).astype(np.uint8))
        has_lung.append((p.lung > 0).any(axis=(1, 2)))
    return np.concatenate(hu), np.concatenate(lesion), np.concatenate(has_lung)


def sample_phantom_batch(
    rng: np.random.Generator, pool: PhantomPool, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` augmented pool slices: (N, 1, y, x) net input and (N, y, x) long labels."""
    hu, lesion, has_lung = pool
    lung_idx = np.flatnonzero(has_lung)
    idx = np.where(
        rng.random(batch_size) < LUNG_SLICE_PROBABILITY,
        rng.choice(lung_idx, batch_size),
        rng.integers(0, len(hu), batch_size),
    )
    x = hu[idx].astype(np.float32)
    for i in np.flatnonzero(rng.random(batch_size) < SMOOTH_PROBABILITY):
        x[i] = ndimage.gaussian_filter(x[i], float(rng.uniform(*SMOOTH_SIGMA_PX)))
    x += rng.normal(0.0, 1.0, x.shape).astype(np.float32) * rng.uniform(
        0.0, NOISE_HU_MAX, (batch_size, 1, 1)
    ).astype(np.float32)
    y = lesion[idx]
    flip = rng.random(batch_size) < 0.5  # left-right mirror
    x[flip] = x[flip, :, ::-1]
    y = y.copy()
    y[flip] = y[flip, :, ::-1]
    xt = torch.from_numpy(np.ascontiguousarray(preprocess(x, PREPROCESS)[:, None]))
    return xt, torch.from_numpy(np.ascontiguousarray(y)).long()


def validate(
    ckpt: Path, shape: tuple[int, int, int], n: int, seed: int, device: str
) -> list[dict[str, Any]]:
    """Per-volume Dice and lesion-volume relative error of ``segment_lesions`` on new phantoms."""
    from serialct.config import defaults

    config = defaults()
    config["device"] = device
    rng = np.random.default_rng(seed + VAL_SEED_OFFSET)
    percents = np.geomspace(*VAL_LESION_PERCENT_RANGE, num=max(n, 1))[:n]
    rows = []
    for i, percent in enumerate(percents):
        z, y, x = shape
        vshape = shape if i % 2 == 0 else (z, 2 * y, 2 * x)  # odd ones exercise resampling
        p = draw_volume(rng, vshape, float(percent))
        ct = sitk.GetImageFromArray(p.hu)
        ct.SetSpacing([float(s) for s in p.spacing[::-1]])
        lung = sitk.GetImageFromArray(p.lung.astype(np.uint8))
        lung.CopyInformation(ct)
        pred = sitk.GetArrayFromImage(segment_lesions(ct, lung, ckpt, config)) > 0
        truth = p.lesion > 0
        rows.append(
            {
                "shape": list(vshape),
                "lesion_percent": round(float(percent), 3),
                "dice": round(dice(pred, truth), 4),
                "volume_rel_err": round(
                    abs(int(pred.sum()) - int(truth.sum())) / max(int(truth.sum()), 1), 4
                ),
            }
        )
        log.info("validation %s", rows[-1])
    return rows


def validate_model(
    model: CovidLesionNet,
    meta: dict[str, Any],
    shape: tuple[int, int, int],
    n: int,
    seed: int,
    device: str,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """:func:`validate` of ``model`` saved with ``meta`` to a temporary checkpoint: the summary
    metrics (mean Dice, max and median volume error; empty without rows) and the rows."""
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "model.pt"
        save_checkpoint(ckpt, model, meta)
        rows = validate(ckpt, shape, n, seed, device)
    if not rows:
        return {}, rows
    errs = [r["volume_rel_err"] for r in rows]
    metrics = {
        "val_dice": round(float(np.mean([r["dice"] for r in rows])), 4),
        "val_volume_rel_err_max": round(float(np.max(errs)), 4),
        "val_volume_rel_err_median": round(float(np.median(errs)), 4),
    }
    return metrics, rows
