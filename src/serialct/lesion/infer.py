"""Lesion inference: resample slices to the training pixel size, run the net, map labels back.

The checkpoint (``{"state_dict", "meta"}``) carries its own preprocessing and the pixel spacing it
was trained at; scans of any in-plane resolution are resampled to that spacing, predicted slice by
slice (only slices that contain lung), and the lesion probability is resampled back to the CT grid.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Any, Final

import numpy as np
import SimpleITK as sitk
import torch

from serialct.constants import HU_MIN_STORED
from serialct.errors import InputError
from serialct.lesion.density import split_by_density
from serialct.lesion.net import (
    CHECKPOINT_FORMAT,
    SEGMENTS_PER_STAGE,
    CovidLesionNet,
    build_model,
    pad_to_multiple,
    preprocess,
)
from serialct.lesion.partial_volume import drop_surface_layers
from serialct.orientation import back_to_grid, to_work

log = logging.getLogger("serialct")

LESION_PROBABILITY_THRESHOLD: Final = 0.5
SPACING_TOLERANCE: Final = 0.01  # relative; closer than this, slices are used as they are
THICK_SLICE_FACTOR: Final = 1.5  # CT slices this much thicker than the training phantoms': warn
HOW_TO_GET_WEIGHTS: Final = (
    "train weights with `serialct train --out FILE.pt` or point config key `model` at the "
    "shipped resources/models/covid_lesion_net.pt"
)


def pick_device(requested: str) -> torch.device:
    """``"auto"`` (CUDA if available, else CPU), ``"cpu"`` or ``"cuda"``; logs the choice."""
    if requested not in ("auto", "cpu", "cuda"):
        raise InputError(f"config key device: {requested!r} is not one of auto, cpu, cuda")
    cuda = torch.cuda.is_available()
    if requested == "cuda" and not cuda:
        raise InputError(
            "config key device: 'cuda' requested but no CUDA device is available to torch "
            f"{torch.__version__}; set device: auto or cpu"
        )
    device = torch.device(
        "cuda" if requested == "cuda" or (requested == "auto" and cuda) else "cpu"
    )
    log.info("lesion net device: %s (requested %s)", device, requested)
    return device


def load_model(path: Path, device: torch.device) -> tuple[CovidLesionNet, dict[str, Any]]:
    """Load a serialct checkpoint onto ``device`` in eval mode; returns (model, meta)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model weights not found; {HOW_TO_GET_WEIGHTS}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many types for foreign files
        raise InputError(
            f"{path}: not a serialct lesion checkpoint ({type(exc).__name__}); {HOW_TO_GET_WEIGHTS}"
        ) from exc
    if (
        not isinstance(ckpt, dict)
        or not {"state_dict", "meta"} <= ckpt.keys()
        or not isinstance(ckpt["meta"], dict)
        or ckpt["meta"].get("format") != CHECKPOINT_FORMAT
    ):
        raise InputError(
            f"{path}: not a serialct lesion checkpoint (expected keys state_dict and meta with "
            f"format {CHECKPOINT_FORMAT}); {HOW_TO_GET_WEIGHTS}"
        )
    meta = ckpt["meta"]
    check_meta(path, meta)
    model = build_model(meta["architecture"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not fit the stored architecture: {exc}") from exc
    model.to(device).eval()
    log.info("loaded lesion net %s (%s)", path, meta.get("created", "undated"))
    return model, meta


REQUIRED_META: Final = ("architecture", "preprocess", "train_pixel_spacing_mm")


def check_meta(path: Path, meta: dict[str, Any]) -> None:
    """InputError unless ``meta`` describes this package's network layout and preprocessing."""
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise InputError(
            f"{path}: checkpoint meta lacks {', '.join(missing)}; {HOW_TO_GET_WEIGHTS}"
        )
    arch = meta["architecture"]
    expected = {"name": CovidLesionNet.__name__, "segments_per_stage": list(SEGMENTS_PER_STAGE)}
    found = {k: arch.get(k) if isinstance(arch, dict) else None for k in expected}
    if found != expected:
        raise InputError(
            f"{path}: checkpoint architecture {found} does not match this package's {expected}; "
            f"{HOW_TO_GET_WEIGHTS}"
        )
    if "clip_hu" not in meta["preprocess"]:
        raise InputError(f"{path}: checkpoint preprocess {meta['preprocess']} lacks clip_hu")


def lesion_threshold(meta: dict[str, Any]) -> float:
    """Probability at or above which a pixel is lesion: the checkpoint's ``threshold`` (chosen on
    held-out data at training time) or :data:`LESION_PROBABILITY_THRESHOLD` if it has none."""
    return float(meta.get("threshold", LESION_PROBABILITY_THRESHOLD))


@functools.lru_cache(maxsize=2)
def _cached_model(path: str, mtime_ns: int, device: str) -> tuple[CovidLesionNet, dict[str, Any]]:
    return load_model(Path(path), torch.device(device))


def _inplane_geometry(image: sitk.Image, spacing_yx: tuple[float, float]) -> sitk.Image:
    """An empty image covering the same field of view with in-plane spacing ``spacing_yx``."""
    old_sp = np.array(image.GetSpacing())
    new_sp = np.array([spacing_yx[1], spacing_yx[0], old_sp[2]])
    old_size = np.array(image.GetSize())
    new_size = np.maximum(1, np.round(old_size * old_sp / new_sp)).astype(int)
    # keep the outer edge of the field of view: shift the first pixel centre by half the change
    direction = np.array(image.GetDirection()).reshape(3, 3)
    origin = np.array(image.GetOrigin()) + direction @ ((new_sp - old_sp) / 2)
    ref = sitk.Image([int(s) for s in new_size], sitk.sitkUInt8)
    ref.SetSpacing([float(s) for s in new_sp])
    ref.SetOrigin([float(o) for o in origin])
    ref.SetDirection(image.GetDirection())
    return ref


def _antialias(image: sitk.Image, target_spacing: np.ndarray) -> sitk.Image:
    """Gaussian-smooth x and y before down-sampling to ``target_spacing`` (x, y, mm)."""
    out = sitk.Cast(image, sitk.sitkFloat32)
    for axis in (0, 1):
        src, dst = image.GetSpacing()[axis], float(target_spacing[axis])
        if dst > src * (1 + SPACING_TOLERANCE):
            sigma = math.sqrt(dst**2 - src**2) / 2.0
            out = sitk.RecursiveGaussian(
                out, sigma, False, sitk.RecursiveGaussianImageFilter.ZeroOrder, axis
            )
    return out


def _resample(image: sitk.Image, ref: sitk.Image, interp: int, default: float) -> sitk.Image:
    return sitk.Resample(image, ref, sitk.Transform(), interp, default, image.GetPixelID())


TTA_MODES: Final = ("none", "flip", "d8")


def tta_mode(meta: dict[str, Any]) -> str:
    """The checkpoint's test-time augmentation (meta ``tta``, one of :data:`TTA_MODES`): ``none``;
    ``flip``, the mean of the net on the slice and its mirror image (2 passes); ``d8``, the mean
    over the 8 flips and quarter turns of the slice (8 passes). Checkpoints older than the key
    say ``flip_average: true`` for ``flip``."""
    mode = str(meta.get("tta", "flip" if meta.get("flip_average") else "none"))
    if mode not in TTA_MODES:
        raise InputError(f"checkpoint meta tta {mode!r} is not one of {', '.join(TTA_MODES)}")
    return mode


def _views(mode: str) -> list[tuple[int, bool]]:
    """(quarter turns, mirrored) of each pass of ``mode``."""
    if mode == "d8":
        return [(k, m) for k in range(4) for m in (False, True)]
    return [(0, False), (0, True)] if mode == "flip" else [(0, False)]


def net_probability(model: CovidLesionNet, batch: torch.Tensor, mode: str) -> torch.Tensor:
    """Lesion-class softmax (N, H, W) of ``batch``, averaged over the views of the test-time
    augmentation ``mode`` (:func:`tta_mode`), each mapped back before averaging."""
    total = torch.zeros(batch.shape[0], *batch.shape[-2:], device=batch.device)
    views = _views(mode)
    for turns, mirrored in views:
        view = torch.flip(batch, dims=(-1,)) if mirrored else batch
        p = torch.softmax(model(torch.rot90(view, turns, dims=(-2, -1))).float(), dim=1)[:, 1]
        p = torch.rot90(p, -turns, dims=(-2, -1))
        total += torch.flip(p, dims=(-1,)) if mirrored else p
    return total / len(views)


def lesion_probability(
    hu: np.ndarray,
    run_slices: np.ndarray,
    model: CovidLesionNet,
    meta: dict[str, Any],
    device: torch.device,
    batch_size: int,
) -> np.ndarray:
    """Lesion probability (z, y, x) float32 for the slices where ``run_slices`` is true, else 0.
    On CUDA: channels_last, bf16 (else fp16) autocast and pinned-memory transfers."""
    prob = np.zeros(hu.shape, dtype=np.float32)
    x = preprocess(hu, meta["preprocess"])
    x, (h, w) = pad_to_multiple(x)
    index = np.flatnonzero(run_slices)
    cuda = device.type == "cuda"
    if cuda:  # channels_last + autocast (bf16 where supported, else fp16) on GPUs
        model = model.to(memory_format=torch.channels_last)
    amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    with torch.inference_mode(), torch.autocast("cuda", dtype=amp_dtype, enabled=cuda):
        for start in range(0, len(index), batch_size):
            sel = index[start : start + batch_size]
            batch = torch.from_numpy(np.ascontiguousarray(x[sel, None]))
            if cuda:  # pinned host memory: an asynchronous copy to the GPU
                batch = batch.pin_memory().to(device, non_blocking=True)
                batch = batch.contiguous(memory_format=torch.channels_last)
            p = net_probability(model, batch, tta_mode(meta))[:, :h, :w]
            prob[sel] = p.cpu().numpy()
    return prob


def _warn_thick_slices(ct: sitk.Image, meta: dict[str, Any], model_path: Path) -> None:
    """Log a warning when the CT's slices are much thicker than the phantoms the model was trained
    on (meta ``train_slice_thickness_mm``): partial volume there makes vessels' halos look like
    ground glass (over-segmentation)."""
    if "train_slice_thickness_mm" not in meta:
        return
    trained = float(meta["train_slice_thickness_mm"])
    thickness = float(ct.GetSpacing()[2])
    if thickness > THICK_SLICE_FACTOR * trained:
        log.warning(
            "lesion net %s was trained on %.1f mm slices; this CT has %.1f mm slices, where "
            "it can mark partial-volume halos of vessels as ground glass (see "
            "resources/models/README.md)",
            model_path.name,
            trained,
            thickness,
        )


def segment_lesions(
    ct: sitk.Image, lung: sitk.Image, model_path: Path, config: dict[str, Any]
) -> sitk.Image:
    """Lesion labels (uint8, CT geometry): 0, 1 GGO, 2 consolidation, 3 other; only inside lung.

    The CT is turned to the work orientation first (:mod:`serialct.orientation`: axial slices,
    as the lung and lobe steps do) and the labels are turned back, so the answer does not depend
    on how the scan's rows, columns and slices are stored. ``config`` is the validated workflow
    config (keys ``device``, ``hu``, ``lesion``).
    """
    if ct.GetSize() != lung.GetSize():
        raise InputError(f"lung mask size {lung.GetSize()} does not match CT size {ct.GetSize()}")
    oriented = to_work(ct)
    labels = _segment_oriented(oriented, to_work(lung), Path(model_path), config)
    return back_to_grid(labels, oriented, ct)


def _segment_oriented(
    ct: sitk.Image, lung: sitk.Image, model_path: Path, config: dict[str, Any]
) -> np.ndarray:
    """Lesion label array of an axially oriented CT (see :func:`segment_lesions`)."""
    device = pick_device(config["device"])
    mtime = model_path.stat().st_mtime_ns if model_path.is_file() else 0
    model, meta = _cached_model(str(model_path.resolve()), mtime, str(device))
    lesion_cfg = config["lesion"]
    _warn_thick_slices(ct, meta, model_path)

    ct_f = sitk.Cast(ct, sitk.sitkFloat32)
    lung_arr = sitk.GetArrayFromImage(lung) > 0
    train_sp = tuple(float(s) for s in meta["train_pixel_spacing_mm"])  # (y, x)
    same = all(
        abs(a - b) <= SPACING_TOLERANCE * b
        for a, b in zip(ct.GetSpacing()[1::-1], train_sp, strict=True)
    )
    if same:
        ref, hu_small = ct_f, sitk.GetArrayFromImage(ct_f)
    else:
        ref = _inplane_geometry(ct, train_sp)
        smooth = _antialias(ct_f, np.array(ref.GetSpacing()))
        hu_small = sitk.GetArrayFromImage(_resample(smooth, ref, sitk.sitkLinear, HU_MIN_STORED))
    run_slices = lung_arr.any(axis=(1, 2))
    log.info(
        "lesion net on %d of %d slices, %s px at %.2f x %.2f mm",
        int(run_slices.sum()),
        len(run_slices),
        hu_small.shape[1:],
        *train_sp,
    )
    prob = lesion_probability(
        hu_small, run_slices, model, meta, device, int(lesion_cfg["batch_size"])
    )
    if not same:
        prob_img = sitk.GetImageFromArray(prob)
        prob_img.CopyInformation(ref)
        prob = sitk.GetArrayFromImage(_resample(prob_img, ct_f, sitk.sitkLinear, 0.0))
    lesion = (prob >= lesion_threshold(meta)) & lung_arr
    lesion = drop_small_components(lesion, ct.GetSpacing(), float(lesion_cfg["min_component_mm3"]))
    if lesion_cfg["drop_surface_layers"]:
        lesion = drop_surface_layers(lesion, lung_arr)
    return split_by_density(sitk.GetArrayFromImage(ct), lesion, config["hu"])


def drop_small_components(
    mask: np.ndarray, spacing_xyz: tuple[float, ...], min_mm3: float
) -> np.ndarray:
    """Remove 26-connected components of ``mask`` smaller than ``min_mm3``."""
    if min_mm3 <= 0 or not mask.any():
        return mask
    voxel_mm3 = float(np.prod(spacing_xyz))
    min_voxels = math.ceil(min_mm3 / voxel_mm3)
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    cc = sitk.ConnectedComponent(img, True)
    kept = sitk.RelabelComponent(cc, minimumObjectSize=min_voxels)
    return sitk.GetArrayFromImage(kept) > 0
