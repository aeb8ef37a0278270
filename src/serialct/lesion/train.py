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

import datetime as dt
import json
import logging
import math
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from scipy import ndimage

from serialct.lesion.infer import pick_device, segment_lesions
from serialct.lesion.net import (
    CHECKPOINT_FORMAT,
    PREPROCESS,
    CovidLesionNet,
    preprocess,
)

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


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy + (1 - soft Dice of the lesion class over the batch)."""
    ce = F.cross_entropy(logits, target)
    p = torch.softmax(logits, dim=1)[:, 1]
    t = target.float()
    dice = (2 * (p * t).sum() + DICE_EPS) / (p.sum() + t.sum() + DICE_EPS)
    return ce + (1 - dice)


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
    shape: tuple[int, int, int] = (48, 128, 128),
    val_volumes: int = 6,
    device: str = "auto",
    pool_volumes: int = 150,
    base_channels: int = 16,
) -> dict[str, Any]:
    """Train on phantom slices, validate, save ``out`` and its .json meta; return the meta."""
    from serialct.phantom import spacing_for_shape

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

    model = CovidLesionNet(base_channels=base_channels).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    total = max(epochs * steps_per_epoch, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * s / total))
        ),
    )
    train_dice = float("nan")
    for epoch in range(epochs):
        model.train()
        inter = sums = 0
        loss_sum = 0.0
        for _ in range(steps_per_epoch):
            x, y = _sample_batch(rng, pool, batch_size)
            x, y = x.to(dev), y.to(dev)
            logits = model(x)
            loss = _loss(logits, y)
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
    ]
    meta: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "architecture": model.architecture(),
        "preprocess": dict(PREPROCESS),
        "train_pixel_spacing_mm": [float(s) for s in spacing_for_shape(shape)[1:]],
        "train_shape": list(shape),
        "pool_volumes": pool_volumes,
        "command": shlex.join(command),
        "torch": str(torch.__version__),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "metrics": {"train_dice": round(train_dice, 4)},
    }
    model.eval()
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
