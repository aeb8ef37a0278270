"""Labelled training data beyond the phantoms: 2D windowed slice sets and NIfTI volumes.

A slice set is a folder with ``Imgs/`` (8-bit windowed PNG/JPG) and ``GT/`` (PNG labels with the
same stems; 0 background, >0 lesion, e.g. 1 GGO / 2 consolidation), as the MedSeg COVID-19 2D
training set is laid out. Pixels become HU through the display window
(:func:`serialct.lesion.slices.window_to_hu`) and are resampled from an assumed pixel spacing to
the training pixel spacing, as ``segment-slices`` does at inference.

A volume pair is a CT image (HU) and a label image of the same grid (>0 lesion), any format
SimpleITK reads (NIfTI); it is resampled in-plane to the training pixel spacing as
``segment_lesions`` does, and every axial slice becomes a training slice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from serialct.constants import HU_MIN_STORED
from serialct.errors import InputError
from serialct.lesion.infer import SPACING_TOLERANCE, _antialias, _inplane_geometry, _resample
from serialct.lesion.slices import list_slice_images, read_label_slice, read_slice, window_to_hu

IMAGES_SUBDIR = "Imgs"
LABELS_SUBDIR = "GT"


@dataclass
class SliceSet:
    """Training slices at the training pixel spacing: HU float32 and lesion masks (uint8)."""

    hu: list[np.ndarray] = field(default_factory=list)
    lesion: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    files: list[tuple[str, ...]] = field(default_factory=list)  # source files of each slice
    sha1: dict[str, str] = field(default_factory=dict)  # source file -> sha1 of its bytes
    native: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # pixels, labels

    def __len__(self) -> int:
        return len(self.hu)

    def subset(self, keep: list[int]) -> SliceSet:
        """The slices at positions ``keep`` (hashes of their files only)."""
        out = SliceSet()
        for i in keep:
            out.hu.append(self.hu[i])
            out.lesion.append(self.lesion[i])
            out.names.append(self.names[i])
            out.files.append(self.files[i])
            if self.native:
                out.native.append(self.native[i])
        used = {f for fs in out.files for f in fs}
        out.sha1 = {k: v for k, v in self.sha1.items() if k in used}
        return out


def sha1_file(path: Path) -> str:
    """Hex sha1 of a file's bytes."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def resample_slice(
    x: np.ndarray, src_mm: float, dst_mm: tuple[float, float], order: int
) -> np.ndarray:
    """Zoom a 2D array from square ``src_mm`` pixels to ``dst_mm`` (y, x); smooth when shrinking."""
    scale = [src_mm / d for d in dst_mm]
    if all(abs(s - 1.0) <= SPACING_TOLERANCE for s in scale):
        return x
    if order > 0:
        sigma = [np.sqrt(max(1 / s**2 - 1, 0.0)) / 2 if s < 1 else 0.0 for s in scale]
        x = ndimage.gaussian_filter(x.astype(np.float32), sigma)
    return ndimage.zoom(x, scale, order=order)


def load_slice_set(
    root: Path,
    window_center: float,
    window_width: float,
    pixel_spacing_mm: float | None,
    train_spacing_mm: tuple[float, float],
) -> SliceSet:
    """Read ``root/Imgs`` + ``root/GT``; ``pixel_spacing_mm`` None keeps the native size."""
    root = Path(root)
    images = list_slice_images(root / IMAGES_SUBDIR)
    out = SliceSet()
    for img in images:
        label_path = root / LABELS_SUBDIR / f"{img.stem}.png"
        if not label_path.is_file():
            raise InputError(f"{img}: no label image {label_path} (expected GT/<stem>.png)")
        pixels = read_slice(img)
        labels = read_label_slice(label_path)
        if labels.shape != pixels.shape:
            raise InputError(f"{label_path}: size {labels.shape} differs from {img} {pixels.shape}")
        out.native.append((pixels, labels))
        hu = window_to_hu(pixels, window_center, window_width)
        lesion = (labels > 0).astype(np.uint8)
        if pixel_spacing_mm is not None:
            hu = resample_slice(hu, pixel_spacing_mm, train_spacing_mm, order=1)
            lesion = resample_slice(lesion, pixel_spacing_mm, train_spacing_mm, order=0)
        out.hu.append(hu.astype(np.float32))
        out.lesion.append(lesion.astype(np.uint8))
        out.names.append(f"{root.name}/{img.stem}")
        files = (
            f"{root.name}/{IMAGES_SUBDIR}/{img.name}",
            f"{root.name}/{LABELS_SUBDIR}/{label_path.name}",
        )
        out.files.append(files)
        out.sha1[files[0]] = sha1_file(img)
        out.sha1[files[1]] = sha1_file(label_path)
    return out


