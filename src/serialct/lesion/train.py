"""Train COVID-Lesion Net on axial slices of synthetic phantoms (``serialct.phantom``).

The paper's recipe: Adam, batch size 8. A pool of phantoms is drawn once (drawing is the slow
part) with lesion burdens spread log-uniformly over the cohort's range plus some normal lungs, and
slices are sampled from it on the fly: mirrored left-right, half of them blurred in-plane, all with
extra noise, so that the net does not learn "smooth = lesion" from the phantoms' fixed noise
texture (without blur augmentation, a net called blurred normal lung lesion). Loss: cross-entropy
+ soft Dice of the lesion class over the whole slice, not only the lung: tissue outside the lung
looks like consolidation, and learning to reject it keeps predictions sane where a lung mask
leaks; inference masks to the lung anyway.
Validation runs the full :func:`serialct.lesion.infer.segment_lesions` path on held-out phantoms,
half of them at twice the in-plane resolution so that resampling is covered.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import logging
import math
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from scipy import ndimage

from serialct import __version__
from serialct.errors import InputError
from serialct.lesion.data import SliceSet, sha1_file
from serialct.lesion.infer import pick_device, segment_lesions
from serialct.lesion.net import (
    CHECKPOINT_FORMAT,
    CLIP_HU_LOW,
    PREPROCESS,
    CovidLesionNet,
    preprocess,
)
from serialct.lesion.train_args import REAL_FRACTION, TRAIN_SHAPE, add_train_arguments

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
DICE_EPS: Final = 1.0
FINAL_LR_FRACTION: Final = 0.05  # cosine decay of the learning rate down to lr * this
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
LOSSES: Final = ("ce_dice", "ce_dice_slice")


def _draw_volume(rng: np.random.Generator, shape: tuple[int, int, int], lesion_percent: float):  # noqa: ANN202
    from serialct.phantom import draw_phantom  # lazy: only training needs phantoms

    return draw_phantom(
        rng,
        shape=shape,
        lesion_percent=lesion_percent,
        consolidation_fraction=float(rng.uniform(*CONSOLIDATION_FRACTION_RANGE)),
        lung_scale=float(rng.uniform(*LUNG_SCALE_RANGE)),
    )


def _draw_pool(
    rng: np.random.Generator, n: int, shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slices of ``n`` phantoms, stacked: hu int16 (s, y, x), lesion uint8, has_lung bool (s,)."""
    hu, lesion, has_lung = [], [], []
    lo, hi = np.log(LESION_PERCENT_RANGE)
    for _ in range(n):
        percent = 0.0 if rng.random() < NORMAL_FRACTION else float(np.exp(rng.uniform(lo, hi)))
        p = _draw_volume(rng, shape, percent)
        hu.append(p.hu.astype(np.int16))
        lesion.append((p.lesion > 0).astype(np.uint8))
        has_lung.append((p.lung > 0).any(axis=(1, 2)))
    return np.concatenate(hu), np.concatenate(lesion), np.concatenate(has_lung)


