"""The default lesion model's recipe: real COVID-19 slices, normal chests and phantoms, in two
stages, validated by patient.

1. **Pretrain** on pseudo-labelled slices of many patients (soft targets), slices of normal
   chest CT (no lesion anywhere: dependent density, vessels and partial volume at the diaphragm
   are not lesions) and phantoms (the only HU-true lesions), with some patients of the
   pseudo-labelled set held out. The lesion probability threshold is chosen on those held-out
   patients; the expert slices, never trained on, are scored as an external test. Saved as
   ``--external-out``.
2. **Fine-tune** the same weights on all of it plus the expert-labelled slices (the only GGO /
   consolidation labels, and the window-known ones): the shipped model (``--out``).

Every slice image is put on one HU scale by its volume's estimated window
(:mod:`serialct.lesion.window`); augmentation (:mod:`serialct.lesion.augment`) covers orientation,
pixel size, window and acquisition. ``serialct train-real --help`` lists the flags (their
defaults are the shipped recipe); ``resources/models/README.md`` has the command that made the
shipped weights.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch

from serialct import __version__
from serialct.errors import InputError
from serialct.lesion.augment import Augment
from serialct.lesion.data import IMAGES_SUBDIR, LABELS_SUBDIR
from serialct.lesion.infer import load_model
from serialct.lesion.loop import Source, fit, sample_batch
from serialct.lesion.net import CHECKPOINT_FORMAT, PREPROCESS, CovidLesionNet
from serialct.lesion.slice_sets import (
    Sample,
    load_normal_volume,
    load_windowed_set,
    patient_key,
    split_by_patient,
    volume_key,
)
from serialct.lesion.slices import list_slice_images, read_label_slice, read_slice
from serialct.lesion.train_args import add_recipe_arguments

log = logging.getLogger("serialct")

THRESHOLDS: Final = (0.3, 0.4, 0.5, 0.6, 0.7)  # candidates, chosen on held-out patients
PSEUDO_POSITIVE: Final = 0.5  # a soft pseudo label counts as lesion from here when scoring
PRETRAIN_WEIGHTS: Final = {"pseudo": 0.6, "normal": 0.25, "phantom": 0.15}
# Recipe B of resources/models/README.md (chosen over A: expert 0.35, pseudo 0.35, normal 0.2,
# phantom 0.1, lr 3e-4, crop 176).
FINETUNE_WEIGHTS: Final = {"expert": 0.5, "normal": 0.3, "pseudo": 0.15, "phantom": 0.05}


def _phantom_samples(rng: np.random.Generator, volumes: int, shape: tuple[int, int, int]):  # noqa: ANN202
    from serialct.lesion.phantom_slices import draw_pool  # phantoms are training-only

    hu, lesion, has_lung = draw_pool(rng, volumes, shape)
    return [
        Sample(
            hu=hu[i].astype(np.float32),
            target=lesion[i].astype(np.float32),
            patient=f"phantom{i // shape[0]}",
            name=f"phantom#{i}",
        )
        for i in np.flatnonzero(has_lung)
    ]


def native_slices(
    root: Path, patients: set[str] | None
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, pixels, lesion truth) of a slice set's images at native size, optionally only
    ``patients``' (soft labels count from :data:`PSEUDO_POSITIVE`)."""
    out = []
    for img in list_slice_images(Path(root) / IMAGES_SUBDIR):
        if patients is not None and patient_key(volume_key(img.stem)) not in patients:
            continue
        labels = read_label_slice(Path(root) / LABELS_SUBDIR / f"{img.stem}.png")
        truth = labels >= PSEUDO_POSITIVE * 255 if labels.max() > 2 else labels > 0
        out.append((img.stem, read_slice(img), truth))
    return out


def slice_dice(
    model: CovidLesionNet,
    meta: dict[str, Any],
    slices: list[tuple[str, np.ndarray, np.ndarray]],
    window: tuple[float, float] | None = None,
) -> list[float]:
    """Per-slice lesion Dice of the ``segment-slices`` path (default config; ``window`` None:
    estimated per slice) against the truth."""
    from serialct.config import defaults
    from serialct.lesion.scoring import dice
    from serialct.lesion.slices import segment_slice_array

    config = defaults()
    c, w = window if window is not None else (None, None)
    return [
        dice(segment_slice_array(px, model, meta, torch.device("cpu"), config, c, w) > 0, truth)
        for _, px, truth in slices
    ]


