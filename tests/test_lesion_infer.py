"""Lesion inference: device choice, checkpoint loading, segment_lesions geometry and masking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from serialct.config import defaults
from serialct.constants import HU_AIR, LESION_CONSOLIDATION, LESION_GGO
from serialct.errors import InputError
from serialct.lesion.checkpoint import save_checkpoint
from serialct.lesion.infer import (
    drop_small_components,
    load_model,
    pick_device,
    segment_lesions,
)
from serialct.lesion.net import CHECKPOINT_FORMAT, PREPROCESS, CovidLesionNet

SHIPPED = (
    Path(__file__).resolve().parents[1] / "resources" / "models" / "covid_lesion_net_phantom.pt"
)
TRAIN_SPACING = (2.5, 2.5)  # (y, x) mm of the tiny test checkpoints


def _save_tiny(path: Path, *, all_lesion: bool = False) -> Path:
    torch.manual_seed(1)
    model = CovidLesionNet(base_channels=4)
    if all_lesion:  # every pixel says lesion: zero the classifier, bias towards class 1
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor([-5.0, 5.0]))
    meta = {
        "format": CHECKPOINT_FORMAT,
        "architecture": model.architecture(),
        "preprocess": dict(PREPROCESS),
        "train_pixel_spacing_mm": list(TRAIN_SPACING),
    }
    save_checkpoint(path, model, meta)
    return path


def _volume(
    spacing_yx: tuple[float, float], size_yx: tuple[int, int]
) -> tuple[sitk.Image, sitk.Image]:
    """A 10-slice CT: a lung block with GGO/consolidation/air bands and a 1-voxel islet."""
    ny, nx = size_yx
    hu = np.full((10, ny, nx), 40, dtype=np.int16)
    lung = np.zeros(hu.shape, dtype=np.uint8)
    y0, y1, x0, x1 = ny // 4, 3 * ny // 4, nx // 4, 3 * nx // 4
    lung[2:8, y0:y1, x0:x1] = 1
    hu[lung > 0] = -850
    third = (x1 - x0) // 3
    hu[2:8, y0:y1, x0 : x0 + third] = -500  # GGO band
    hu[2:8, y0:y1, x0 + third : x0 + 2 * third] = 20  # consolidation band
    lung[0, 1, 1] = 1  # isolated single lung voxel: smaller than min_component_mm3
    ct = sitk.GetImageFromArray(hu)
    ct.SetSpacing((spacing_yx[1], spacing_yx[0], 5.0))
    ct.SetOrigin((-100.0, 20.0, 300.0))
    lung_img = sitk.GetImageFromArray(lung)
    lung_img.CopyInformation(ct)
    return ct, lung_img


def _config(min_mm3: float = 10.0) -> dict:
    cfg = defaults()
    cfg["device"] = "cpu"
    cfg["lesion"]["min_component_mm3"] = min_mm3
    cfg["lesion"]["batch_size"] = 3
    return cfg


def test_pick_device() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in ("cpu", "cuda")
    with pytest.raises(InputError):
        pick_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_pick_device_cuda_unavailable() -> None:
    with pytest.raises(InputError, match="cuda"):
        pick_device("cuda")


def test_load_model_errors(tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    with pytest.raises(InputError, match="serialct train"):
        load_model(tmp_path / "missing.pt", cpu)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(InputError, match="not a serialct"):
        load_model(junk, cpu)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(InputError, match="not a serialct"):
        load_model(foreign, cpu)


def test_load_model_refuses_other_architecture(tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    path = _save_tiny(tmp_path / "m.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["meta"]["architecture"]["segments_per_stage"] = [2, 2, 2, 2, 2, 2, 2]
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(InputError, match="architecture"):
        load_model(tmp_path / "other.pt", cpu)
    ckpt["meta"]["architecture"]["segments_per_stage"] = [2, 2, 2, 2, 1, 1, 2]
    ckpt["meta"]["format"] = "serialct-covid-lesion-net/0"
    torch.save(ckpt, tmp_path / "old.pt")
    with pytest.raises(InputError, match="format"):
        load_model(tmp_path / "old.pt", cpu)
    ckpt["meta"]["format"] = CHECKPOINT_FORMAT
    del ckpt["meta"]["preprocess"]
    torch.save(ckpt, tmp_path / "nopre.pt")
    with pytest.raises(InputError, match="lacks preprocess"):
        load_model(tmp_path / "nopre.pt", cpu)


def test_load_model_roundtrip(tmp_path: Path) -> None:
    path = _save_tiny(tmp_path / "m.pt")
    model, meta = load_model(path, torch.device("cpu"))
    assert not model.training
    assert meta["train_pixel_spacing_mm"] == list(TRAIN_SPACING)
    assert path.with_suffix(".json").is_file()


@pytest.mark.parametrize("spacing, size", [(TRAIN_SPACING, (40, 48)), ((0.7, 0.7), (150, 170))])
def test_segment_all_lesion_model(tmp_path: Path, spacing, size) -> None:
    """A net that calls every pixel lesion: output = lung minus the islet (<40 mm3), split by HU."""
    path = _save_tiny(tmp_path / "all.pt", all_lesion=True)
    ct, lung = _volume(spacing, size)
    out = segment_lesions(ct, lung, path, _config(min_mm3=40.0))
    assert out.GetSize() == ct.GetSize()
    assert out.GetSpacing() == ct.GetSpacing() and out.GetOrigin() == ct.GetOrigin()
    assert out.GetPixelID() == sitk.sitkUInt8
    labels = sitk.GetArrayFromImage(out)
    lung_arr = sitk.GetArrayFromImage(lung) > 0
    hu = sitk.GetArrayFromImage(ct)
    assert labels[0, 1, 1] == 0  # islet dropped by the min-component filter
    block = lung_arr.copy()
    block[0, 1, 1] = False
    assert ((labels > 0) == block).all()
    assert set(np.unique(labels)) == {0, LESION_GGO, LESION_CONSOLIDATION}
    assert (labels[hu == -500] == LESION_GGO).all()
    assert (labels[(hu == 20) & block] == LESION_CONSOLIDATION).all()
    assert (labels[(hu == -850) & block] == LESION_GGO).all()  # below the GGO range: GGO
    # without the filters the islet stays (a one-slice islet is all lung surface, too)
    cfg = _config(min_mm3=0.0)
    assert sitk.GetArrayFromImage(segment_lesions(ct, lung, path, cfg))[0, 1, 1] == 0
    cfg["lesion"]["drop_surface_layers"] = False
    kept = sitk.GetArrayFromImage(segment_lesions(ct, lung, path, cfg))
    assert kept[0, 1, 1] > 0


def test_segment_random_model(tmp_path: Path) -> None:
    path = _save_tiny(tmp_path / "rand.pt")
    ct, lung = _volume((0.8, 0.8), (120, 100))
    labels = sitk.GetArrayFromImage(segment_lesions(ct, lung, path, _config()))
    lung_arr = sitk.GetArrayFromImage(lung) > 0
    assert labels.shape == lung_arr.shape
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    assert not (labels[~lung_arr] > 0).any()


def test_segment_size_mismatch(tmp_path: Path) -> None:
    path = _save_tiny(tmp_path / "m.pt")
    ct, _ = _volume(TRAIN_SPACING, (40, 48))
    _, lung = _volume(TRAIN_SPACING, (40, 40))
    with pytest.raises(InputError, match="size"):
        segment_lesions(ct, lung, path, _config())


def test_drop_small_components() -> None:
    mask = np.zeros((5, 10, 10), dtype=bool)
    mask[1:4, 1:4, 1:4] = True  # 27 voxels
    mask[0, 8, 8] = True  # 1 voxel
    kept = drop_small_components(mask, (1.0, 1.0, 2.0), min_mm3=10.0)  # 1 voxel = 2 mm3
    assert kept.sum() == 27 and not kept[0, 8, 8]
    assert drop_small_components(mask, (1.0, 1.0, 2.0), min_mm3=60.0).sum() == 0
    assert drop_small_components(mask, (1.0, 1.0, 1.0), min_mm3=0.0).sum() == 28


def test_air_outside_lung_is_never_lesion(tmp_path: Path) -> None:
    path = _save_tiny(tmp_path / "all.pt", all_lesion=True)
    ct, lung = _volume(TRAIN_SPACING, (40, 48))
    arr = sitk.GetArrayFromImage(ct)
    arr[:, :2, :] = HU_AIR
    ct2 = sitk.GetImageFromArray(arr)
    ct2.CopyInformation(ct)
    labels = sitk.GetArrayFromImage(segment_lesions(ct2, lung, path, _config(min_mm3=40.0)))
    assert (labels[:, :2, :] == 0).all()


@pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped weights not trained yet")
@pytest.mark.parametrize("shape", [(48, 128, 128), (40, 192, 192)])
def test_shipped_model_finds_phantom_lesion(shape: tuple[int, int, int]) -> None:
    """The shipped net measures a phantom's lesion volume within 30 % (192 px: resampled)."""
    from serialct.phantom import draw_phantom

    p = draw_phantom(np.random.default_rng(2024), shape=shape, lesion_percent=6.0)
    ct = sitk.GetImageFromArray(p.hu)
    ct.SetSpacing([float(s) for s in p.spacing[::-1]])
    lung = sitk.GetImageFromArray(p.lung.astype(np.uint8))
    lung.CopyInformation(ct)
    labels = sitk.GetArrayFromImage(segment_lesions(ct, lung, SHIPPED, _config()))
    truth = int(np.count_nonzero(p.lesion))
    found = int(np.count_nonzero(labels))
    assert abs(found - truth) / truth < 0.30
    assert np.count_nonzero((labels > 0) & (p.lesion > 0)) > 0.5 * truth


