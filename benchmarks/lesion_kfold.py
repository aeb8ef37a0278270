"""k-fold held-out Dice of COVID-Lesion Net fine-tuning on a labelled slice set (MedSeg 50).

Usage: python benchmarks/lesion_kfold.py [--spacing 0.7|native] [--steps 500] [--frac 0.6]
    [--lr 5e-4] [--init PT|none] [--folds 0,1,2,3,4] [--threads 1] [--save PT]
    [--augment basic|strong] [--loss ce_dice|ce_dice_slice] [--base-channels 16]

For each fold (``serialct.lesion.data.kfold_indices(50, 5, seed 0)``): start from ``--init`` and
train ``--steps`` Adam steps (batch 8, cosine lr) on phantom slices mixed with the other folds'
real slices, exactly as ``serialct train --real-slices`` samples them (a phantom pool of 40
volumes, seed 0, is cached under /tmp). Then score the held-out slices through the
``segment-slices`` path (:func:`serialct.lesion.slices.slice_probability` at native size): per-slice
lesion Dice (lesion = label > 0; all 50 slices have lesions, so no empty-truth case), mean over
slices, for probability thresholds 0.2-0.6, without and with a left-right flip average.
Folds can run in separate processes (``--folds``); the per-slice numbers go to ``--out`` JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from serialct.lesion import train as T
from serialct.lesion.data import kfold_indices, load_slice_set
from serialct.lesion.infer import load_model
from serialct.lesion.net import PREPROCESS, CovidLesionNet
from serialct.lesion.slices import slice_probability, window_to_hu
from serialct.phantom import spacing_for_shape

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real" / "medseg-covid-2d-train"
THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)
WIDTH = 1500.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--spacing", default="0.7", help="assumed mm per slice pixel, or native")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--frac", type=float, default=0.6, help="expected real share of a batch")
    ap.add_argument("--init", default=str(ROOT / "resources/models/covid_lesion_net.pt"))
    ap.add_argument("--folds", default="0,1,2,3,4")
    ap.add_argument("--center", type=float, default=-400.0, help="window center of the JPGs")
    ap.add_argument("--pool", type=int, default=40, help="phantom volumes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", default="", help="write the last fold's model here")
    ap.add_argument("--out", default="", help="per-slice Dice JSON")
    ap.add_argument("--augment", choices=T.REAL_AUGMENTATIONS, default="basic")
    ap.add_argument("--loss", choices=T.LOSSES, default="ce_dice")
    ap.add_argument("--base-channels", type=int, default=16, help="with --init none only")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    shape = T.DEFAULT_SHAPE
    train_sp = tuple(float(s) for s in spacing_for_shape(shape)[1:])
    sp = None if a.spacing == "native" else float(a.spacing)
    real = load_slice_set(Path(a.data), a.center, WIDTH, sp, train_sp)
    cache = Path(f"/tmp/serialct_phantom_pool{a.pool}.npz")
    if cache.exists():
        z = np.load(cache)
        pool = (z["hu"], z["les"], z["lung"])
    else:
        pool = T._draw_pool(np.random.default_rng(0), a.pool, shape)
        np.savez(cache, hu=pool[0], les=pool[1], lung=pool[2])
    folds = kfold_indices(len(real), 5, 0)
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
            model.load_state_dict(init.state_dict())
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt,
            lambda s: (
                T.FINAL_LR_FRACTION
                + (1 - T.FINAL_LR_FRACTION) * 0.5 * (1 + np.cos(np.pi * s / a.steps))
            ),
        )
        model.train()
        for _ in range(a.steps):
            n_real = int(rng.binomial(8, a.frac))
            xs, ys = T._sample_batch(rng, pool, 8 - n_real)
            xr, yr = T._sample_real(rng, train_set, n_real, shape[1:], a.augment)
            loss = T._loss(model(torch.cat([xs, xr])), torch.cat([ys, yr]), a.loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        for i in held:
            pixels, labels = real.native[i]
            truth = labels > 0
            hu = window_to_hu(pixels, a.center, WIDTH)
            prob = slice_probability(hu, model, meta, dev, sp)
            flipped = slice_probability(hu[:, ::-1].copy(), model, meta, dev, sp)[:, ::-1]
            row = {}
            for name, p in (("plain", prob), ("flip", 0.5 * (prob + flipped))):
                for th in THRESHOLDS:
                    row[f"{name}@{th}"] = T.dice(p >= th, truth)
            per_slice[real.names[i]] = row
        done = [per_slice[real.names[i]] for i in held]
        print(
            f"fold {f} ({time.monotonic() - t0:.0f} s): "
            + " ".join(f"{k} {np.mean([r[k] for r in done]):.3f}" for k in done[0]),
            flush=True,
        )
        if a.save:
            T.save_checkpoint(Path(a.save), model, meta)
    keys = next(iter(per_slice.values())).keys()
    summary = {k: round(float(np.mean([r[k] for r in per_slice.values()])), 4) for k in keys}
    print(f"{len(per_slice)} held-out slices, mean per-slice lesion Dice: {summary}")
    if a.out:
        Path(a.out).write_text(json.dumps({"args": vars(a), "summary": summary,
                                           "per_slice": per_slice}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