def _meta(model: CovidLesionNet, args: argparse.Namespace, stage: str) -> dict[str, Any]:
    from serialct.phantom import spacing_for_shape

    return {
        "format": CHECKPOINT_FORMAT,
        "architecture": model.architecture(),
        "preprocess": dict(PREPROCESS),
        "train_pixel_spacing_mm": [float(s) for s in spacing_for_shape(tuple(args.shape))[1:]],
        "slice_pixel_spacing_mm": args.slice_spacing,
        "slice_window": "estimated per slice (serialct.lesion.window)",
        "recipe": "serialct.lesion.recipe",
        "stage": stage,
        "command": shlex.join(["serialct", "train-real", *args.argv]),
        "torch": str(torch.__version__),
        "package_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seed": args.seed,
        "batch_size": args.batch_size,
        "crop": args.crop,
        "finetune_crop": finetune_crop(args),
        "loss": "ce_dice_slice",
        "metrics": {},
    }


def _save(path: Path, model: CovidLesionNet, meta: dict[str, Any]) -> None:
    from serialct.lesion.checkpoint import save_checkpoint

    save_checkpoint(Path(path), model, meta)
    log.info("saved %s: %s", path, meta["metrics"])


def load_pools(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, list[Sample]]:
    """Every training slice the flags name, by kind: pseudo, expert, normal, phantom."""
    from serialct.phantom import spacing_for_shape

    train_sp = tuple(float(s) for s in spacing_for_shape(tuple(args.shape))[1:])
    kw = {"slice_spacing_mm": args.slice_spacing, "train_spacing_mm": train_sp}
    return {
        "pseudo": load_windowed_set(Path(args.pseudo), soft=True, **kw),  # type: ignore[arg-type]
        "expert": load_windowed_set(Path(args.expert), soft=False, **kw),  # type: ignore[arg-type]
        "normal": [
            s
            for ct, lung in args.normal
            for s in load_normal_volume(Path(ct), Path(lung), train_sp)  # type: ignore[arg-type]
        ],
        "phantom": _phantom_samples(rng, args.pool_volumes, tuple(args.shape)),
    }


def train_stage(
    model: CovidLesionNet,
    pools: dict[str, list[Sample]],
    weights: dict[str, float],
    *,
    steps: int,
    lr: float,
    crop: int,
    args: argparse.Namespace,
    rng: np.random.Generator,
) -> None:
    """``steps`` Adam steps on batches drawn from ``pools`` with ``weights`` (phantoms and
    normal chests are true HU: no window augmentation)."""
    sources = [
        Source(k, pools[k], w, Augment(window=k not in ("phantom", "normal")))
        for k, w in weights.items()
    ]
    fit(
        model,
        lambda: sample_batch(rng, sources, args.batch_size, crop),
        steps=steps,
        lr=lr,
        device=torch.device("cpu"),
    )


def finetune_weights(args: argparse.Namespace) -> dict[str, float]:
    """The fine-tuning stage's batch shares: ``--finetune-weights`` or FINETUNE_WEIGHTS."""
    return getattr(args, "finetune_weights", None) or dict(FINETUNE_WEIGHTS)


def finetune_crop(args: argparse.Namespace) -> int:
    """The fine-tuning stage's crop: ``--finetune-crop`` or ``--crop``."""
    return int(getattr(args, "finetune_crop", None) or args.crop)


def start_model(args: argparse.Namespace) -> CovidLesionNet:
    """A fresh net, with ``--init``'s weights when given."""
    model = CovidLesionNet(base_channels=args.base_channels)
    if args.init:
        init_model, _ = load_model(Path(args.init), torch.device("cpu"))
        model.load_state_dict(init_model.state_dict())
    return model


