"""The ``serialct train`` flags, apart from the training code so the CLI starts without torch."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Final

REAL_FRACTION: Final = 0.5  # expected share of real slices in a batch when there are any
TRAIN_SHAPE: Final = (48, 128, 128)  # default phantom grid of the training pool: 2.81 mm pixels


def parse_shape(text: str) -> tuple[int, int, int]:
    """``--shape`` of ``serialct synth`` / ``train``: ``"96,256,256"`` -> ``(96, 256, 256)``."""
    try:
        z, y, x = (int(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--shape wants Z,Y,X integers, got {text!r}") from exc
    if min(z, y, x) < 16:
        raise argparse.ArgumentTypeError(f"--shape {text}: every axis needs at least 16 voxels")
    return z, y, x


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serialct train`` flags (the CLI and ``python -m serialct.lesion.train`` share them)."""
    parser.add_argument("--out", default="resources/models/covid_lesion_net.pt")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8, help="the paper's 8")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--pool-volumes", type=int, default=150, help="synthetic phantoms drawn")
    parser.add_argument(
        "--shape",
        type=parse_shape,
        default=TRAIN_SHAPE,
        metavar="Z,Y,X",
        help="grid of the synthetic phantoms; it sets the pixel spacing the net is trained and "
        "run at (48,128,128: 2.81 mm, the default; 96,256,256: 1.41 mm)",
    )
    parser.add_argument(
        "--real-slices",
        action="append",
        default=[],
        metavar="DIR",
        help="slice set with Imgs/ (8-bit windowed PNG/JPG) and GT/<stem>.png labels (>0 lesion); "
        "repeatable",
    )
    parser.add_argument(
        "--volume",
        nargs=2,
        action="append",
        default=[],
        metavar=("IMAGE", "LABEL"),
        help="CT (HU) + lesion label volume (>0 lesion), e.g. NIfTI; repeatable",
    )
    parser.add_argument("--window-center", type=float, help="default: config lesion.slice_window")
    parser.add_argument("--window-width", type=float, help="default: config lesion.slice_window")
    parser.add_argument(
        "--slice-pixel-spacing",
        help="assumed mm per pixel of slice images, or 'native' (default: config "
        "lesion.slice_pixel_spacing_mm)",
    )
    parser.add_argument("--real-fraction", type=float, default=REAL_FRACTION)
    parser.add_argument(
        "--real-augment",
        choices=["basic", "strong"],
        default="basic",
        help="augmentation of real slices: basic (zoom half the time, crop, mirror, HU shift, "
        "noise) or strong (also rotation, elastic warp, contrast, blur; zoom always)",
    )
    parser.add_argument(
        "--loss",
        choices=["ce_dice", "ce_dice_slice"],
        default="ce_dice",
        help="cross-entropy + soft Dice over the batch (ce_dice) or mean per-slice soft Dice "
        "(ce_dice_slice)",
    )
    parser.add_argument("--kfold", type=int, default=0, help="k-fold on the slice sets first")
    parser.add_argument("--init", help="start from this checkpoint's weights")
    parser.add_argument("--config", help="config.yaml (window / spacing defaults)")
    parser.add_argument(
        "--flip-average",
        action="store_true",
        help="store test-time left-right flip averaging in the checkpoint (inference runs the "
        "net twice per slice)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        help="lesion probability threshold stored in the checkpoint (default: inference's 0.5)",
    )


def train_input_files(train_config: dict[str, Any]) -> list[str]:
    """Files/folders a config ``train`` section reads (the ``train_model`` rule's inputs): slice
    sets' Imgs/ and GT/, volume pairs and the init checkpoint, so a change retrains."""
    files = [str(Path(d) / sub) for d in train_config["real_slices"] for sub in ("Imgs", "GT")]
    files += [str(f) for pair in train_config["volumes"] for f in pair]
    return files + ([str(train_config["init"])] if train_config["init"] else [])


def parse_weights(text: str) -> dict[str, float]:
    """``"expert=0.5,normal=0.3"`` -> ``{"expert": 0.5, "normal": 0.3}``."""
    try:
        pairs = [item.split("=") for item in text.split(",")]
        weights = {k.strip(): float(v) for k, v in pairs}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"want KIND=WEIGHT,..., got {text!r}") from exc
    unknown = set(weights) - {"expert", "pseudo", "normal", "phantom"}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown kinds {sorted(unknown)} in {text!r}")
    return weights


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    """The ``serialct train-real`` flags (:mod:`serialct.lesion.recipe`)."""
    p.add_argument("--out", required=True, help="the fine-tuned (default) checkpoint")
    p.add_argument("--external-out", help="the pretrained checkpoint (needed unless --pretrained)")
    p.add_argument(
        "--pretrained",
        help="skip the pretraining stage: fine-tune this --external-out checkpoint of an earlier "
        "run (its threshold and metrics are kept)",
    )
    p.add_argument("--pseudo", required=True, help="slice set with soft (0-255) lesion labels")
    p.add_argument("--expert", required=True, help="slice set with 0/1 GGO/2 consolidation labels")
    p.add_argument(
        "--normal",
        nargs=2,
        action="append",
        default=[],
        metavar=("CT", "LUNG"),
        help="lesion-free CT (HU, NIfTI) and its lung mask (serialct convert, serialct masks); "
        "repeatable",
    )
    p.add_argument("--val-patients", nargs="+", default=[], help="pseudo-label patients held out")
    p.add_argument("--init", help="start from this checkpoint's weights")
    p.add_argument("--pretrain-steps", type=int, default=5000)
    p.add_argument("--finetune-steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--finetune-lr", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=176, help="training crop, pixels at the net's grid")
    p.add_argument("--finetune-crop", type=int, default=192, help="crop of the fine-tuning stage")
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument(
        "--shape",
        type=parse_shape,
        default=(96, 256, 256),
        metavar="Z,Y,X",
        help="phantom grid; sets the net's pixel spacing (96,256,256: 1.41 mm)",
    )
    p.add_argument("--pool-volumes", type=int, default=20, help="phantoms drawn")
    p.add_argument(
        "--slice-spacing", type=float, default=0.7, help="assumed mm per slice-image pixel"
    )
    p.add_argument(
        "--finetune-weights",
        type=parse_weights,
        default=None,
        metavar="KIND=W,...",
        help="batch shares of the fine-tuning stage (expert, pseudo, normal, phantom); default "
        "serialct.lesion.recipe.FINETUNE_WEIGHTS",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
