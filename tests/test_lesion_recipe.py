"""The default model's recipe (``serialct train-real``) end to end on tiny synthetic data, and
its data pieces: volume and patient keys, per-volume windows, patient splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from PIL import Image

from serialct.cli import main as serialct
from serialct.errors import InputError
from serialct.lesion.infer import load_model
from serialct.lesion.slice_sets import (
    load_normal_volume,
    load_windowed_set,
    patient_key,
    split_by_patient,
    volume_key,
)
from serialct.lesion.slices import hu_to_window


def _chest(rng: np.random.Generator, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """HU slice with body, two lungs and a GGO patch, and the patch's mask."""
    yy, xx = np.mgrid[:size, :size] / size
    hu = np.full((size, size), 40.0)
    lung = ((yy - 0.5) / 0.35) ** 2 + ((np.abs(xx - 0.5) - 0.2) / 0.15) ** 2 < 1
    hu[lung] = -860.0
    patch = lung & (((yy - 0.6) / 0.1) ** 2 + ((xx - 0.3) / 0.08) ** 2 < 1)
    hu[patch] = -550.0
    return hu + rng.normal(0, 20, hu.shape), patch


def _slice_set(root: Path, stems: list[str], window: tuple[float, float], soft: bool) -> None:
    rng = np.random.default_rng(0)
    (root / "Imgs").mkdir(parents=True)
    (root / "GT").mkdir()
    for stem in stems:
        hu, patch = _chest(rng)
        Image.fromarray(hu_to_window(hu, *window)).save(root / "Imgs" / f"{stem}.jpg")
        label = patch.astype(np.uint8) * (255 if soft else 1)
        Image.fromarray(label).save(root / "GT" / f"{stem}.png")


def test_volume_and_patient_keys() -> None:
    assert volume_key("Data-1_coronacases_org_001_57") == "Data-1_coronacases_org_001"
    assert volume_key("12") == ""
    a = volume_key("Data-1_radiopaedia_org_covid-19-pneumonia-10_85902_1-dcm_3")
    b = volume_key("Data-1_radiopaedia_org_covid-19-pneumonia-10_85902_3-dcm_40")
    assert a != b and patient_key(a) == patient_key(b) == "radiopaedia_org_covid-19-pneumonia-10"
    assert patient_key("Data-1_coronacases_org_001") == "Data-1_coronacases_org_001"


def test_each_volume_gets_its_own_window(tmp_path: Path) -> None:
    """Two volumes exported with very different windows read back on one HU scale."""
    _slice_set(tmp_path / "set", ["narrow_1", "narrow_2"], (-600, 1500), soft=True)
    wide = tmp_path / "wide"
    _slice_set(wide, ["wide_1", "wide_2"], (400, 3000), soft=True)
    for sub in ("Imgs", "GT"):
        for f in (wide / sub).iterdir():
            f.rename(tmp_path / "set" / sub / f.name)
    samples = load_windowed_set(
        tmp_path / "set", soft=True, slice_spacing_mm=1.0, train_spacing_mm=(1.0, 1.0)
    )
    by_volume = {s.patient: s for s in samples}
    assert set(by_volume) == {"narrow", "wide"}
    lung = [float(np.median(s.hu[s.hu < -700])) for s in by_volume.values()]
    assert abs(lung[0] - lung[1]) < 40, lung
    assert all(s.target.max() == pytest.approx(1.0) for s in samples)
    keep, held = split_by_patient(samples, {"wide"})
    assert {s.patient for s in keep} == {"narrow"} and {s.patient for s in held} == {"wide"}
    with pytest.raises(InputError, match="nobody"):
        split_by_patient(samples, {"nobody"})


def test_normal_volume_gives_lung_slices_without_lesion(tmp_path: Path) -> None:
    hu, _ = _chest(np.random.default_rng(1))
    ct = sitk.GetImageFromArray(np.stack([hu] * 4).astype(np.int16))
    ct.SetSpacing((0.7, 0.7, 5.0))
    lung = np.zeros((4, 96, 96), np.uint8)
    lung[1:3] = hu < -700
    lung_img = sitk.GetImageFromArray(lung)
    lung_img.CopyInformation(ct)
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(lung_img, str(tmp_path / "lung.nii.gz"))
    samples = load_normal_volume(tmp_path / "ct.nii.gz", tmp_path / "lung.nii.gz", (1.4, 1.4))
    assert len(samples) == 2
    assert samples[0].hu.shape == (48, 48) and not samples[0].target.any()


def test_train_real_smoke(tmp_path: Path) -> None:
    """`serialct train-real` with two steps per stage writes both checkpoints, loadable, with
    the held-out patients, the chosen threshold and the command in their meta."""
    _slice_set(tmp_path / "pseudo", [f"volA_{i}" for i in range(3)], (-500, 1500), soft=True)
    for i in range(3):  # a second pseudo-labelled patient, held out
        for sub, ext in (("Imgs", "jpg"), ("GT", "png")):
            src = tmp_path / "pseudo" / sub / f"volA_{i}.{ext}"
            (tmp_path / "pseudo" / sub / f"volB_{i}.{ext}").write_bytes(src.read_bytes())
    _slice_set(tmp_path / "expert", ["0", "1"], (-400, 1500), soft=False)
    out, ext = tmp_path / "model.pt", tmp_path / "external.pt"
    argv = ["train-real", "--out", str(out), "--external-out", str(ext),
            "--pseudo", str(tmp_path / "pseudo"), "--expert", str(tmp_path / "expert"),
            "--val-patients", "volB", "--pretrain-steps", "2", "--finetune-steps", "2",
            "--batch-size", "2", "--crop", "32", "--finetune-crop", "32",
            "--base-channels", "4", "--shape", "16,64,64", "--pool-volumes", "1",
            "--threads", "1"]  # fmt: skip
    assert serialct(argv) == 0
    for path in (ext, out):
        _, meta = load_model(path, torch.device("cpu"))
        assert json.loads(path.with_suffix(".json").read_text()) == meta
        assert meta["command"].startswith("serialct train-real --out")
        assert meta["threshold"] in (0.3, 0.4, 0.5, 0.6, 0.7)
    _, meta = load_model(ext, torch.device("cpu"))
    assert meta["metrics"]["heldout_pseudo_patients"] == ["volB"]
    assert 0.0 <= meta["metrics"]["external_expert_dice_mean"] <= 1.0
