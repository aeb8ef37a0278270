"""The ``serialct train`` entry points: command-line flags or a config's ``train`` section ->
loaded training data -> :func:`serialct.lesion.train.train` / ``train_kfold``.

:func:`run_train` reads the slice sets and volume pairs the flags name, with the display window
and pixel spacing from the flags or the config's ``lesion`` section (``lesion.slice_window: auto``
estimates one window from the histogram of all slice-set images pooled,
:mod:`serialct.lesion.window`); :func:`train_from_config` maps the config onto the same flags (the
``train_model`` rule); :func:`main` is ``python -m serialct.lesion.train_cli`` (also reachable as
``python -m serialct.lesion.train``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from serialct.errors import InputError
from serialct.lesion import train as train_module
from serialct.lesion.data import IMAGES_SUBDIR
from serialct.lesion.real_slices import RealData
from serialct.lesion.slices import list_slice_images, read_slice
from serialct.lesion.train import train, train_kfold
from serialct.lesion.train_args import add_train_arguments
from serialct.lesion.window import MEDSEG_WINDOW, estimate_window, pixel_histogram

log = logging.getLogger("serialct")


def slice_set_window(roots: Sequence[Path]) -> tuple[float, float]:
    """(center, width) estimated from the pooled histogram of every image of the slice sets
    ``roots`` (their ``Imgs/``); InputError when it shows no lung/tissue contrast."""
    images = [f for root in roots for f in list_slice_images(Path(root) / IMAGES_SUBDIR)]
    center, width = estimate_window(sum(pixel_histogram(read_slice(f)) for f in images))
    return float(center), float(width)


def resolve_window(
    configured: str | Sequence[float],
    center: float | None,
    width: float | None,
    real_slices: Sequence[str],
) -> tuple[float, float]:
    """The slice sets' display window: ``center`` / ``width`` (the flags) where given, else the
    config's ``lesion.slice_window`` ``configured``: [center, width], or ``"auto"``: estimated
    from the slice sets ``real_slices`` (:func:`slice_set_window`; the MedSeg window when there
    are none: volume pairs are HU already and read no window)."""
    if configured != "auto":
        c, w = configured
        return float(c if center is None else center), float(w if width is None else width)
    if center is not None and width is not None:
        return float(center), float(width)
    if center is not None or width is not None:
        raise InputError("give both --window-center and --window-width, or neither (auto)")
    if not real_slices:
        return MEDSEG_WINDOW
    window = slice_set_window([Path(d) for d in real_slices])
    log.info("slice window estimated from %s: C %.0f W %.0f", ", ".join(real_slices), *window)
    return window


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    """Load the data named by :func:`add_train_arguments`' flags and train; returns the meta."""
    from serialct.config import defaults, load_config
    from serialct.lesion.data import load_slice_set, load_volume_pair, merge
    from serialct.phantom import spacing_for_shape

    config = load_config(args.config) if args.config else defaults()
    sp_arg = args.slice_pixel_spacing
    spacing = config["lesion"]["slice_pixel_spacing_mm"] if sp_arg is None else sp_arg
    spacing = None if spacing in (None, "native") else float(spacing)
    shape = tuple(args.shape)
    train_sp = tuple(float(s) for s in spacing_for_shape(shape)[1:])
    real = None
    if args.real_slices or args.volume:
        configured = config["lesion"]["slice_window"]
        window = resolve_window(configured, args.window_center, args.window_width, args.real_slices)
        sets = [load_slice_set(Path(d), *window, spacing, train_sp) for d in args.real_slices]  # type: ignore[arg-type]
        sets += [load_volume_pair(Path(i), Path(lab), train_sp) for i, lab in args.volume]  # type: ignore[arg-type]
        real = RealData(
            merge(sets),
            window,
            spacing,
            fraction=args.real_fraction,
            sources=tuple(args.real_slices),
            volumes=tuple((i, lab) for i, lab in args.volume),
        )
    kwargs: dict[str, Any] = dict(
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        pool_volumes=args.pool_volumes,
        init=Path(args.init) if args.init else None,
        threshold=args.threshold,
        real_augment=args.real_augment,
        loss_kind=args.loss,
        flip_average=args.flip_average,
        shape=shape,
    )
    if args.kfold:
        if real is None or not args.real_slices:
            raise InputError("--kfold needs --real-slices")
        return train_kfold(Path(args.out), real=real, k=args.kfold, seed=args.seed, **kwargs)
    return train(Path(args.out), real=real, seed=args.seed, **kwargs)


def train_from_config(
    config: dict[str, Any], out: Path, *, threads: int | None = None
) -> dict[str, Any]:
    """Train as ``config["train"]`` says (the ``train_model`` rule); returns the meta.

    Slice windows (``auto``: estimated from the slice sets) and the assumed slice pixel spacing
    come from ``config["lesion"]``, the device from ``config["device"]``; ``threads`` caps torch's
    CPU threads (the job's allocation).
    """
    if threads is not None:
        torch.set_num_threads(max(int(threads), 1))
    tc = config["train"]
    window = config["lesion"]["slice_window"]
    if window == "auto" and (tc["real_slices"] or tc["volumes"]):  # estimated here, once
        window = resolve_window(window, None, None, [str(d) for d in tc["real_slices"]])
    center, width = (None, None) if window == "auto" else (float(window[0]), float(window[1]))
    spacing = config["lesion"]["slice_pixel_spacing_mm"]
    args = argparse.Namespace(
        out=str(out),
        epochs=int(tc["epochs"]),
        steps_per_epoch=int(tc["steps_per_epoch"]),
        batch_size=int(tc["batch_size"]),
        lr=float(tc["lr"]),
        seed=int(tc["seed"]),
        device=config["device"],
        pool_volumes=int(tc["pool_volumes"]),
        real_slices=[str(d) for d in tc["real_slices"]],
        volume=[[str(i), str(lab)] for i, lab in tc["volumes"]],
        window_center=center,
        window_width=width,
        slice_pixel_spacing="native" if spacing is None else str(spacing),
        real_fraction=float(tc["real_fraction"]),
        kfold=int(tc["kfold"]),
        init=tc["init"],
        threshold=tc["threshold"],
        real_augment=str(tc["real_augment"]),
        loss=str(tc["loss"]),
        flip_average=bool(tc["flip_average"]),
        shape=tuple(int(n) for n in tc["shape"]),
        config=None,
    )
    return run_train(args)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m serialct.lesion.train_cli``: same flags as ``serialct train``."""
    parser = argparse.ArgumentParser(
        prog="serialct train", description=(train_module.__doc__ or "").splitlines()[0]
    )
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        meta = run_train(args)
    except InputError as exc:
        log.error("serialct train: %s", exc)
        return 2
    log.info("metrics %s", meta["metrics"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
