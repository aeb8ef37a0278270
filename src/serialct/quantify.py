"""Per-scan quantification: volumes, percents, lobe involvement, AI CT score, histogram distance.

Percent of lesion = 100 x lesion volume / bilateral lung volume (the paper's definition). The
lesion volume counts every lesion label; serialct writes GGO and consolidation only (a lesion
voxel outside both HU ranges takes the nearer kind, ``serialct.lesion.density``), so lesion =
GGO + consolidation; label 3 ("other lesion") is counted only in masks made elsewhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk

from serialct import ctscore, histogram
from serialct.constants import (
    LESION_CONSOLIDATION,
    LESION_GGO,
    LESION_OTHER,
    LOBE_LABELS,
    LUNG_LEFT,
    LUNG_RIGHT,
    MM3_PER_CM3,
)
from serialct.errors import InputError


def _same_grid(reference: sitk.Image, other: sitk.Image, name: str) -> None:
    if reference.GetSize() != other.GetSize() or not np.allclose(
        reference.GetSpacing(), other.GetSpacing(), rtol=1e-4
    ):
        raise InputError(
            f"{name}: grid {other.GetSize()} / {other.GetSpacing()} differs from the CT "
            f"{reference.GetSize()} / {reference.GetSpacing()}; rerun the masks for this scan"
        )


def _percent(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole > 0 else float("nan")


def quantify_scan(
    ct: sitk.Image,
    lung: sitk.Image,
    lobes: sitk.Image,
    lesion: sitk.Image,
    reference: tuple[np.ndarray, np.ndarray],
    config: dict[str, Any],
) -> dict[str, Any]:
    """All measurements of one scan as a flat dict (the metrics.json payload)."""
    for name, image in (("lung", lung), ("lobes", lobes), ("lesion", lesion)):
        _same_grid(ct, image, name)
    hu = sitk.GetArrayViewFromImage(ct)
    lung_a = sitk.GetArrayViewFromImage(lung)
    lobes_a = sitk.GetArrayViewFromImage(lobes)
    lesion_a = np.where(lung_a > 0, sitk.GetArrayViewFromImage(lesion), 0)
    cm3_per_voxel = float(np.prod(ct.GetSpacing())) / MM3_PER_CM3

    def cm3(mask: np.ndarray) -> float:
        return float(np.count_nonzero(mask)) * cm3_per_voxel

    in_lung = lung_a > 0
    is_lesion = lesion_a > 0
    lung_cm3 = cm3(in_lung)
    metrics: dict[str, Any] = {
        "lung_volume_cm3": lung_cm3,
        "right_lung_volume_cm3": cm3(lung_a == LUNG_RIGHT),
        "left_lung_volume_cm3": cm3(lung_a == LUNG_LEFT),
        "lesion_volume_cm3": cm3(is_lesion),
        "ggo_volume_cm3": cm3(lesion_a == LESION_GGO),
        "consolidation_volume_cm3": cm3(lesion_a == LESION_CONSOLIDATION),
        "other_lesion_volume_cm3": cm3(lesion_a == LESION_OTHER),
    }
    for kind in ("lesion", "ggo", "consolidation"):
        metrics[f"{kind}_percent"] = _percent(metrics[f"{kind}_volume_cm3"], lung_cm3)

    bins = config["ct_score"]["bins"]
    min_cm3 = float(config["ct_score"]["min_lesion_cm3"])
    scores: dict[str, int] = {}
    empty = []
    for name, label in LOBE_LABELS.items():
        in_lobe = (lobes_a == label) & in_lung  # lobe voxels inside the lung only
        lobe_cm3 = cm3(in_lobe)
        metrics[f"lobe_volume_cm3_{name}"] = lobe_cm3
        if lobe_cm3 == 0:
            empty.append(name)
            metrics[f"lesion_percent_{name}"] = metrics[f"ai_score_{name}"] = None
            continue
        lesion_cm3 = cm3(in_lobe & is_lesion)
        percent = _percent(lesion_cm3, lobe_cm3)
        metrics[f"lesion_percent_{name}"] = percent
        scores[name] = ctscore.lobe_score(percent, bins, lesion_cm3, min_cm3)
        metrics[f"ai_score_{name}"] = scores[name]
    if empty:  # a score over fewer than five lobes would read as a lower score
        metrics["involved_lobes"] = metrics["ai_ct_score"] = None
        metrics["lobe_messages"] = [
            f"no lobe voxels in the lung for {', '.join(empty)}: per-lobe values, involved "
            "lobes and AI CT score left empty"
        ]
    else:
        metrics["involved_lobes"] = ctscore.involved_lobes(scores)
        metrics["ai_ct_score"] = ctscore.total_score(scores)
        metrics["lobe_messages"] = []

    ref_edges, ref_density = reference
    edges, density = histogram.lung_histogram(
        np.asarray(hu), np.asarray(in_lung), config["histogram"]
    )
    if not np.allclose(edges, ref_edges):
        raise InputError(
            "reference histogram: its bins differ from config histogram "
            "(min_hu/max_hu/bin_width_hu); rebuild it with `serialct reference`"
        )
    metrics["histogram_outside_percent"] = histogram.histogram_outside_percent(
        np.asarray(hu), np.asarray(in_lung), config["histogram"]
    )
    metrics["hellinger"] = histogram.hellinger(density, ref_density)
    metrics["iou"] = histogram.histogram_iou(density, ref_density)
    return metrics
