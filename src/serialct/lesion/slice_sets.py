"""Real training slices for the lesion net, each tagged with the patient it comes from.

Three kinds, all brought to the net's training pixel spacing and to HU:

- **windowed slice sets** (``Imgs/`` 8-bit JPG/PNG + ``GT/`` PNG): the window of each *volume*
  (slices whose names share a volume key, :func:`volume_key`) is estimated from the pooled
  histogram of its slices (:func:`serialct.lesion.window.estimate_window`), so sources exported
  with different windows land on one HU scale. Labels are soft (``GT / 255``, e.g. Semi-Inf-Net's
  pseudo labels) or classes (0 background, 1 GGO, 2 consolidation: lesion = label > 0);
- **normal volumes** (a CT in HU and its lung mask, NIfTI): every slice with lung, lesion-free
  targets, to teach the net that dependent density, vessels and partial volume are not lesions.

Splits are by patient (:func:`patient_key`), never by slice.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import SimpleITK as sitk

from serialct.errors import InputError
from serialct.lesion.data import (
    IMAGES_SUBDIR,
    LABELS_SUBDIR,
    inplane_hu,
    read_volume_pair,
    resample_slice,
)
from serialct.lesion.slices import list_slice_images, read_label_slice, read_slice, window_to_hu
from serialct.lesion.window import estimate_window, pixel_histogram

SOFT_LABEL_MAX: Final = 255.0
# Slice sets whose file names carry no volume (e.g. MedSeg's 0.jpg ... 49.jpg) form one group.
_SLICE_NUMBER = re.compile(r"_\d+$")
_RADIOPAEDIA_CASE = re.compile(r"(radiopaedia_org_covid-19-pneumonia-\d+)_")


@dataclass
class Sample:
    """One training slice: HU and lesion target (float32 in [0, 1]) at the training spacing."""

    hu: np.ndarray
    target: np.ndarray
    patient: str
    name: str


def volume_key(stem: str) -> str:
    """The volume a slice file belongs to: its stem without the trailing ``_<slice number>``
    (``Data-1_coronacases_org_001_57`` -> ``Data-1_coronacases_org_001``); a bare number (MedSeg's
    ``12``) has no volume and gives ``""``."""
    return "" if stem.isdigit() else _SLICE_NUMBER.sub("", stem)


def patient_key(volume: str) -> str:
    """The patient of a volume key: Radiopaedia cases with several series
    (``...-pneumonia-10_85902_1-dcm`` and ``..._3-dcm``) are one patient; otherwise the volume."""
    m = _RADIOPAEDIA_CASE.search(volume)
    return m.group(1) if m else volume


def load_windowed_set(
    root: Path,
    *,
    soft: bool,
    slice_spacing_mm: float,
    train_spacing_mm: tuple[float, float],
    set_name: str | None = None,
) -> list[Sample]:
    """Slices of ``root/Imgs`` + ``root/GT`` with per-volume estimated windows (module docstring).

    ``slice_spacing_mm`` is the assumed pixel size of the images. Slices without a volume key
    are one group named ``set_name`` (default: the folder name).
    """
    root = Path(root)
    images = list_slice_images(root / IMAGES_SUBDIR)
    groups: dict[str, list[Path]] = defaultdict(list)
    for img in images:
        groups[volume_key(img.stem) or (set_name or root.name)].append(img)
    out: list[Sample] = []
    for volume, files in sorted(groups.items()):
        pixels = [read_slice(f) for f in files]
        center, width = estimate_window(sum(pixel_histogram(p) for p in pixels))
        for img, px in zip(files, pixels, strict=True):
            label_path = root / LABELS_SUBDIR / f"{img.stem}.png"
            if not label_path.is_file():
                raise InputError(f"{img}: no label image {label_path} (expected GT/<stem>.png)")
            labels = read_label_slice(label_path)
            if labels.shape != px.shape:
                raise InputError(f"{label_path}: size {labels.shape} differs from {img}")
            target = labels / SOFT_LABEL_MAX if soft else (labels > 0)
            hu = resample_slice(window_to_hu(px, center, width), slice_spacing_mm,
                                train_spacing_mm, order=1)  # fmt: skip
            target = resample_slice(target.astype(np.float32), slice_spacing_mm,
                                    train_spacing_mm, order=1)  # fmt: skip
            out.append(
                Sample(
                    hu=hu.astype(np.float32),
                    target=np.clip(target, 0.0, 1.0).astype(np.float32),
                    patient=patient_key(volume),
                    name=f"{root.name}/{img.stem}",
                )
            )
    return out


def load_normal_volume(
    ct_path: Path, lung_path: Path, train_spacing_mm: tuple[float, float]
) -> list[Sample]:
    """Slices with lung of a lesion-free CT (HU) + lung mask pair, resampled in-plane to the
    training spacing; targets are all zero."""
    ct, lung = read_volume_pair(ct_path, lung_path)
    _, hu = inplane_hu(ct, train_spacing_mm)
    has_lung = sitk.GetArrayFromImage(lung).any(axis=(1, 2))
    patient = Path(ct_path).name.split(".")[0]
    return [
        Sample(
            hu=hu[z].astype(np.float32),
            target=np.zeros(hu.shape[1:], np.float32),
            patient=patient,
            name=f"{Path(ct_path).name}#{z}",
        )  # fmt: skip
        for z in np.flatnonzero(has_lung)
    ]


def split_by_patient(
    samples: list[Sample], held_patients: set[str]
) -> tuple[list[Sample], list[Sample]]:
    """(samples of other patients, samples of ``held_patients``)."""
    unknown = held_patients - {s.patient for s in samples}
    if unknown:
        raise InputError(f"held-out patients not in the data: {sorted(unknown)}")
    keep = [s for s in samples if s.patient not in held_patients]
    return keep, [s for s in samples if s.patient in held_patients]