def pretrain_report(
    model: CovidLesionNet, args: argparse.Namespace, held: set[str]
) -> dict[str, Any]:
    """Meta of the pretrained model: the threshold chosen on the held-out pseudo-label patients,
    and the expert slices (never trained on) as an external test."""
    meta = _meta(
        model, args, "pretrain: pseudo-labelled (held-out patients kept out), normal, phantom"
    )
    val_slices = native_slices(Path(args.pseudo), held)
    by_threshold = {}
    for t in THRESHOLDS:
        meta["threshold"] = t
        by_threshold[t] = float(np.mean(slice_dice(model, meta, val_slices)))
        log.info("threshold %.2f: held-out pseudo-label patients Dice %.4f", t, by_threshold[t])
    meta["threshold"] = max(by_threshold, key=lambda t: by_threshold[t])
    expert_native = native_slices(Path(args.expert), None)
    ext = slice_dice(model, meta, expert_native)
    ext_known = slice_dice(model, meta, expert_native, window=(-400.0, 1500.0))
    meta["metrics"] = {
        "heldout_pseudo_patients": sorted(held),
        "heldout_pseudo_dice_by_threshold": {str(k): round(v, 4) for k, v in by_threshold.items()},
        "external_expert_dice_mean": round(float(np.mean(ext)), 4),
        "external_expert_dice_known_window": round(float(np.mean(ext_known)), 4),
    }
    return meta


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both stages (module docstring); returns the shipped model's meta."""
    torch.set_num_threads(max(int(args.threads), 1))
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.monotonic()
    pools = load_pools(args, rng)
    held = set(args.val_patients)
    pseudo_train, pseudo_val = split_by_patient(pools["pseudo"], held)
    log.info(
        "slices: pseudo %d train / %d held out (%d patients), expert %d, normal %d, phantom %d "
        "(%.0f s)",
        len(pseudo_train),
        len(pseudo_val),
        len(held),
        len(pools["expert"]),
        len(pools["normal"]),
        len(pools["phantom"]),
        time.monotonic() - t0,
    )
    stage = dict(args=args, rng=rng)
    if args.pretrained:
        model, meta = load_model(Path(args.pretrained), torch.device("cpu"))
        threshold = float(meta["threshold"])
        log.info("pretraining skipped: fine-tuning %s (threshold %.2f)", args.pretrained, threshold)
    else:
        if not args.external_out:
            raise InputError("train-real: --external-out is needed unless --pretrained is given")
        model = start_model(args)
        pretrain_pools = {**pools, "pseudo": pseudo_train}
        train_stage(model, pretrain_pools, PRETRAIN_WEIGHTS, steps=args.pretrain_steps,
                    lr=args.lr, crop=args.crop, **stage)  # type: ignore[arg-type]  # fmt: skip
        meta = pretrain_report(model, args, held)
        threshold = meta["threshold"]
        meta["train_seconds"] = round(time.monotonic() - t0, 1)
        _save(Path(args.external_out), model, meta)

    weights = finetune_weights(args)
    train_stage(model, pools, weights, steps=args.finetune_steps, lr=args.finetune_lr,
                crop=finetune_crop(args), **stage)  # type: ignore[arg-type]  # fmt: skip
    final = _meta(model, args, "fine-tune: all pseudo-labelled, expert, normal, phantom")
    final["threshold"] = threshold
    final["finetune_weights"] = weights
    seen = slice_dice(model, final, native_slices(Path(args.expert), None))
    final["metrics"] = {
        "threshold_from": "pretrain stage, held-out pseudo-label patients",
        "pretrain": meta["metrics"],
        "expert_dice_mean_seen_in_training": round(float(np.mean(seen)), 4),
    }
    final["train_seconds"] = round(time.monotonic() - t0, 1)
    _save(Path(args.out), model, final)
    return final


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="serialct train-real", description=__doc__.splitlines()[0])
    add_recipe_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``serialct train-real`` / ``python -m serialct.lesion.recipe``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        meta = run(args)
    except InputError as exc:
        log.error("serialct.lesion.recipe: %s", exc)
        return 2
    print(json.dumps(meta["metrics"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
