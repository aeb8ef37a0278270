"""Training data beyond phantoms: slice sets, volume pairs, k-fold, and training with them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from PIL import Image

from serialct.errors import InputError
from serialct.lesion.data import (
    kfold_indices,
    load_slice_set,
    load_volume_pair,
    merge,
    sha1_file,
)
from serialct.lesion.infer import load_model
from serialct.lesion.real_slices import RealData
from serialct.lesion.slices import hu_to_window
from serialct.lesion.train import train, train_kfold
from serialct.lesion.train_args import add_train_arguments
from serialct.lesion.train_cli import run_train

CENTER, WIDTH = -600.0, 1500.0
TRAIN_SP = (2.8, 2.8)


def _slice_set(root: Path, n: int = 4, size: tuple[int, int] = (70, 84)) -> Path:
    """``n`` windowed JPG slices with a consolidation disc and palette GT PNGs."""
    (root / "Imgs").mkdir(parents=True)
    (root / "GT").mkdir()
    yy, xx = np.mgrid[: size[0], : size[1]]
    for i in range(n):
        disc = (yy - size[0] // 2) ** 2 + (xx - size[1] // 2 - i) ** 2 < 15**2
        hu = np.where(disc, 20.0, -850.0)
        Image.fromarray(hu_to_window(hu, CENTER, WIDTH)).save(root / "Imgs" / f"{i}.jpg")
        gt = Image.fromarray((disc * 2).astype(np.uint8), mode="P")
        gt.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
        gt.save(root / "GT" / f"{i}.png")
    return root


def test_load_slice_set(tmp_path: Path) -> None:
    root = _slice_set(tmp_path / "set")
    native = load_slice_set(root, CENTER, WIDTH, None, TRAIN_SP)
    assert len(native) == 4
    assert native.hu[0].shape == (70, 84)
    assert native.lesion[0].sum() == pytest.approx(np.pi * 15**2, rel=0.05)
    assert native.hu[0][35, 42] == pytest.approx(20.0, abs=15)  # HU from the window (JPEG loss)
    assert native.sha1["set/Imgs/0.jpg"] == sha1_file(root / "Imgs" / "0.jpg")
    assert len(native.sha1) == 8
    small = load_slice_set(root, CENTER, WIDTH, 0.7, TRAIN_SP)  # 4x down-sampled
    assert small.hu[0].shape == (18, 21)
    sub = native.subset([1, 3])
    assert sub.names == ["set/1", "set/3"]
    assert set(sub.sha1) == {"set/Imgs/1.jpg", "set/GT/1.png", "set/Imgs/3.jpg", "set/GT/3.png"}
    assert len(merge([native, sub])) == 6


def test_load_slice_set_errors(tmp_path: Path) -> None:
    root = _slice_set(tmp_path / "set", n=2)
    (root / "GT" / "1.png").unlink()
    with pytest.raises(InputError, match="1.jpg"):
        load_slice_set(root, CENTER, WIDTH, None, TRAIN_SP)
    with pytest.raises(InputError, match="not a folder"):
        load_slice_set(tmp_path / "nothing", CENTER, WIDTH, None, TRAIN_SP)


def test_load_volume_pair(tmp_path: Path) -> None:
    hu = np.full((3, 40, 40), -850, dtype=np.int16)
    hu[:, 10:20, 10:20] = -400
    ct = sitk.GetImageFromArray(hu)
    ct.SetSpacing((1.4, 1.4, 5.0))
    lab = sitk.GetImageFromArray((hu > -500).astype(np.uint8))
    lab.CopyInformation(ct)
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(lab, str(tmp_path / "lab.nii.gz"))
    s = load_volume_pair(tmp_path / "ct.nii.gz", tmp_path / "lab.nii.gz", TRAIN_SP)
    assert len(s) == 3
    assert s.hu[0].shape == (20, 20)
    assert s.lesion[0].sum() == 25  # 10x10 at 1.4 mm -> 5x5 at 2.8 mm
    assert set(s.sha1) == {"ct.nii.gz", "lab.nii.gz"}


def test_kfold_indices() -> None:
    folds = kfold_indices(50, 5, seed=0)
    assert [len(f) for f in folds] == [10] * 5
    assert sorted(i for f in folds for i in f) == list(range(50))
    assert folds == kfold_indices(50, 5, seed=0)
    with pytest.raises(InputError):
        kfold_indices(3, 5, seed=0)


def _tiny_kwargs() -> dict:
    return dict(
        epochs=1,
        steps_per_epoch=2,
        batch_size=4,
        shape=(16, 64, 64),
        val_volumes=0,
        device="cpu",
        pool_volumes=2,
        base_channels=4,
    )


def test_train_with_real_slices(tmp_path: Path) -> None:
    root = _slice_set(tmp_path / "set", n=5)
    real = RealData(
        load_slice_set(root, CENTER, WIDTH, None, TRAIN_SP), (CENTER, WIDTH), None,
        sources=(str(root),),
    )  # fmt: skip
    out = tmp_path / "net.pt"
    meta = train(out, real=real, holdout=[0, 2], **_tiny_kwargs())
    _, loaded = load_model(out, torch.device("cpu"))
    assert loaded == meta
    assert meta["data"]["real_train_slices"] == 3
    assert set(meta["data"]["real_train_sha1"]) == {
        f"set/{d}/{i}.{e}" for i in (1, 3, 4) for d, e in (("Imgs", "jpg"), ("GT", "png"))
    }
    assert set(meta["validation_real"]) == {"set/0", "set/2"}
    assert 0.0 <= meta["metrics"]["val_real_dice_mean"] <= 1.0
    assert meta["slice_window"] == {"center": CENTER, "width": WIDTH}
    assert meta["package_version"]
    assert f"--real-slices {root}" in meta["command"]
    assert "--slice-pixel-spacing native" in meta["command"]
    # a second run from these weights (init) keeps the architecture and records the source
    meta2 = train(tmp_path / "net2.pt", real=real, init=out, **_tiny_kwargs())
    assert meta2["init"]["sha1"] == sha1_file(out)


def test_train_kfold_and_flags(tmp_path: Path) -> None:
    import argparse

    root = _slice_set(tmp_path / "set", n=4)
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args(
        ["--out", str(tmp_path / "k.pt"), "--epochs", "1", "--steps-per-epoch", "1",
         "--pool-volumes", "1", "--real-slices", str(root), "--slice-pixel-spacing", "native",
         "--device", "cpu"]
    )  # fmt: skip
    assert args.batch_size == 8
    real = RealData(load_slice_set(root, CENTER, WIDTH, None, TRAIN_SP), (CENTER, WIDTH), None)
    out = tmp_path / "kf.pt"
    meta = train_kfold(out, real=real, k=2, **_tiny_kwargs())
    assert meta["metrics"]["kfold_k"] == 2
    assert len(meta["metrics"]["kfold_real_dice_fold_means"]) == 2
    full = json.loads(out.with_suffix(".json").read_text())
    assert set(full["kfold_per_slice_real_dice"]) == {f"set/{i}" for i in range(4)}
    assert meta["command"].endswith("--kfold 2")
    args.kfold = 2
    args.real_slices = []
    with pytest.raises(InputError, match="--kfold needs"):
        run_train(args)
