"""Plausibility of a lung mask: volume, right/left ratio, coverage."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import SimpleITK as sitk

from serialct.constants import LUNG_LEFT, LUNG_RIGHT, MM3_PER_CM3

log = logging.getLogger("serialct")


def lung_volume_cm3(lung: sitk.Image) -> float:
    """Volume of all lung voxels (both sides) in cm3."""
    voxel_mm3 = float(np.prod(lung.GetSpacing()))
    return float(np.count_nonzero(sitk.GetArrayViewFromImage(lung))) * voxel_mm3 / MM3_PER_CM3


def lung_qc(lung: sitk.Image, config_lung: dict[str, Any]) -> list[str]:
    """Reasons to doubt a lung mask (empty list: plausible): total volume outside
    ``qc_volume_cm3``, right/left volume ratio outside ``qc_lr_ratio`` or one lung missing, the
    mask touching the image's in-plane border (field of view cuts the lung) or its first or last
    slice (the scan does not cover the whole lung)."""
    labels = sitk.GetArrayViewFromImage(lung)
    cm3 = float(np.prod(lung.GetSpacing())) / MM3_PER_CM3
    right = np.count_nonzero(labels == LUNG_RIGHT) * cm3
    left = np.count_nonzero(labels == LUNG_LEFT) * cm3
    reasons = []
    low, high = (float(v) for v in config_lung["qc_volume_cm3"])
    if not low <= right + left <= high:
        reasons.append(
            f"lung volume {right + left:.0f} cm3 outside the plausible {low:.0f}-{high:.0f} cm3"
        )
    if right == 0 or left == 0:
        if right + left > 0:
            reasons.append(f"only the {'right' if right else 'left'} lung found")
    else:
        low, high = (float(v) for v in config_lung["qc_lr_ratio"])
        if not low <= right / left <= high:
            reasons.append(
                f"right/left lung volume ratio {right / left:.2f} outside {low:.2f}-{high:.2f}"
            )
    if labels.size and labels.any():
        lung_any = labels > 0
        if lung_any[:, [0, -1], :].any() or lung_any[:, :, [0, -1]].any():
            reasons.append("lung mask touches the image border (field of view cuts the lung?)")
        if lung_any.shape[0] > 1 and (lung_any[0].any() or lung_any[-1].any()):
            reasons.append("lung mask reaches the first or last slice (lung not fully covered?)")
    for reason in reasons:
        log.warning("lung QC: %s", reason)
    return reasons
