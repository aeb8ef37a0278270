"""k-fold held-out Dice of COVID-Lesion Net fine-tuning on a labelled slice set (MedSeg 50).

Usage: python benchmarks/lesion_kfold.py [--spacing 0.7|native] [--steps 500] [--frac 0.6]
    [--lr 5e-4] [--init PT|none] [--folds 0,1,2,3,4] [--threads 1] [--save PT]
    [--augment basic|strong] [--loss ce_dice|ce_dice_slice] [--base-channels 16]
    [--final-real 0.2] [--split-seed 0] [--shape 48x128x128]

For each fold (``serialct.lesion.data.kfold_indices(50, 5, --split-seed)``): start from
``--init`` and train ``--steps`` Adam steps (batch 8, cosine lr; :func:`serialct.lesion.loop.fit`)
on phantom slices mixed with the other folds' real slices, exactly as ``serialct train
--real-slices`` samples them (:func:`serialct.lesion.real_slices.mixed_batch`; a phantom pool
of 40 volumes, seed 0, is cached under /tmp); ``--final-real F``: the last F of the steps take real
slices only; ``--shape``: the phantoms' grid, which sets the pixel spacing the net is trained and
run at (48x128x128: 2.81 mm, as the shipped checkpoints; 96x256x256: 1.41 mm). Then score the
held-out slices through the ``segment-slices`` path
(:func:`serialct.lesion.slices.slice_probability` at native size): per-slice lesion Dice (lesion
= label > 0; all 50 slices have lesions, so no empty-truth case), mean over slices, for
probability thresholds 0.15-0.6, without and with a left-right flip average.
Per fold, the threshold of the flip average is also picked on the fold's own training
slices (``train_pick``: best mean Dice over the 40 seen slices), so that the held-out number at that
threshold (``flip@train_pick``) does not use the held-out labels.
Folds can run in separate processes (``--folds``); the per-slice numbers go to ``--out`` JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serialct.lesion.checkpoint import save_checkpoint
from serialct.lesion.data import SliceSet, kfold_indices, load_slice_set
from serialct.lesion.infer import load_model
from serialct.lesion.loop import fit
from serialct.lesion.loss import LOSSES
from serialct.lesion.net import PREPROCESS, CovidLesionNet
from serialct.lesion.phantom_slices import PhantomPool, draw_pool
from serialct.lesion.real_slices import REAL_AUGMENTATIONS, mixed_batch
from serialct.lesion.scoring import dice
from serialct.lesion.slices import slice_probability, window_to_hu
from serialct.lesion.train_args import TRAIN_SHAPE
from serialct.phantom import spacing_for_shape

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real" / "medseg-covid-2d-train"
THRESHOLDS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)
WIDTH = 1500.0


def _flip_dice(
    real: SliceSet,
    i: int,
    model: torch.nn.Module,
    meta: dict[str, Any],
    dev: torch.device,
    sp: float | None,
    center: float,
) -> dict[str, float]:
    """Dice of slice ``i`` per threshold, plain and flip-averaged (``plain@th``, ``flip@th``)."""
    pixels, labels = real.native[i]
    truth = labels > 0
    hu = window_to_hu(pixels, center, WIDTH)
    prob = slice_probability(hu, model, meta, dev, sp)
    flipped = slice_probability(hu[:, ::-1].copy(), model, meta, dev, sp)[:, ::-1]
    row: dict[str, float] = {}
    for name, p in (("plain", prob), ("flip", 0.5 * (prob + flipped))):
        for th in THRESHOLDS:
            row[f"{name}@{th}"] = dice(p >= th, truth)
    return row


def _batches(
    rng: np.random.Generator,
    pool: PhantomPool,
    real: SliceSet,
    a: argparse.Namespace,
) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    """Batches of 8: ``Binomial(8, --frac)`` real slices, phantoms for the rest; the last
    ``--final-real`` share of the ``--steps`` batches real only."""
    real_only_from = a.steps - int(round(a.final_real * a.steps))
    step = 0

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal step
        n_real = 8 if step >= real_only_from else int(rng.binomial(8, a.frac))
        step += 1
        return mixed_batch(rng, pool, real, 8, n_real, a.augment)

    return next_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--spacing", default="0.7", help="assumed mm per slice pixel, or native")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--frac", type=float, default=0.6, help="expected real share of a batch")
    ap.add_argument("--init", default=str(ROOT / "resources/models/covid_lesion_net_phantom.pt"))
    ap.add_argument("--folds", default="0,1,2,3,4")
    ap.add_argument("--center", type=float, default=-400.0, help="window center of the JPGs")
    ap.add_argument("--pool", type=int, default=40, help="phantom volumes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", default="", help="write the last fold's model here")
    ap.add_argument("--out", default="", help="per-slice Dice JSON")
    ap.add_argument("--augment", choices=REAL_AUGMENTATIONS, default="basic")
    ap.add_argument("--loss", choices=LOSSES, default="ce_dice")
    ap.add_argument("--base-channels", type=int, default=16, help="with --init none only")
    ap.add_argument("--final-real", type=float, default=0.0, help="share of steps, real only")
    ap.add_argument("--split-seed", type=int, default=0, help="seed of the fold split")
    ap.add_argument("--shape", default="x".join(map(str, TRAIN_SHAPE)), help="phantom grid")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    shape = tuple(int(n) for n in a.shape.split("x"))
    train_sp = tuple(float(s) for s in spacing_for_shape(shape)[1:])
    sp = None if a.spacing == "native" else float(a.spacing)
    real = load_slice_set(Path(a.data), a.center, WIDTH, sp, train_sp)
    grid = "" if shape == TRAIN_SHAPE else "_" + a.shape
    cache = Path(f"/tmp/serialct_phantom_pool{a.pool}{grid}.npz")
    if cache.exists():
        z = np.load(cache)
        pool = (z["hu"], z["les"], z["lung"])
    else:
        pool = draw_pool(np.random.default_rng(0), a.pool, shape)
        np.savez(cache, hu=pool[0], les=pool[1], lung=pool[2])
    folds = kfold_indices(len(real), 5, a.split_seed)
    dev = torch.device("cpu")
    per_slice: dict[str, dict[str, float]] = {}
    t0 = time.monotonic()
    for f in [int(s) for s in a.folds.split(",")]:
        held = folds[f]
        train_set = real.subset([i for i in range(len(real)) if i not in held])
        torch.manual_seed(f)
        rng = np.random.default_rng(f)
        model = CovidLesionNet(base_channels=a.base_channels)
        meta: dict = {"preprocess": dict(PREPROCESS), "train_pixel_spacing_mm": list(train_sp)}
        if a.init != "none":
            init, meta = load_model(Path(a.init), dev)
            meta = {**meta, "train_pixel_spacing_mm": list(train_sp)}  # run at this grid
            model.load_state_dict(init.state_dict())
        batches = _batches(rng, pool, train_set, a)
        fit(model, batches, steps=a.steps, lr=a.lr, device=dev, loss_kind=a.loss)
        train_idx = [i for i in range(len(real)) if i not in held]
        seen = [_flip_dice(real, i, model, meta, dev, sp, a.center) for i in train_idx]
        pick = max(THRESHOLDS, key=lambda th: np.mean([r[f"flip@{th}"] for r in seen]))
        rows: dict[str, dict[str, float]] = {}
        for i in held:
            row = _flip_dice(real, i, model, meta, dev, sp, a.center)
            row["train_pick"] = pick
            row["flip@train_pick"] = row[f"flip@{pick}"]
            rows[real.names[i]] = row
        per_slice.update(rows)
        done = list(rows.values())
        show = ("plain@0.4", "flip@0.25", "flip@0.3", "flip@train_pick")
        print(
            f"fold {f} ({time.monotonic() - t0:.0f} s): "
            + " ".join(f"{k} {np.mean([r[k] for r in done]):.3f}" for k in show)
            + f" picks raw{pick}",
            flush=True,
        )
        if a.save:
            save_checkpoint(Path(a.save), model, meta)
    keys = [k for k in next(iter(per_slice.values())) if not k.endswith("train_pick")]
    keys += [k for k in next(iter(per_slice.values())) if k.endswith("flip@train_pick")]
    summary = {k: round(float(np.mean([r[k] for r in per_slice.values()])), 4) for k in keys}
    print(f"{len(per_slice)} held-out slices, mean per-slice lesion Dice: {summary}")
    if a.out:
        Path(a.out).write_text(json.dumps({"args": vars(a), "summary": summary,
                                           "per_slice": per_slice}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