def read_volume_pair(image_path: Path, label_path: Path) -> tuple[sitk.Image, sitk.Image]:
    """A CT (float32 HU) and a label image (uint8) of the same size; the label takes the CT's
    geometry. InputError when either cannot be read or the sizes differ."""
    try:
        ct = sitk.ReadImage(str(image_path), sitk.sitkFloat32)
        lab = sitk.ReadImage(str(label_path), sitk.sitkUInt8)
    except RuntimeError as exc:
        raise InputError(f"{image_path} / {label_path}: cannot read ({exc})") from exc
    if ct.GetSize() != lab.GetSize():
        raise InputError(f"{label_path}: size {lab.GetSize()} differs from {image_path}")
    lab.CopyInformation(ct)
    return ct, lab


def inplane_hu(
    ct: sitk.Image, train_spacing_mm: tuple[float, float]
) -> tuple[sitk.Image, np.ndarray]:
    """(reference grid, HU array) of ``ct`` resampled in-plane to the training spacing, as
    :func:`serialct.lesion.infer.segment_lesions` does."""
    ref = _inplane_geometry(ct, train_spacing_mm)
    smooth = _antialias(ct, np.array(ref.GetSpacing()))
    return ref, sitk.GetArrayFromImage(_resample(smooth, ref, sitk.sitkLinear, HU_MIN_STORED))


def load_volume_pair(
    image_path: Path, label_path: Path, train_spacing_mm: tuple[float, float]
) -> SliceSet:
    """Axial slices of a CT (HU) + label volume pair, resampled in-plane to the training spacing."""
    ct, lab = read_volume_pair(image_path, label_path)
    ref, hu = inplane_hu(ct, train_spacing_mm)
    lesion = sitk.GetArrayFromImage(_resample(lab, ref, sitk.sitkNearestNeighbor, 0)) > 0
    out = SliceSet()
    for z in range(hu.shape[0]):
        out.hu.append(hu[z].astype(np.float32))
        out.lesion.append(lesion[z].astype(np.uint8))
        out.names.append(f"{Path(image_path).name}#{z}")
        out.files.append((Path(image_path).name, Path(label_path).name))
    out.sha1[Path(image_path).name] = sha1_file(image_path)
    out.sha1[Path(label_path).name] = sha1_file(label_path)
    return out


def merge(sets: list[SliceSet]) -> SliceSet:
    """One SliceSet of all slices and hashes."""
    out = SliceSet()
    for s in sets:
        out.hu += s.hu
        out.lesion += s.lesion
        out.names += s.names
        out.files += s.files
        out.native += s.native
        out.sha1.update(s.sha1)
    return out


def kfold_indices(n: int, k: int, seed: int) -> list[list[int]]:
    """``k`` disjoint held-out index lists covering range(n), shuffled by ``seed``."""
    if not 2 <= k <= n:
        raise InputError(f"k-fold: k={k} must be between 2 and the number of slices {n}")
    order = np.random.default_rng(seed).permutation(n)
    return [sorted(int(i) for i in order[f::k]) for f in range(k)]
