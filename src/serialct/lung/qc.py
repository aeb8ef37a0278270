"""Plausibility of a lung mask: volume, right/left ratio, coverage."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import SimpleITK as sitk

from serialct.constants import LUNG_LEFT, LUNG_RIGHT, MM3_PER_CM3
from serialct.orientation import to_work

log = logging.getLogger("serialct")

# A scan cuts the lung at an end when the lung in its end slice is more than this share of the
# lung in its widest slice. Measured on the five real chest series of ../shared/data/real
# (benchmarks/real_lung_masks.md): 0-3.5 % at the ends of scans that cover the lungs (an 8 mm
# slice through the bases, crumbs of partial volume at the apex); a scan that starts mid-chest
# (Lung_Dx-A0001 cut to its lower half) has 86 %.
COVERAGE_CUT_SHARE = 0.05


def coverage_reasons(lung: sitk.Image) -> list[str]:
    """Whether the scan shows the lungs from apex to base: a reason for each end (top =
    superior, whatever the storage order) where the lung is cut (COVERAGE_CUT_SHARE)."""
    labels = sitk.GetArrayFromImage(to_work(lung))  # LPS: index 0 is the inferior end (a copy:
    # a view of the temporary image would outlive it)
    area = np.count_nonzero(labels, axis=(1, 2)).astype(float)
    if area.max(initial=0) == 0:
        return []
    reasons = []
    for index, end, part in ((-1, "top", "apex"), (0, "bottom", "base")):
        share = area[index] / area.max()
        if share > COVERAGE_CUT_SHARE:
            reasons.append(
                f"coverage: the scan cuts the lung {part} (lung in its {end} slice: "
                f"{100 * share:.0f} % of the widest slice)"
            )
    return reasons


def lung_volume_cm3(lung: sitk.Image) -> float:
    """Volume of all lung voxels (both sides) in cm3."""
    voxel_mm3 = float(np.prod(lung.GetSpacing()))
    return float(np.count_nonzero(sitk.GetArrayViewFromImage(lung))) * voxel_mm3 / MM3_PER_CM3


def implausible_reasons(
    lung: sitk.Image, config_lung: dict[str, Any], coverage: list[str] | None = None
) -> list[str]:
    """Reasons a lung mask cannot be measured like the others (empty list: plausible): total
    volume outside ``qc_volume_cm3``, right/left volume ratio outside ``qc_lr_ratio`` or one
    lung missing, and a scan that cuts the lungs (``coverage``: the ``coverage_reasons``, taken
    here when not given). Such a scan fails out of the cohort statistics."""
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
    return reasons + (coverage_reasons(lung) if coverage is None else coverage)


def lung_qc(
    lung: sitk.Image, config_lung: dict[str, Any], implausible: list[str] | None = None
) -> list[str]:
    """Reasons to doubt a lung mask (empty list: plausible): the ``implausible_reasons``
    (taken here when not given) and the mask touching the image's in-plane border (field of
    view cuts the lung?)."""
    reasons = list(implausible_reasons(lung, config_lung) if implausible is None else implausible)
    labels = sitk.GetArrayViewFromImage(lung)
    if labels.size and labels.any():
        lung_any = labels > 0
        if lung_any[:, [0, -1], :].any() or lung_any[:, :, [0, -1]].any():
            reasons.append("lung mask touches the image border (field of view cuts the lung?)")
    for reason in reasons:
        log.warning("lung QC: %s", reason)
    return reasons
