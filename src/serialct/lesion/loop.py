"""The training loop: Adam with a cosine learning rate, one optimiser step per batch.

:func:`fit` takes its batches from a function, so every trainer shares it: the recipe's batches
mix weighted sources (:func:`sample_batch`: each slice drawn from a :class:`Source` picked with
probability proportional to its weight and augmented by :mod:`serialct.lesion.augment`); the
legacy trainer's mix phantom and real slices (:mod:`serialct.lesion.real_slices`). Each step takes
:func:`serialct.lesion.loss.lesion_loss`; progress and the recent loss and train Dice go to the log.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import torch

from serialct.lesion.augment import Augment, augment_slice
from serialct.lesion.loss import lesion_loss
from serialct.lesion.net import PREPROCESS, CovidLesionNet, preprocess
from serialct.lesion.slice_sets import Sample

log = logging.getLogger("serialct")

FINAL_LR_FRACTION: Final = 0.05  # cosine decay of the learning rate down to lr * this
LOG_EVERY_STEPS: Final = 50


@dataclass
class Source:
    """Training slices drawn with relative ``weight``."""

    name: str
    samples: list[Sample]
    weight: float
    augment: Augment = field(default_factory=Augment)


def cosine_schedule(opt: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate decays along a cosine from lr to lr * FINAL_LR_FRACTION over ``total``
    steps (call ``step()`` after each optimiser step)."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * s / total))
        ),
    )


def sample_batch(
    rng: np.random.Generator, sources: Sequence[Source], batch_size: int, crop: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch (N, 1, crop, crop) network input and (N, crop, crop) float targets; sources
    without slices or weight are left out (ValueError when none is left)."""
    sources = [s for s in sources if s.samples and s.weight > 0]
    if not sources:
        raise ValueError("no training slices")
    weights = np.array([s.weight for s in sources], dtype=np.float64)
    picks = rng.choice(len(sources), size=batch_size, p=weights / weights.sum())
    xs = np.empty((batch_size, crop, crop), np.float32)
    ys = np.empty((batch_size, crop, crop), np.float32)
    for k, src_i in enumerate(picks):
        src = sources[int(src_i)]
        sample = src.samples[int(rng.integers(0, len(src.samples)))]
        xs[k], ys[k] = augment_slice(rng, sample.hu, sample.target, crop, src.augment)
    x = torch.from_numpy(preprocess(xs, PREPROCESS)[:, None])
    return x, torch.from_numpy(ys)


def fit(
    model: CovidLesionNet,
    next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    *,
    steps: int,
    lr: float,
    device: torch.device,
    loss_kind: str = "ce_dice_slice",
    callback: Callable[[int], None] | None = None,
    callback_every: int = 0,
) -> dict[str, float]:
    """Train ``model`` in place for ``steps`` optimiser steps on ``next_batch()`` batches
    ((N, 1, H, W) input, (N, H, W) long labels or float lesion probabilities).

    Returns, over the last :data:`LOG_EVERY_STEPS` steps, the mean ``loss`` and the ``train_dice``
    of the hard prediction (argmax lesion) against the target (lesion from 0.5), pooled over those
    steps' slices (NaN both when ``steps`` is 0), and ``seconds``. Progress (loss, learning rate,
    rate, time left) goes to the log; ``callback(step)`` runs every ``callback_every`` steps.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = cosine_schedule(opt, max(steps, 1))
    t0 = time.monotonic()
    recent: list[tuple[float, int, int]] = []  # (loss, lesion overlap, lesion pixels) per step
    for step in range(1, steps + 1):
        model.train()
        x, y = next_batch()
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss = lesion_loss(logits, y, loss_kind)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            pred, truth = logits.argmax(1) == 1, y >= 0.5
            inter, sums = int((pred & truth).sum()), int(pred.sum()) + int(truth.sum())
        recent = (recent + [(float(loss.item()), inter, sums)])[-LOG_EVERY_STEPS:]
        if step % LOG_EVERY_STEPS == 0 or step == steps:
            rate = step / (time.monotonic() - t0)
            log.info(
                "step %d/%d loss %.4f train dice %.4f lr %.2e, %.2f steps/s, %.0f s left",
                step, steps, _mean_loss(recent), _train_dice(recent), sched.get_last_lr()[0],
                rate, (steps - step) / rate,
            )  # fmt: skip
        if callback is not None and callback_every and step % callback_every == 0:
            callback(step)
    model.eval()
    return {
        "loss": _mean_loss(recent),
        "train_dice": _train_dice(recent),
        "seconds": time.monotonic() - t0,
    }


def _mean_loss(recent: list[tuple[float, int, int]]) -> float:
    return float(np.mean([r[0] for r in recent])) if recent else float("nan")


def _train_dice(recent: list[tuple[float, int, int]]) -> float:
    """Hard lesion Dice pooled over ``recent`` steps (1.0 when no lesion anywhere)."""
    if not recent:
        return float("nan")
    sums = sum(r[2] for r in recent)
    return 1.0 if sums == 0 else 2.0 * sum(r[1] for r in recent) / sums
