"""The display window of 8-bit CT slice images, estimated from their own histogram.

Windowed slices (JPG/PNG exports) carry no Hounsfield units, and the window they were made with
is rarely known: the COVID-19 slice collections differ by a factor of two in width (coronacases
exports put aerated lung near pixel 10 and soft tissue near 95, MedSeg near 32 and 211). Two
anatomical anchors are found in the histogram (bins 0 and 255 left out: they hold everything the
window clipped):

- the Otsu threshold splits air and lung from soft tissue;
- **aerated lung**: the :data:`LUNG_QUANTILE` quantile of the pixels below it (a low quantile, not
  the mode, so that a slice full of ground glass still anchors on its best-aerated lung);
- **soft tissue**: the mode of the pixels above it (chest wall, mediastinum).

The window maps the two anchors to :data:`REFERENCE_LUNG_HU` and :data:`REFERENCE_TISSUE_HU`:
the HU the same anchors have in the MedSeg slices read with the window they were made with
(C -400, W 1500; aerated lung then reads about -850 HU at its mode). So a slice of any source,
with the window estimated, reads in the HU scale of the MedSeg slices.

A narrow or low window clips soft tissue to white (C -700 W 1200 ends at -100 HU): when more
than :data:`CLIPPED_TISSUE_SHARE` of the bright pixels sit at 255 the tissue anchor is not in
the image, and the width falls back to :data:`FALLBACK_WIDTH_HU`, the middle of the usual lung
windows (1200-1600), with the lung anchor alone placing it. The lesion net is trained with HU
scaled by up to 18 % about the lung anchor (:mod:`serialct.lesion.augment`), which covers the
error of that guess over the usual range.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from scipy import ndimage

from serialct.errors import InputError

LUNG_QUANTILE: Final = 0.15
HISTOGRAM_SMOOTH_BINS: Final = 2.0
# Anchors of the 50 MedSeg training slices pooled (pixels 32 and 211) read at C -400 W 1500:
# -1150 + 32/255*1500 and -1150 + 211/255*1500 (measured with window_anchors, see
# tests/test_lesion_window.py::test_reference_hu_are_the_medseg_anchors).
MEDSEG_WINDOW: Final = (-400.0, 1500.0)
REFERENCE_LUNG_HU: Final = -962.0
REFERENCE_TISSUE_HU: Final = 91.0
CLIPPED_TISSUE_SHARE: Final = 1 / 3
FALLBACK_WIDTH_HU: Final = 1400.0
MIN_ANCHOR_GAP_PX: Final = 20  # anchors closer than this: no lung/tissue contrast to calibrate on
PIXEL_LEVELS: Final = 256


def pixel_histogram(pixels: np.ndarray) -> np.ndarray:
    """Counts of the 256 pixel values of an 8-bit image (or several, pooled)."""
    return np.bincount(np.asarray(pixels, dtype=np.uint8).ravel(), minlength=PIXEL_LEVELS)


def window_anchors(hist: np.ndarray) -> tuple[float, float | None]:
    """(aerated-lung pixel, soft-tissue pixel) of a 256-bin histogram; the tissue pixel is None
    when the window clipped soft tissue to white. See the module docstring."""
    clipped_white = float(np.asarray(hist, dtype=np.float64)[-1])
    h = np.asarray(hist, dtype=np.float64).copy()
    h[0] = h[-1] = 0.0
    if h.sum() <= 0:
        raise InputError("window estimate: the image has no pixels between 1 and 254")
    s = ndimage.gaussian_filter1d(h, HISTOGRAM_SMOOTH_BINS)
    p = s / s.sum()
    w = np.cumsum(p)
    mu = np.cumsum(p * np.arange(PIXEL_LEVELS))
    between = (mu[-1] * w - mu) ** 2 / (w * (1 - w) + 1e-12)
    t = int(np.argmax(between[:-1])) + 1
    dark = np.cumsum(h[:t])
    if dark[-1] <= 0:
        raise InputError("window estimate: no dark (lung) pixels below the Otsu threshold")
    lung = float(np.searchsorted(dark, LUNG_QUANTILE * dark[-1]))
    if clipped_white > CLIPPED_TISSUE_SHARE * (h[t:].sum() + clipped_white):
        return lung, None
    tissue = float(t + int(np.argmax(s[t:])))
    return lung, tissue


def estimate_window(hist: np.ndarray) -> tuple[float, float]:
    """(center, width) in HU that maps the histogram's anchors to the reference HU.

    InputError when the image shows no lung/tissue contrast (e.g. a slice without lung).
    """
    lung, tissue = window_anchors(hist)
    if tissue is None:
        hu_per_px = FALLBACK_WIDTH_HU / (PIXEL_LEVELS - 1)
        low = REFERENCE_LUNG_HU - lung * hu_per_px
        return low + FALLBACK_WIDTH_HU / 2, FALLBACK_WIDTH_HU
    if tissue - lung < MIN_ANCHOR_GAP_PX:
        raise InputError(
            f"window estimate: lung and soft-tissue anchors only {tissue - lung:.0f} pixel "
            "values apart; give the display window (--window-center/--window-width)"
        )
    hu_per_px = (REFERENCE_TISSUE_HU - REFERENCE_LUNG_HU) / (tissue - lung)
    low = REFERENCE_LUNG_HU - lung * hu_per_px
    width = hu_per_px * (PIXEL_LEVELS - 1)
    return low + width / 2, width
