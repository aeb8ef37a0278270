"""Training smoke test: a tiny run writes a checkpoint (+ JSON meta) that load_model accepts."""

from __future__ import annotations

import json
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