def test_thick_slices_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A CT with slices much thicker than the model's training phantoms gets a warning that
    names the model and both thicknesses; thin slices do not."""
    path = _save_tiny(tmp_path / "m.pt")
    model, meta = load_model(path, torch.device("cpu"))
    meta["train_slice_thickness_mm"] = 320 / 96  # 96-slice phantoms: 3.3 mm slices
    save_checkpoint(path, model, meta)
    ct, lung = _volume(TRAIN_SPACING, (32, 32))  # 5 mm slices
    for thickness, warned in ((10.0, True), (3.0, False)):
        ct.SetSpacing((*ct.GetSpacing()[:2], thickness))
        lung.CopyInformation(ct)
        caplog.clear()
        with caplog.at_level("WARNING", logger="serialct"):
            segment_lesions(ct, lung, path, _config())
        text = caplog.text
        assert ("trained on 3.3 mm slices; this CT has 10.0 mm" in text) is warned
        assert ("m.pt" in text) is warned


def _restored(
    image: sitk.Image, flips: tuple[bool, bool, bool], order: tuple[int, ...]
) -> sitk.Image:
    """The same physical image stored with axes flipped and permuted (geometry tags follow)."""
    return sitk.PermuteAxes(sitk.Flip(image, list(flips), flipAboutOrigin=False), list(order))


@pytest.mark.parametrize(
    ("flips", "order"),
    [
        ((False, True, False), (0, 1, 2)),  # rows reversed
        ((True, False, False), (0, 1, 2)),  # columns reversed
        ((False, False, True), (0, 1, 2)),  # slices reversed
        ((False, False, False), (1, 0, 2)),  # rows and columns transposed
        ((True, True, True), (2, 0, 1)),  # everything at once: slices become columns
    ],
)
def test_lesions_do_not_depend_on_storage_order(flips, order) -> None:
    """A phantom stored with reversed rows, columns or slices, or transposed axes, gives the same
    lesion volume (within 2 %) and the same labels at the same physical points."""
    from serialct.phantom import draw_phantom

    p = draw_phantom(np.random.default_rng(7), shape=(32, 128, 128), lesion_percent=6.0)
    ct = sitk.GetImageFromArray(p.hu)
    ct.SetSpacing([float(s) for s in p.spacing[::-1]])
    lung = sitk.GetImageFromArray(p.lung.astype(np.uint8))
    lung.CopyInformation(ct)
    base = segment_lesions(ct, lung, SHIPPED, _config())
    ct2, lung2 = _restored(ct, flips, order), _restored(lung, flips, order)
    assert ct2.GetDirection() != ct.GetDirection() or ct2.GetOrigin() != ct.GetOrigin()
    moved = segment_lesions(ct2, lung2, SHIPPED, _config())
    assert moved.GetDirection() == ct2.GetDirection() and moved.GetSize() == ct2.GetSize()
    n_base = np.count_nonzero(sitk.GetArrayFromImage(base))
    n_moved = np.count_nonzero(sitk.GetArrayFromImage(moved))
    assert n_base > 100
    assert abs(n_moved - n_base) / n_base < 0.02
    back = sitk.Resample(moved, base, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(base))
