"""Lobe shares of serialct's lobe split on the real chest series of ``../shared/data/real``
against the published lobar volumes (issue 17).

There are no real lobe labels here, so the check is anatomical: each lobe's percent of both
lungs, and the lower and middle lobes' shares of their own lung, beside the published means
(``serialct.constants.LOBE_VOLUME_PERCENT``: supine CT of 32 adults). Each series is converted
and masked as ``benchmarks/real_lung_masks.py`` does (its cases, the lower-half scan left out:
it gets no lobes). Usage::

    .venv/bin/python benchmarks/real_lobe_shares.py        # ~30 s on 2 cores
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_lung_masks  # noqa: E402

from serialct.config import defaults  # noqa: E402
from serialct.constants import LOBE_LABELS, LOBE_VOLUME_PERCENT, LOBES  # noqa: E402
from serialct.lobes import segment_lobes  # noqa: E402
from serialct.lung import segment_lungs  # noqa: E402


def shares(lobes: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """(percent of both lungs per lobe in LOBES order, RLL / right, RML / right, LLL / left)."""
    n = np.bincount(lobes.ravel(), minlength=len(LOBES) + 1)[1:].astype(float)
    right, left = n[:3].sum(), n[3:].sum()
    return 100 * n / n.sum(), n[2] / right, n[1] / right, n[4] / left


def main() -> None:
    print(real_lung_masks.source())
    published = np.array([LOBE_VOLUME_PERCENT[k][0] for k in LOBES])
    right = published[:3].sum()
    print("| series | " + " | ".join(f"{k} %" for k in LOBES) + " | RLL/R | RML/R | LLL/L |")
    print("|---" * (len(LOBES) + 4) + "|")
    row = " | ".join(f"{v:.1f}" for v in published)
    print(
        f"| published mean | {row} | {published[2] / right:.3f} | {published[1] / right:.3f} | "
        f"{published[4] / published[3:].sum():.3f} |"
    )
    with tempfile.TemporaryDirectory() as work:
        for case in real_lung_masks.cases():
            if case.lower_half:
                continue
            ct = real_lung_masks.convert(case, Path(work))
            lung = segment_lungs(ct, defaults()["lung"])
            lobes = sitk.GetArrayFromImage(segment_lobes(ct, lung))
            percent, rll, rml, lll = shares(lobes)
            row = " | ".join(f"{percent[LOBE_LABELS[k] - 1]:.1f}" for k in LOBES)
            print(f"| {case.name} | {row} | {rll:.3f} | {rml:.3f} | {lll:.3f} |", flush=True)


if __name__ == "__main__":
    main()
