"""Lesions of 2D windowed slice images (PNG/JPG): ``serialct segment-slices``.

Each 8-bit image is turned back into approximate HU through its display window
(``hu = center - width/2 + pixel/255 * width``; by default the window is estimated from the
image's own histogram, :mod:`serialct.lesion.window`), predicted by the same COVID-Lesion Net as the
volume path (whole image, no lung mask: the images are cropped slices without one), and the lesion
pixels are split into GGO and consolidation by the same HU rule
(:func:`serialct.lesion.density.split_by_density`, ``config["hu"]``). The mask PNG has only the
values 0, 1 GGO, 2 consolidation: a lesion pixel whose HU lies below the GGO range counts as GGO,
one above the consolidation range as consolidation (the window's 8 bits do not resolve HU well
enough to keep a third "other" class).

The images carry no pixel spacing. ``config["lesion"]["slice_pixel_spacing_mm"]``, when set, is
the assumed one; each image is resampled from it to the checkpoint's training pixel spacing, as the
volume path does. ``null`` (the default) takes the checkpoint's, and runs the net at the image's
native size when the checkpoint has none. The probability threshold and the test-time augmentation
(:func:`serialct.lesion.infer.tta_mode`) are the checkpoint's too; a checkpoint may hold its own
settings for slice images (:func:`for_slices`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from serialct.errors import InputError
from serialct.lesion.density import split_by_density
from serialct.lesion.infer import (
    LESION_PROBABILITY_THRESHOLD,
    SPACING_TOLERANCE,
    lesion_threshold,
    load_model,
    net_probability,
    pick_device,
    tta_mode,
)
from serialct.lesion.net import CovidLesionNet, pad_to_multiple, preprocess
from serialct.lesion.window import MEDSEG_WINDOW, estimate_window, pixel_histogram

log = logging.getLogger("serialct")

IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg")
PIXEL_MAX: Final = 255.0


def window_to_hu(pixels: np.ndarray, center: float, width: float) -> np.ndarray:
    """8-bit windowed pixel values -> HU (float32): ``center - width/2 + pixel/255 * width``."""
    if width <= 0:
        raise InputError(f"window width {width} must be positive")
    return (center - width / 2 + pixels.astype(np.float32) / PIXEL_MAX * width).astype(np.float32)


def hu_to_window(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    """HU -> 8-bit windowed pixel values (uint8), the inverse of :func:`window_to_hu`."""
    scaled = (np.asarray(hu, dtype=np.float32) - (center - width / 2)) / width * PIXEL_MAX
    return np.clip(np.round(scaled), 0, PIXEL_MAX).astype(np.uint8)


def list_slice_images(images_dir: Path) -> list[Path]:
    """PNG/JPG files directly in ``images_dir``, sorted by name; InputError if there are none."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise InputError(f"{images_dir}: not a folder of slice images")
    files = sorted(
        p for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise InputError(
            f"{images_dir}: no slice images (expected files ending in {', '.join(IMAGE_SUFFIXES)})"
        )
    return files


def read_slice(path: Path) -> np.ndarray:
    """One image as a 2D uint8 array (colour images are converted to grey)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(
            f"{path}: unreadable image ({type(exc).__name__}); expected an 8-bit PNG or JPG"
        ) from exc


def read_label_slice(path: Path) -> np.ndarray:
    """A label PNG (palette or grey, values 0/1/2) as a 2D uint8 array of the stored indices."""
    try:
        with Image.open(path) as im:
            im = im if im.mode in ("P", "L") else im.convert("L")
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(
            f"{path}: unreadable label image ({type(exc).__name__}); expected a PNG of 0/1/2"
        ) from exc


def slice_probability(
    hu: np.ndarray,
    model: CovidLesionNet,
    meta: dict[str, Any],
    device: torch.device,
    pixel_spacing_mm: float | None,
) -> np.ndarray:
    """Lesion probability (float32, shape of ``hu``) of one 2D HU slice.

    With ``pixel_spacing_mm`` the slice is smoothed and resampled to the checkpoint's training
    pixel spacing, predicted, and the probability resampled back; ``None`` predicts as it is.
    """
    x = hu.astype(np.float32)
    scale = (1.0, 1.0)
    if pixel_spacing_mm is not None:
        train_sp = [float(s) for s in meta["train_pixel_spacing_mm"]]
        scale = tuple(pixel_spacing_mm / s for s in train_sp)  # type: ignore[assignment]
        if any(abs(s - 1.0) > SPACING_TOLERANCE for s in scale):
            sigma = [np.sqrt(max(1 / s**2 - 1, 0.0)) / 2 if s < 1 else 0.0 for s in scale]
            x = ndimage.zoom(ndimage.gaussian_filter(x, sigma), scale, order=1)
        else:
            scale = (1.0, 1.0)
    inp, (h, w) = pad_to_multiple(preprocess(x, meta["preprocess"]))
    with torch.inference_mode():
        batch = torch.from_numpy(np.ascontiguousarray(inp[None, None])).to(device)
        prob = net_probability(model, batch, tta_mode(meta))[0, :h, :w].cpu().numpy()
    if scale != (1.0, 1.0):
        factors = [a / b for a, b in zip(hu.shape, prob.shape, strict=True)]
        prob = ndimage.zoom(prob, factors, order=1)
        prob = _fit(prob, hu.shape)
    return prob


def _fit(a: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Crop or edge-pad ``a`` to ``shape`` (zoom may be off by one pixel)."""
    a = a[: shape[0], : shape[1]]
    pad = [(0, shape[0] - a.shape[0]), (0, shape[1] - a.shape[1])]
    return np.pad(a, pad, mode="edge") if any(p[1] for p in pad) else a


def labels_from_probability(
    prob: np.ndarray,
    hu: np.ndarray,
    hu_cfg: dict[str, Any],
    threshold: float = LESION_PROBABILITY_THRESHOLD,
) -> np.ndarray:
    """uint8 mask 0/1 GGO/2 consolidation: lesion where prob >= threshold, kind by the HU rule
    of the volume path (``split_by_density``: outside both ranges, the nearer kind)."""
    return split_by_density(hu, prob >= threshold, hu_cfg)


def slice_window(
    pixels: np.ndarray, center: float | None, width: float | None
) -> tuple[float, float]:
    """The display window of a slice: the given one, or (``None``) the one estimated from its
    histogram (:func:`serialct.lesion.window.estimate_window`); a slice without lung/tissue
    contrast falls back to the MedSeg slices' window, with a warning."""
    if center is not None and width is not None:
        return float(center), float(width)
    try:
        return estimate_window(pixel_histogram(pixels))
    except InputError as exc:
        log.warning("%s; using C %.0f W %.0f", exc, *MEDSEG_WINDOW)
        return MEDSEG_WINDOW


def for_slices(meta: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint meta as the slice path reads it: the keys in meta ``slice_inference``
    (``tta``, ``threshold``, ``slice_pixel_spacing_mm``: settings for 8-bit slice images of unknown
    orientation and pixel size, chosen on held-out slices after training) replace the volume
    path's."""
    return {**meta, **meta.get("slice_inference", {})}


def segment_slice_array(
    pixels: np.ndarray,
    model: CovidLesionNet,
    meta: dict[str, Any],
    device: torch.device,
    config: dict[str, Any],
    window_center: float | None,
    window_width: float | None,
) -> np.ndarray:
    """Mask (uint8 0/1/2) of one windowed 8-bit slice; see the module docstring. A window of
    ``None`` is estimated from the slice's own histogram (:func:`slice_window`)."""
    meta = for_slices(meta)
    hu = window_to_hu(pixels, *slice_window(pixels, window_center, window_width))
    spacing = config["lesion"].get("slice_pixel_spacing_mm")
    if spacing is None:  # the spacing the checkpoint assumes for slice images, if any
        spacing = meta.get("slice_pixel_spacing_mm")
    prob = slice_probability(hu, model, meta, device, None if spacing is None else float(spacing))
    return labels_from_probability(prob, hu, config["hu"], lesion_threshold(meta))


def segment_slices(
    images_dir: Path,
    out_dir: Path,
    model_path: Path,
    config: dict[str, Any],
    window_center: float | None,
    window_width: float | None,
) -> int:
    """Write ``OUT_DIR/<stem>.png`` (0 background, 1 GGO, 2 consolidation) for every image.

    Returns the number of masks written. Raises InputError for an empty folder, an unreadable
    image or two images with the same stem.
    """
    files = list_slice_images(Path(images_dir))
    stems = [p.stem for p in files]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise InputError(f"{images_dir}: several images share the file stem {dup[0]!r}")
    device = pick_device(config["device"])
    model, meta = load_model(Path(model_path), device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        pixels = read_slice(path)
        labels = segment_slice_array(
            pixels, model, meta, device, config, window_center, window_width
        )
        Image.fromarray(labels, mode="L").save(out_dir / f"{path.stem}.png")
        log.info("%s: %d lesion pixels", path.name, int(np.count_nonzero(labels)))
    return len(files)