def _sample_batch(
    rng: np.random.Generator,
    pool: tuple[np.ndarray, np.ndarray, np.ndarray],
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
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


def _crop(
    rng: np.random.Generator, a: np.ndarray, b: np.ndarray, size: tuple[int, int], fill: float
):  # noqa: ANN202
    """Random ``size`` crop of ``a`` and ``b`` (padded with ``fill`` / 0 when smaller)."""
    ph, pw = max(size[0] - a.shape[0], 0), max(size[1] - a.shape[1], 0)
    if ph or pw:
        pad = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
        a = np.pad(a, pad, constant_values=fill)
        b = np.pad(b, pad, constant_values=0)
    y0 = int(rng.integers(0, a.shape[0] - size[0] + 1))
    x0 = int(rng.integers(0, a.shape[1] - size[1] + 1))
    return a[y0 : y0 + size[0], x0 : x0 + size[1]], b[y0 : y0 + size[0], x0 : x0 + size[1]]


def _strong_geometry(
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


def _sample_real(
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
            hu, les = _strong_geometry(rng, hu, les)
            c = float(rng.uniform(*STRONG_CONTRAST_RANGE))
            hu = (hu - STRONG_CONTRAST_PIVOT_HU) * c + STRONG_CONTRAST_PIVOT_HU
            if rng.random() < SMOOTH_PROBABILITY:
                hu = ndimage.gaussian_filter(hu, float(rng.uniform(*SMOOTH_SIGMA_PX)))
        elif rng.random() < REAL_ZOOM_PROBABILITY:
            z = float(np.exp(rng.uniform(*np.log(REAL_ZOOM_RANGE))))
            hu = ndimage.zoom(hu, z, order=1)
            les = ndimage.zoom(les, z, order=0)
        hu, les = _crop(rng, hu, les, (h, w), float(CLIP_HU_LOW))
        if rng.random() < 0.5:
            hu, les = hu[:, ::-1], les[:, ::-1]
        hu = hu + float(rng.uniform(-REAL_HU_SHIFT, REAL_HU_SHIFT))
        hu = hu + rng.normal(0.0, float(rng.uniform(0, NOISE_HU_MAX)), hu.shape)
        xs[k], ys[k] = hu, les
    xt = torch.from_numpy(np.ascontiguousarray(preprocess(xs, PREPROCESS)[:, None]))
    return xt, torch.from_numpy(ys)


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


def _loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "ce_dice") -> torch.Tensor:
    """Cross-entropy + (1 - soft Dice of the lesion class): over the whole batch (``ce_dice``)
    or the mean of per-slice soft Dice (``ce_dice_slice``, as slices are scored)."""
    ce = F.cross_entropy(logits, target)
    p = torch.softmax(logits, dim=1)[:, 1]
    t = target.float()
    if kind == "ce_dice_slice":
        inter, sums = (p * t).sum(dim=(1, 2)), p.sum(dim=(1, 2)) + t.sum(dim=(1, 2))
        return ce + (1 - ((2 * inter + DICE_EPS) / (sums + DICE_EPS)).mean())
    dice = (2 * (p * t).sum() + DICE_EPS) / (p.sum() + t.sum() + DICE_EPS)
    return ce + (1 - dice)


def cosine_schedule(opt: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate decays along a cosine from lr to lr * FINAL_LR_FRACTION over ``total``
    steps (call ``step()`` after each optimiser step)."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * s / total))
        ),
    )


class WeightEMA:
    """Exponential moving average of a model's parameters and buffers (BatchNorm statistics too).

    ``update`` after each optimiser step: ``ema = d * ema + (1 - d) * weights`` with
    ``d = min(decay, 1 - 1 / t)`` at update ``t`` = 1, 2, ...: the plain mean of the weights seen
    so far until ``t`` reaches ``1 / (1 - decay)``, so the start weights do not linger. Integer
    buffers are copied. ``model`` is the averaged copy, in eval mode.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise InputError(f"EMA decay {decay} must be in [0, 1)")
        self.decay = float(decay)
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, 1.0 - 1.0 / self.updates)
        ema_state, state = self.model.state_dict(), model.state_dict()
        for name, value in ema_state.items():
            if value.dtype.is_floating_point:
                value.lerp_(state[name].detach(), 1.0 - d)
            else:
                value.copy_(state[name])


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    denom = int(pred.sum()) + int(truth.sum())
    return 1.0 if denom == 0 else 2.0 * int((pred & truth).sum()) / denom


def save_checkpoint(path: Path, model: CovidLesionNet, meta: dict[str, Any]) -> None:
    """Write ``{"state_dict", "meta"}`` to ``path`` and the meta as JSON (same stem, .json)."""
    meta = json.loads(json.dumps(meta))  # plain types only: torch.load(weights_only=True) reads it
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "meta": meta}, path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")


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
        p = _draw_volume(rng, vshape, float(percent))
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


def train(
    out: Path,
    *,
    epochs: int,
    steps_per_epoch: int,
    batch_size: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    shape: tuple[int, int, int] = TRAIN_SHAPE,
    val_volumes: int = 6,
    device: str = "auto",
    pool_volumes: int = 150,
    base_channels: int = 16,
    real: RealData | None = None,
    holdout: Sequence[int] = (),
    init: Path | None = None,
    extra_metrics: dict[str, Any] | None = None,
    command_extra: Sequence[str] = (),
    threshold: float | None = None,
    real_augment: str = "basic",
    loss_kind: str = "ce_dice",
    flip_average: bool = False,
) -> dict[str, Any]:
    """Train on phantom slices (+ ``real`` labelled slices), validate, save ``out`` + .json meta.

    ``real`` slices at positions ``holdout`` are not trained on but validated with the
    ``segment-slices`` path (mean per-slice lesion Dice). ``init`` starts from a checkpoint's
    weights (same architecture). ``threshold`` is stored as the checkpoint's lesion probability
    threshold (validation uses it). ``real_augment`` (:data:`REAL_AUGMENTATIONS`) and
    ``loss_kind`` (:data:`LOSSES`) pick the real-slice augmentation and the loss; ``flip_average``
    stores test-time flip averaging in the meta (inference and validation use it). Returns the meta.
    """
    from serialct.phantom import spacing_for_shape

    if real_augment not in REAL_AUGMENTATIONS or loss_kind not in LOSSES:
        raise InputError(f"unknown real_augment {real_augment!r} or loss {loss_kind!r}")

    out = Path(out)
    shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = pick_device(device)
    t0 = time.monotonic()
    pool = _draw_pool(rng, pool_volumes, shape)
    log.info(
        "phantom pool: %d volumes, %d slices, %.0f s",
        pool_volumes,
        len(pool[0]),
        time.monotonic() - t0,
    )
    train_real = val_real = None
    if real is not None and len(real.slices):
        held = sorted(set(int(i) for i in holdout))
        train_real = real.slices.subset([i for i in range(len(real.slices)) if i not in held])
        val_real = real.slices.subset(held) if held else None
        log.info("real slices: %d train, %d held out", len(train_real), len(held))

    model = CovidLesionNet(base_channels=base_channels).to(dev)
    init_meta: dict[str, Any] | None = None
    if init is not None:
        from serialct.lesion.infer import load_model

        init_model, init_meta = load_model(Path(init), dev)
        if init_model.architecture() != model.architecture():
            raise InputError(
                f"{init}: architecture {init_model.architecture()} differs from the one "
                f"trained here {model.architecture()}"
            )
        model.load_state_dict(init_model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    total = max(epochs * steps_per_epoch, 1)
    sched = cosine_schedule(opt, total)
    train_dice = float("nan")
    for epoch in range(epochs):
        model.train()
        inter = sums = 0
        loss_sum = 0.0
        for _ in range(steps_per_epoch):
            if train_real is not None and real is not None:
                n_real = int(rng.binomial(batch_size, real.fraction))
                xs, ys = _sample_batch(rng, pool, batch_size - n_real)
                xr, yr = _sample_real(rng, train_real, n_real, shape[1:], real_augment)
                x, y = torch.cat([xs, xr]), torch.cat([ys, yr])
            else:
                x, y = _sample_batch(rng, pool, batch_size)
            x, y = x.to(dev), y.to(dev)
            logits = model(x)
            loss = _loss(logits, y, loss_kind)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item()
            pred = logits.argmax(1) == 1
            truth = y == 1
            inter += int((pred & truth).sum())
            sums += int(pred.sum()) + int(truth.sum())
        train_dice = 1.0 if sums == 0 else 2 * inter / sums
        log.info(
            "epoch %d/%d loss %.4f train dice %.4f (%.0f s)",
            epoch + 1,
            epochs,
            loss_sum / max(steps_per_epoch, 1),
            train_dice,
            time.monotonic() - t0,
        )

    command = [
        "serialct",
        "train",
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--steps-per-epoch",
        str(steps_per_epoch),
        "--batch-size",
        str(batch_size),
        "--lr",
        str(lr),
        "--seed",
        str(seed),
        "--device",
        device,
        "--pool-volumes",
        str(pool_volumes),
    ]
    meta: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "architecture": model.architecture(),
        "preprocess": dict(PREPROCESS),
        "train_pixel_spacing_mm": [float(s) for s in spacing_for_shape(shape)[1:]],
        "train_shape": list(shape),
        "train_slice_thickness_mm": float(spacing_for_shape(shape)[0]),
        "pool_volumes": pool_volumes,
        "command": shlex.join(command),
        "torch": str(torch.__version__),
        "package_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "batch_size": batch_size,
        "optimizer": {"name": "Adam", "lr": lr, "schedule": "cosine", "steps": total},
        "data": {"synthetic_pool_volumes": pool_volumes, "synthetic_shape": list(shape)},
        "metrics": {"train_dice": round(train_dice, 4)},
        "loss": loss_kind,
    }
    if init_meta is not None and init is not None:
        meta["init"] = {"path": str(init), "sha1": sha1_file(Path(init))}
    if real is not None:
        command += real.command_args()
        meta["command"] = shlex.join(command)
        meta["slice_window"] = {"center": real.window[0], "width": real.window[1]}
        meta["slice_pixel_spacing_mm"] = real.pixel_spacing_mm
        meta["data"]["real_fraction"] = real.fraction
        meta["data"]["real_augment"] = real_augment
        if real_augment != "basic":
            command += ["--real-augment", real_augment]
        if train_real is not None:
            meta["data"]["real_train_slices"] = len(train_real)
            meta["data"]["real_train_sha1"] = train_real.sha1
        if val_real is not None:
            meta["data"]["real_val_sha1"] = val_real.sha1
    if shape != TRAIN_SHAPE:
        command += ["--shape", ",".join(map(str, shape))]
    if init is not None:
        command += ["--init", str(init)]
    if loss_kind != "ce_dice":
        command += ["--loss", loss_kind]
    if flip_average:
        meta["flip_average"] = True
        command += ["--flip-average"]
    if threshold is not None:
        meta["threshold"] = float(threshold)
        command += ["--threshold", str(threshold)]
    command += list(command_extra)
    meta["command"] = shlex.join(command)
    if extra_metrics:
        meta["metrics"].update(extra_metrics)
    model.eval()
    if val_real is not None and real is not None:
        per_slice = real_slice_dice(model, meta, dev, val_real, real)
        meta["metrics"]["val_real_dice_mean"] = round(float(np.mean(per_slice)), 4)
        meta["validation_real"] = dict(
            zip(val_real.names, (round(d, 4) for d in per_slice), strict=True)
        )
    with tempfile.TemporaryDirectory() as tmp:
        tmp_ckpt = Path(tmp) / "model.pt"
        save_checkpoint(tmp_ckpt, model, meta)
        rows = validate(tmp_ckpt, shape, val_volumes, seed, device)
    if rows:
        errs = [r["volume_rel_err"] for r in rows]
        meta["metrics"].update(
            val_dice=round(float(np.mean([r["dice"] for r in rows])), 4),
            val_volume_rel_err_max=round(float(np.max(errs)), 4),
            val_volume_rel_err_median=round(float(np.median(errs)), 4),
        )
        meta["validation"] = rows
    meta["train_seconds"] = round(time.monotonic() - t0, 1)
    save_checkpoint(out, model, meta)
    log.info("saved %s: %s", out, meta["metrics"])
    return meta


def train_kfold(
    out: Path, *, real: RealData, k: int, seed: int = 0, **kwargs: Any
) -> dict[str, Any]:
    """k-fold on ``real`` (each fold: train on the rest + phantoms, Dice on the held-out slices),
    then train ``out`` on all real slices with the k-fold numbers in its metrics.

    ``kwargs`` go to :func:`train` (epochs, steps_per_epoch, ...). Returns the final meta.
    """
    from serialct.lesion.data import kfold_indices

    folds = kfold_indices(len(real.slices), k, seed)
    per_slice: dict[str, float] = {}
    fold_means = []
    fold_kwargs = {**kwargs, "val_volumes": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for f, held in enumerate(folds):
            meta = train(
                Path(tmp) / f"fold{f}.pt", real=real, holdout=held, seed=seed, **fold_kwargs
            )
            per_slice.update(meta["validation_real"])
            fold_means.append(meta["metrics"]["val_real_dice_mean"])
            log.info("fold %d/%d: held-out real Dice %.4f", f + 1, k, fold_means[-1])
    values = np.array(list(per_slice.values()))
    metrics = {
        "kfold_k": k,
        "kfold_real_dice_mean": round(float(values.mean()), 4),
        "kfold_real_dice_median": round(float(np.median(values)), 4),
        "kfold_real_dice_fold_means": fold_means,
    }
    log.info("k-fold: %s", metrics)
    meta = train(
        out,
        real=real,
        seed=seed,
        extra_metrics=metrics,
        command_extra=["--kfold", str(k)],
        **kwargs,
    )
    meta_path = Path(out).with_suffix(".json")
    full = json.loads(meta_path.read_text())
    full["kfold_per_slice_real_dice"] = per_slice
    meta_path.write_text(json.dumps(full, indent=2) + "\n")
    return meta


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    """Load the data named by :func:`add_train_arguments`' flags and train; returns the meta."""
    from serialct.config import defaults, load_config
    from serialct.lesion.data import load_slice_set, load_volume_pair, merge
    from serialct.phantom import spacing_for_shape

    config = load_config(args.config) if args.config else defaults()
    center, width = config["lesion"]["slice_window"]
    window = (
        float(center if args.window_center is None else args.window_center),
        float(width if args.window_width is None else args.window_width),
    )
    sp_arg = args.slice_pixel_spacing
    spacing = config["lesion"]["slice_pixel_spacing_mm"] if sp_arg is None else sp_arg
    spacing = None if spacing in (None, "native") else float(spacing)
    shape = tuple(args.shape)
    train_sp = tuple(float(s) for s in spacing_for_shape(shape)[1:])
    real = None
    if args.real_slices or args.volume:
        sets = [load_slice_set(Path(d), *window, spacing, train_sp) for d in args.real_slices]  # type: ignore[arg-type]
        sets += [load_volume_pair(Path(i), Path(lab), train_sp) for i, lab in args.volume]  # type: ignore[arg-type]
        real = RealData(
            merge(sets),
            window,
            spacing,
            fraction=args.real_fraction,
            sources=tuple(args.real_slices),
            volumes=tuple((i, lab) for i, lab in args.volume),
        )
    kwargs: dict[str, Any] = dict(
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        pool_volumes=args.pool_volumes,
        init=Path(args.init) if args.init else None,
        threshold=args.threshold,
        real_augment=args.real_augment,
        loss_kind=args.loss,
        flip_average=args.flip_average,
        shape=shape,
    )
    if args.kfold:
        if real is None or not args.real_slices:
            raise InputError("--kfold needs --real-slices")
        return train_kfold(Path(args.out), real=real, k=args.kfold, seed=args.seed, **kwargs)
    return train(Path(args.out), real=real, seed=args.seed, **kwargs)


def train_from_config(
    config: dict[str, Any], out: Path, *, threads: int | None = None
) -> dict[str, Any]:
    """Train as ``config["train"]`` says (the ``train_model`` rule); returns the meta.

    Slice windows and the assumed slice pixel spacing come from ``config["lesion"]``, the device
    from ``config["device"]``; ``threads`` caps torch's CPU threads (the job's allocation).
    """
    if threads is not None:
        torch.set_num_threads(max(int(threads), 1))
    tc = config["train"]
    center, width = config["lesion"]["slice_window"]
    spacing = config["lesion"]["slice_pixel_spacing_mm"]
    args = argparse.Namespace(
        out=str(out),
        epochs=int(tc["epochs"]),
        steps_per_epoch=int(tc["steps_per_epoch"]),
        batch_size=int(tc["batch_size"]),
        lr=float(tc["lr"]),
        seed=int(tc["seed"]),
        device=config["device"],
        pool_volumes=int(tc["pool_volumes"]),
        real_slices=[str(d) for d in tc["real_slices"]],
        volume=[[str(i), str(lab)] for i, lab in tc["volumes"]],
        window_center=float(center),
        window_width=float(width),
        slice_pixel_spacing="native" if spacing is None else str(spacing),
        real_fraction=float(tc["real_fraction"]),
        kfold=int(tc["kfold"]),
        init=tc["init"],
        threshold=tc["threshold"],
        real_augment=str(tc["real_augment"]),
        loss=str(tc["loss"]),
        flip_average=bool(tc["flip_average"]),
        shape=tuple(int(n) for n in tc["shape"]),
        config=None,
    )
    return run_train(args)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m serialct.lesion.train``: same flags as ``serialct train``."""
    parser = argparse.ArgumentParser(prog="serialct train", description=__doc__.splitlines()[0])
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        meta = run_train(args)
    except InputError as exc:
        log.error("serialct train: %s", exc)
        return 2
    log.info("metrics %s", meta["metrics"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
