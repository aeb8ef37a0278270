"""The radiologists' semi-quantitative CT score: 0-5 per lobe from percent involvement, summed.

Paper: 0, 0 %; 1, <5 %; 2, 6-25 %; 3, 26-49 %; 4, 50-75 %; 5, >75 %. Config ``ct_score``:
``bins`` are the whole-percent lower bounds of scores 2-5 (default 6, 26, 50, 76); a lobe's
percent is rounded to a whole percent, half up, before it is scored, which resolves the
scale's gaps (5-6, 25-26, 49-50 %) to the nearer score; a lobe with less lesion than
``min_lesion_cm3`` is not involved and scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

MAX_LOBE_SCORE = 5


def lobe_score(
    percent: float, bins: Sequence[float], lesion_cm3: float | None = None,
    min_lesion_cm3: float = 0.0,
) -> int:  # fmt: skip
    """Score 0-5 of one lobe: 0 without lesion (or with less than ``min_lesion_cm3`` of it,
    when ``lesion_cm3`` is given), else 1 plus the number of ``bins`` that the percent,
    rounded to a whole percent (half up), reaches."""
    if len(bins) != MAX_LOBE_SCORE - 1 or list(bins) != sorted(bins):
        raise ValueError(f"ct_score bins must be 4 increasing percents, got {list(bins)}")
    if not math.isfinite(percent):
        raise ValueError(f"lobe percent must be finite, got {percent}")
    if percent <= 0 or (lesion_cm3 is not None and lesion_cm3 < min_lesion_cm3):
        return 0
    whole = math.floor(percent + 0.5)
    return 1 + sum(whole >= edge for edge in bins)


def total_score(scores: Mapping[str, int]) -> int:
    """Sum of the five lobe scores (0-25)."""
    return int(sum(scores.values()))


def involved_lobes(scores: Mapping[str, int]) -> int:
    """Number of lobes whose score is above 0."""
    return sum(score > 0 for score in scores.values())
