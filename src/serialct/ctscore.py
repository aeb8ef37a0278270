"""The radiologists' semi-quantitative CT score: 0-5 per lobe from percent involvement, summed.

Paper: 0, 0 %; 1, <5 %; 2, 6-25 %; 3, 26-49 %; 4, 50-75 %; 5, >75 %. The edges come from
``config["ct_score"]["bins"]``: a lobe scores the number of edges its percent exceeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

MAX_LOBE_SCORE = 5


def lobe_score(percent: float, bins: Sequence[float]) -> int:
    """Score 0-5 of one lobe: 0 up to bins[0], 1 up to bins[1], ..., 5 above bins[4]."""
    if len(bins) != MAX_LOBE_SCORE or list(bins) != sorted(bins):
        raise ValueError(f"ct_score bins must be 5 increasing percents, got {list(bins)}")
    if not np.isfinite(percent):
        raise ValueError(f"lobe percent must be finite, got {percent}")
    return int(np.searchsorted(np.asarray(bins, dtype=float), percent, side="left"))


def total_score(lobe_percents: Mapping[str, float], bins: Sequence[float]) -> int:
    """Sum of the five lobe scores (0-25)."""
    return sum(lobe_score(p, bins) for p in lobe_percents.values())


def involved_lobes(lobe_percents: Mapping[str, float], bins: Sequence[float]) -> int:
    """Number of lobes whose score is above 0."""
    return sum(lobe_score(p, bins) > 0 for p in lobe_percents.values())
