"""One work orientation for every image step, and the way back to a scan's own grid."""

from __future__ import annotations

from typing import Final

import numpy as np
import SimpleITK as sitk

WORK_ORIENTATION: Final = "LPS"  # array (z, y, x) = (inferior->superior, ant->post, R->L)


def to_work(image: sitk.Image) -> sitk.Image:
    """``image`` turned to :data:`WORK_ORIENTATION` (axes permuted and flipped, no resampling)."""
    return sitk.DICOMOrient(image, WORK_ORIENTATION)


def back_to_grid(labels: np.ndarray, oriented: sitk.Image, original: sitk.Image) -> sitk.Image:
    """Labels computed on ``oriented`` (from :func:`to_work`), returned on ``original``'s grid."""
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(oriented)
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(original.GetDirection())
    image = sitk.DICOMOrient(image, code)
    image.CopyInformation(original)
    return image
