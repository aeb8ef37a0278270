"""Train COVID-Lesion Net on axial slices of synthetic phantoms (``serialct.phantom``).

The legacy trainer behind ``serialct train`` and the ``train_model`` rule (flags and config:
:mod:`serialct.lesion.train_cli`). It orchestrates a run, or k folds and a final run: phantom
slices (:mod:`serialct.lesion.phantom_slices`) mixed with optional real labelled ones
(:mod:`serialct.lesion.real_slices`), trained by :func:`serialct.lesion.loop.fit` (Adam, the
paper's batch size 8, cosine learning rate; loss over the whole slice, not only the lung, so that
tissue outside a leaking lung mask is rejected), validated on new phantoms and held-out real
slices, saved with its meta (:mod:`serialct.lesion.checkpoint`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serialct import __version__
from serialct.errors import InputError
from serialct.lesion.checkpoint import load_weights, save_checkpoint
from serialct.lesion.data import sha1_file
from serialct.lesion.infer import pick_device
from serialct.lesion.loop import fit
from serialct.lesion.loss import LOSSES
from serialct.lesion.net import CHECKPOINT_FORMAT, PREPROCESS, CovidLesionNet
from serialct.lesion.phantom_slices import draw_pool, sample_phantom_batch, validate_model
from serialct.lesion.real_slices import REAL_AUGMENTATIONS, RealData, mixed_batch, real_slice_dice
from serialct.lesion.train_args import TRAIN_SHAPE

log = logging.getLogger("serialct")


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
    stores test-time flip averaging in the meta (inference and validation use it). Returns the meta
    (``metrics.train_dice``: :func:`serialct.lesion.loop.fit`'s, over its last logged steps).
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
    pool = draw_pool(rng, pool_volumes, shape)
    n_pool, secs = len(pool[0]), time.monotonic() - t0
    log.info("phantom pool: %d volumes, %d slices, %.0f s", pool_volumes, n_pool, secs)
    train_real = val_real = None
    if real is not None and len(real.slices):
        held = sorted(set(int(i) for i in holdout))
        train_real = real.slices.subset([i for i in range(len(real.slices)) if i not in held])
        val_real = real.slices.subset(held) if held else None
        log.info("real slices: %d train, %d held out", len(train_real), len(held))

    model = CovidLesionNet(base_channels=base_channels).to(dev)
    if init is not None:
        load_weights(model, Path(init), dev)
    total = max(epochs * steps_per_epoch, 1)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        if train_real is not None and real is not None:
            n_real = int(rng.binomial(batch_size, real.fraction))
            return mixed_batch(rng, pool, train_real, batch_size, n_real, real_augment)
        return sample_phantom_batch(rng, pool, batch_size)

    fitted = fit(
        model, next_batch, steps=epochs * steps_per_epoch, lr=lr, device=dev, loss_kind=loss_kind
    )
    train_dice = fitted["train_dice"]

    command = ["serialct", "train", "--out", str(out), "--epochs", str(epochs)]
    command += ["--steps-per-epoch", str(steps_per_epoch), "--batch-size", str(batch_size)]
    command += ["--lr", str(lr), "--seed", str(seed), "--device", device]
    command += ["--pool-volumes", str(pool_volumes)]
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
    if init is not None:
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
    val_metrics, rows = validate_model(model, meta, shape, val_volumes, seed, device)
    if rows:
        meta["metrics"].update(val_metrics)
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


if __name__ == "__main__":  # same flags as ``serialct train``; the code is in train_cli
    from serialct.lesion.train_cli import main

    sys.exit(main())
