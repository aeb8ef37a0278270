"""Inference settings for 8-bit slice images, chosen on one expert fold and reported on the other.

Usage: python benchmarks/lesion_slice_inference.py FOLD0.pt FOLD1.pt [--expert DIR] [--json OUT]

FOLD0.pt / FOLD1.pt are the fold checkpoints of ``benchmarks/lesion_expert_folds.py --out``
(each fine-tuned on the other half of the 50 expert slices, ``--split-seed 0``). For every
combination of test-time augmentation (:data:`serialct.lesion.infer.TTA_MODES`), assumed pixel
spacing of the slice images and probability threshold, the mean per-slice lesion Dice of each
fold's model on its own held-out half is computed through ``segment-slices``' path (window
estimated per image). The setting is chosen on fold 0 alone: the highest threshold within
``TOLERANCE`` of fold 0's best Dice (fewer false positives for the same Dice); fold 1, which took
no part in the choice, reports it. The chosen setting goes into a checkpoint's meta
``slice_inference`` (:func:`serialct.lesion.slices.for_slices`).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Final

import numpy as np
import torch

from serialct.config import defaults
from serialct.lesion.infer import TTA_MODES, load_model
from serialct.lesion.scoring import dice
from serialct.lesion.slices import (
    labels_from_probability,
    read_label_slice,
    read_slice,
    slice_probability,
    slice_window,
    window_to_hu,
)

EXPERT: Final = Path(__file__).resolve().parents[2] / "shared/data/real/medseg-covid-2d-train"
SPACINGS_MM: Final = (0.6, 0.7, 0.8, 0.9, 1.0)
THRESHOLDS: Final = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
TOLERANCE: Final = 0.005  # Dice; within this of the best, the higher threshold is preferred


def fold_halves(n: int, split_seed: int = 0) -> list[list[int]]:
    """The two halves of ``benchmarks/lesion_expert_folds.py``: fold f scores half f."""
    order = np.random.default_rng(split_seed).permutation(n)
    return [sorted(order[0::2]), sorted(order[1::2])]


def grid(checkpoint: Path, images: list[Path]) -> dict[tuple[str, float, float], dict]:
    """Mean Dice (lesion, GGO, consolidation) of every (tta, spacing, threshold) on ``images``."""
    config = defaults()
    model, meta = load_model(checkpoint, torch.device("cpu"))
    data = []
    for img in images:
        pixels = read_slice(img)
        hu = window_to_hu(pixels, *slice_window(pixels, None, None))
        data.append((hu, read_label_slice(img.parent.parent / "GT" / f"{img.stem}.png")))
    out = {}
    for tta, spacing in itertools.product(TTA_MODES, SPACINGS_MM):
        probs = [slice_probability(hu, model, meta | {"tta": tta}, torch.device("cpu"), spacing)
                 for hu, _ in data]  # fmt: skip
        for th in THRESHOLDS:
            rows: dict[str, list[float]] = {"lesion": [], "ggo": [], "consolidation": []}
            for (hu, truth), prob in zip(data, probs, strict=True):
                pred = labels_from_probability(prob, hu, config["hu"], th)
                rows["lesion"].append(dice(pred > 0, truth > 0))
                for name, value in (("ggo", 1), ("consolidation", 2)):
                    if (truth == value).any():
                        rows[name].append(dice(pred == value, truth == value))
            out[(tta, spacing, th)] = {k: float(np.mean(v)) for k, v in rows.items()}
    return out


def choose(scores: dict[tuple[str, float, float], dict]) -> tuple[str, float, float]:
    """The highest-threshold setting within :data:`TOLERANCE` of the best lesion Dice."""
    best = max(s["lesion"] for s in scores.values())
    near = [k for k, s in scores.items() if s["lesion"] >= best - TOLERANCE]
    return max(near, key=lambda k: (k[2], scores[k]["lesion"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fold0", type=Path)
    ap.add_argument("fold1", type=Path)
    ap.add_argument("--expert", type=Path, default=EXPERT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images = sorted((args.expert / "Imgs").glob("*.jpg"), key=lambda p: p.stem)
    halves = fold_halves(len(images))
    scores = [grid(ckpt, [images[i] for i in halves[f]])
              for f, ckpt in enumerate((args.fold0, args.fold1))]  # fmt: skip
    tta, spacing, threshold = choose(scores[0])
    key = (tta, spacing, threshold)
    result = {
        "chosen_on_fold_0": {
            "tta": tta,
            "slice_pixel_spacing_mm": spacing,
            "threshold": threshold,
            **scores[0][key],
        },  # fmt: skip
        "held_out_fold_1": scores[1][key],
        "default_fold_0": scores[0][("none", 0.7, 0.3)],
        "default_fold_1": scores[1][("none", 0.7, 0.3)],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        grid_rows = [{"fold": f, "tta": k[0], "spacing": k[1], "threshold": k[2], **v}
                     for f, s in enumerate(scores) for k, v in s.items()]  # fmt: skip
        args.json.write_text(json.dumps(result | {"grid": grid_rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
