import pytest

from serialct.config import defaults
from serialct.ctscore import involved_lobes, lobe_score, total_score

BINS = defaults()["ct_score"]["bins"]


@pytest.mark.parametrize(
    ("percent", "score"),
    [(0, 0), (0.01, 1), (4.9, 1), (5.5, 2), (25, 2), (30, 3), (49, 3), (60, 4), (75, 4), (80, 5)],
)
def test_lobe_score_follows_the_radiologists_scale(percent, score):
    assert lobe_score(percent, BINS) == score


def test_total_and_involved_lobes():
    lobes = {"rul": 0.0, "rml": 3.0, "rll": 30.0, "lul": 80.0, "lll": 0.0}
    assert total_score(lobes, BINS) == 0 + 1 + 3 + 5 + 0
    assert involved_lobes(lobes, BINS) == 3


def test_bad_bins_rejected():
    with pytest.raises(ValueError, match="5 increasing"):
        lobe_score(1.0, [0, 25, 5, 50, 75])
