"""Synthetic chest phantoms (serialct.phantom) as CT images, and a lung mask scored against
their truth: shared by the lung tests that run the whole pipeline on them."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from serialct.phantom import origin_for_shape


def phantom_image(ph) -> sitk.Image:
    image = sitk.GetImageFromArray(ph.hu)
    image.SetSpacing(ph.spacing[::-1])
    image.SetOrigin(origin_for_shape(ph.hu.shape)[::-1])
    return image


def score_mask(mask: np.ndarray, ph) -> dict[str, float]:
    """Dice with the true lung, relative volume error, share of lesion voxels inside."""
    truth = ph.lung > 0
    lesion = ph.lesion > 0
    return {
        "dice": 2 * np.count_nonzero(mask & truth) / (mask.sum() + truth.sum()),
        "volume": mask.sum() / truth.sum() - 1,
        "lesion_in": float(mask[lesion].mean()) if lesion.any() else 1.0,
    }
