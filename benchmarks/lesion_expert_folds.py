"""Held-out expert-slice Dice of the default model's fine-tuning stage, by 2-fold on the 50
expert slices.

Usage: python benchmarks/lesion_expert_folds.py --external PT [recipe flags as in
    resources/models/README.md] [--k 2] [--folds 0,1] [--split-seed 0] [--out PT] [--json OUT]

The shipped model is the pretrained checkpoint (``--external``: never saw an expert slice)
fine-tuned on all 50 expert slices, so those 50 cannot score it. Here each fold fine-tunes the
same pretrained checkpoint exactly as ``serialct train-real``'s second stage does (same pools,
weights, steps, learning rate and threshold) but on the other folds' expert slices (25 of 50 with
the default ``--k 2``), and scores its own fold
through ``segment-slices``' default path (window estimated per image): mean per-slice lesion
Dice, and GGO / consolidation Dice (mean over slices whose truth has that class, the HU split of
the prediction against the expert classes). Caveat: the MedSeg slices carry no patient id, and a
patient's slices may fall on both sides of a split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from serialct.config import defaults
from serialct.lesion.infer import load_model
from serialct.lesion.recipe import finetune_crop, finetune_weights, load_pools, train_stage
from serialct.lesion.scoring import dice
from serialct.lesion.slices import read_label_slice, read_slice, segment_slice_array
from serialct.lesion.train_args import add_recipe_arguments


def score(model, meta, images: list[Path]) -> dict[str, float]:  # noqa: ANN001
    """Mean per-slice Dice: lesion (all slices), GGO and consolidation (slices that have it)."""
    config = defaults()
    rows = {"lesion": [], "ggo": [], "consolidation": []}
    for img in images:
        truth = read_label_slice(img.parent.parent / "GT" / f"{img.stem}.png")
        pred = segment_slice_array(read_slice(img), model, meta, torch.device("cpu"), config,
                                   None, None)  # fmt: skip
        rows["lesion"].append(dice(pred > 0, truth > 0))
        for name, value in (("ggo", 1), ("consolidation", 2)):
            if (truth == value).any():
                rows[name].append(dice(pred == value, truth == value))
    return {k: float(np.mean(v)) for k, v in rows.items()} | {"n": len(images)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(ap)
    ap.add_argument("--external", required=True, help="the pretrained (stage 1) checkpoint")
    ap.add_argument("--folds", default="0,1")
    ap.add_argument("--k", type=int, default=2, help="number of folds the slices are split into")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument(
        "--slice-settings-from",
        help="also score with this checkpoint's slice_inference settings (e.g. the shipped model)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    pools = load_pools(args, rng)
    images = sorted((Path(args.expert) / "Imgs").glob("*.jpg"), key=lambda p: p.stem)
    order = np.random.default_rng(args.split_seed).permutation(len(images))
    parts = [sorted(order[i :: args.k]) for i in range(args.k)]
    by_name = {s.name.split("/")[-1]: s for s in pools["expert"]}
    results = []
    for f in (int(v) for v in args.folds.split(",")):
        t0 = time.monotonic()
        test_idx = parts[f]
        train_idx = sorted(i for j, part in enumerate(parts) if j != f for i in part)
        model, meta = load_model(Path(args.external), torch.device("cpu"))
        model.train()
        fold_pools = {**pools, "expert": [by_name[images[i].stem] for i in train_idx]}
        train_stage(model, fold_pools, finetune_weights(args), steps=args.finetune_steps,
                    lr=args.finetune_lr, crop=finetune_crop(args), args=args, rng=rng)  # fmt: skip
        model.eval()
        res = score(model, meta, [images[i] for i in test_idx])
        if args.slice_settings_from:
            _, shipped = load_model(Path(args.slice_settings_from), torch.device("cpu"))
            meta = meta | {"slice_inference": shipped["slice_inference"]}
            with_settings = score(model, meta, [images[i] for i in test_idx])
            res["with_slice_settings"] = with_settings | {"settings": shipped["slice_inference"]}
            res["test_slices"] = [images[i].stem for i in test_idx]
        if args.out:
            from serialct.lesion.checkpoint import save_checkpoint

            save_checkpoint(
                Path(args.out).with_name(f"{Path(args.out).stem}_fold{f}.pt"), model, meta
            )
        res.update(fold=f, seconds=round(time.monotonic() - t0, 1))
        print(json.dumps(res), flush=True)
        results.append(res)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
