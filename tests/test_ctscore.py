"""The AI CT score on the radiologists' 0-5 lobe scale (serialct.ctscore, config ct_score)."""

import pytest

from serialct.config import defaults
from serialct.ctscore import involved_lobes, lobe_score, total_score

CFG = defaults()["ct_score"]
BINS = CFG["bins"]
MIN_CM3 = CFG["min_lesion_cm3"]


@pytest.mark.parametrize(
    ("percent", "score"),
    [
        (0, 0), (0.01, 1), (4.9, 1), (5.0, 1), (5.4, 1), (5.5, 2), (6, 2), (25, 2), (25.4, 2),
        (25.5, 3), (26, 3), (30, 3), (49, 3), (49.4, 3), (49.5, 4), (50, 4), (60, 4), (75, 4),
        (75.4, 4), (75.5, 5), (80, 5), (100, 5),
    ],
)  # fmt: skip
def test_lobe_score_follows_the_papers_table(percent, score):
    """0: 0 %; 1: <5 %; 2: 6-25 %; 3: 26-49 %; 4: 50-75 %; 5: >75 %; the gaps go to the
    nearer score (rounded to a whole percent, half up). Before issue 18, exactly 50 % scored 3
    and 75 % scored 4 but 75.2 % scored 5."""
    assert lobe_score(percent, BINS) == score


def test_specks_below_the_minimum_volume_do_not_involve_a_lobe():
    """A single voxel's worth of lesion (0.04 % of a real lung base) scored 1 and counted as an
    involved lobe; below min_lesion_cm3 a lobe scores 0."""
    assert lobe_score(0.04, BINS, lesion_cm3=0.3, min_lesion_cm3=MIN_CM3) == 0
    assert lobe_score(0.04, BINS, lesion_cm3=MIN_CM3, min_lesion_cm3=MIN_CM3) == 1
    assert lobe_score(30.0, BINS, lesion_cm3=300.0, min_lesion_cm3=MIN_CM3) == 3


def test_total_and_involved_lobes():
    scores = {"rul": 0, "rml": 1, "rll": 3, "lul": 5, "lll": 0}
    assert total_score(scores) == 9
    assert involved_lobes(scores) == 3


def test_bad_bins_rejected():
    with pytest.raises(ValueError, match="4 increasing"):
        lobe_score(1.0, [25, 6, 50, 75])
    with pytest.raises(ValueError, match="4 increasing"):
        lobe_score(1.0, [0, 5, 25, 50, 75])
