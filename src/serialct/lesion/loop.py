"""The training loop: Adam with a cosine learning rate over batches mixed from weighted sources.

A source is a list of :class:`serialct.lesion.slice_sets.Sample`; each batch draws
``batch_size`` slices, each from a source picked with probability proportional to its weight,
augments them (:mod:`serialct.lesion.augment`) and takes one optimiser step of
:func:`serialct.lesion.loss.lesion_loss`.
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
    """A batch (N, 1, crop, crop) network input and (N, crop, crop) float targets."""
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
    sources: Sequence[Source],
    *,
    steps: int,
    lr: float,
    batch_size: int,
    crop: int,
    rng: np.random.Generator,
    device: torch.device,
    loss_kind: str = "ce_dice_slice",
    callback: Callable[[int], None] | None = None,
    callback_every: int = 0,
) -> float:
    """Train ``model`` in place for ``steps`` optimiser steps; returns the mean loss of the last
    :data:`LOG_EVERY_STEPS` steps. Progress (loss, rate, time left) goes to the log."""
    sources = [s for s in sources if s.samples and s.weight > 0]
    if not sources:
        raise ValueError("no training slices")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = cosine_schedule(opt, max(steps, 1))
    t0 = time.monotonic()
    recent: list[float] = []
    for step in range(1, steps + 1):
        model.train()
        x, y = sample_batch(rng, sources, batch_size, crop)
        loss = lesion_loss(model(x.to(device)), y.to(device), loss_kind)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        recent = (recent + [float(loss.item())])[-LOG_EVERY_STEPS:]
        if step % LOG_EVERY_STEPS == 0 or step == steps:
            rate = step / (time.monotonic() - t0)
            log.info(
                "step %d/%d loss %.4f lr %.2e, %.2f steps/s, %.0f s left",
                step, steps, float(np.mean(recent)), sched.get_last_lr()[0], rate,
                (steps - step) / rate,
            )  # fmt: skip
        if callback is not None and callback_every and step % callback_every == 0:
            callback(step)
    model.eval()
    return float(np.mean(recent))
