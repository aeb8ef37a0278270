"""Training smoke test: a tiny run writes a checkpoint (+ JSON meta) that load_model accepts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from serialct.lesion.infer import load_model
from serialct.lesion.train import dice, train


def test_train_smoke(tmp_path: Path) -> None:
    out = tmp_path / "models" / "net.pt"
    meta = train(
        out,
        epochs=1,
        steps_per_epoch=2,
        batch_size=2,
        shape=(16, 64, 64),
        val_volumes=1,
        device="cpu",
        pool_volumes=2,
        base_channels=4,
    )
    model, loaded = load_model(out, torch.device("cpu"))
    assert loaded == meta
    assert model.base_channels == 4
    assert json.loads(out.with_suffix(".json").read_text()) == meta
    assert meta["command"].startswith(f"serialct train --out {out} --epochs 1 --steps-per-epoch 2")
    assert meta["train_pixel_spacing_mm"] == [360.0 / 64, 360.0 / 64]
    assert set(meta["metrics"]) == {
        "train_dice",
        "val_dice",
        "val_volume_rel_err_max",
        "val_volume_rel_err_median",
    }
    assert 0.0 <= meta["metrics"]["val_dice"] <= 1.0
    assert len(meta["validation"]) == 1


def test_dice() -> None:
    a = torch.zeros(10, dtype=torch.bool).numpy()
    b = a.copy()
    assert dice(a, b) == 1.0
    a[:4] = True
    b[2:6] = True
    assert dice(a, b) == 0.5


def test_strong_real_augmentation_and_slice_loss() -> None:
    import numpy as np

    from serialct.lesion.data import SliceSet
    from serialct.lesion.train import _loss, _sample_real

    hu = np.full((40, 40), -850.0, np.float32)
    lesion = np.zeros((40, 40), np.uint8)
    hu[10:25, 12:30], lesion[10:25, 12:30] = -500.0, 1
    real = SliceSet(hu=[hu], lesion=[lesion], names=["a"], files=[("a",)])
    x, y = _sample_real(np.random.default_rng(0), real, 4, (32, 32), "strong")
    assert x.shape == (4, 1, 32, 32) and y.shape == (4, 32, 32)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert set(torch.unique(y).tolist()) <= {0, 1} and int(y.sum()) > 0
    logits = torch.zeros(4, 2, 32, 32, requires_grad=True)
    for kind in ("ce_dice", "ce_dice_slice"):
        loss = _loss(logits, y, kind)
        assert math.isfinite(loss.item()) and loss.item() > 0
