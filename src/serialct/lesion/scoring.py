"""Scoring of lesion masks: the Dice overlap of a predicted and a true boolean mask.

One definition for training metrics, validation, the recipe and the benchmarks, so that every
Dice the package reports is the same number (1.0 when both masks are empty).
"""

from __future__ import annotations

import numpy as np


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    denom = int(pred.sum()) + int(truth.sum())
    return 1.0 if denom == 0 else 2.0 * int((pred & truth).sum()) / denom
