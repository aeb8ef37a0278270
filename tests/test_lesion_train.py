"""Training smoke test: a tiny run writes a checkpoint (+ JSON meta) that load_model accepts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from serialct.lesion.infer import load_model
from serialct.lesion.scoring import dice
from serialct.lesion.train import train


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
    assert "--shape 16,64,64" in meta["command"]  # a non-default grid is part of the command
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
    from serialct.lesion.loss import lesion_loss
    from serialct.lesion.real_slices import sample_real

    hu = np.full((40, 40), -850.0, np.float32)
    lesion = np.zeros((40, 40), np.uint8)
    hu[10:25, 12:30], lesion[10:25, 12:30] = -500.0, 1
    real = SliceSet(hu=[hu], lesion=[lesion], names=["a"], files=[("a",)])
    x, y = sample_real(np.random.default_rng(0), real, 4, (32, 32), "strong")
    assert x.shape == (4, 1, 32, 32) and y.shape == (4, 32, 32)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert set(torch.unique(y).tolist()) <= {0, 1} and int(y.sum()) > 0
    logits = torch.zeros(4, 2, 32, 32, requires_grad=True)
    for kind in ("ce_dice", "ce_dice_slice"):
        loss = lesion_loss(logits, y, kind)
        assert math.isfinite(loss.item()) and loss.item() > 0


MEDSEG = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "medseg-covid-2d-train"


@pytest.mark.skipif(not MEDSEG.is_dir(), reason="MedSeg slices not in ../shared")
def test_kfold_benchmark_split_seed_and_final_real(tmp_path: Path) -> None:
    """benchmarks/lesion_kfold.py: --split-seed picks the held-out slices; the JSON rows."""
    import subprocess
    import sys

    from serialct.lesion.data import kfold_indices
    from serialct.lesion.slices import list_slice_images

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "kf.json"
    run = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "lesion_kfold.py"), "--threads", "1",
         "--steps", "2", "--folds", "0", "--pool", "2", "--split-seed", "1", "--final-real", "0.5",
         "--data", str(MEDSEG), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    stems = [p.stem for p in list_slice_images(MEDSEG / "Imgs")]
    held = {f"{MEDSEG.name}/{stems[i]}" for i in kfold_indices(len(stems), 5, 1)[0]}
    assert set(result["per_slice"]) == held
    assert held != {f"{MEDSEG.name}/{stems[i]}" for i in kfold_indices(len(stems), 5, 0)[0]}
    row = next(iter(result["per_slice"].values()))
    assert {"plain@0.4", "flip@0.25", "train_pick", "flip@train_pick"} <= set(row)
    assert not any(":" in k for k in row)  # one model per fold: keys unprefixed
    assert row["flip@train_pick"] == row[f"flip@{row['train_pick']}"]
    assert 0.0 <= result["summary"]["flip@0.25"] <= 1.0
