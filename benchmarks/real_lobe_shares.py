"""Lobe shares of serialct's lobe split on the real chest series of ``../shared/data/real``
against the published lobar volumes (issue 17).

There are no real lobe labels here, so the check is anatomical: each lobe's percent of both
lungs, and the lower and middle lobes' shares of their own lung, beside the published means
(``serialct.lobes.LOBE_VOLUME_PERCENT``: supine CT of 32 adults). Each series is converted
and masked as ``benchmarks/real_lung_masks.py`` does (its cases, the lower-half scan left out:
it gets no lobes). Where the lung step finds the carina (its log), the last column gives how far
the top of each lower lobe (the oblique fissure's posterior end) lies above it: textbook anatomy
puts that end at the T3-T4 spinous process, about the carina's level or one vertebra (~25 mm)
above it, an independent landmark the split does not use. With ``--lesions`` it also runs the
shipped default lesion model and prints each lobe's lesion volume (the figures behind
``ct_score.min_lesion_cm3``'s description). Usage::

    .venv/bin/python benchmarks/real_lobe_shares.py             # ~30 s on 2 cores
    .venv/bin/python benchmarks/real_lobe_shares.py --lesions   # ~2 min
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_lung_masks  # noqa: E402

from serialct.config import defaults  # noqa: E402
from serialct.constants import LOBE_LABELS, LOBE_SIDE, LOBES, LUNG_LEFT, LUNG_RIGHT  # noqa: E402
from serialct.lobes import LOBE_VOLUME_PERCENT, segment_lobes  # noqa: E402
from serialct.lung import segment_lungs  # noqa: E402
from serialct.orientation import to_work  # noqa: E402
from serialct.shipped import DEFAULT_MODEL  # noqa: E402
from serialct.steps import segment_lesions  # noqa: E402


def shares(percent: dict[str, float]) -> str:
    """Table cells: each lobe's percent of both lungs, then RLL / right, RML / right, LLL / left
    lung."""
    lung = {
        side: sum(v for k, v in percent.items() if LOBE_SIDE[k] == side)
        for side in (LUNG_RIGHT, LUNG_LEFT)
    }
    ratios = (
        percent["rll"] / lung[LUNG_RIGHT],
        percent["rml"] / lung[LUNG_RIGHT],
        percent["lll"] / lung[LUNG_LEFT],
    )
    return " | ".join([*(f"{percent[k]:.1f}" for k in LOBES), *(f"{r:.3f}" for r in ratios)])


def lesion_cm3(ct: sitk.Image, lung: sitk.Image, lobes: np.ndarray, work: Path) -> str:
    """Each lobe's lesion volume (cm3) under the shipped default model, as a table cell."""
    for name, image in (("ct", ct), ("lung", lung)):
        sitk.WriteImage(image, str(work / f"{name}.nii.gz"))
    config = defaults()
    config["device"] = "cpu"
    paths = [work / f"{n}.nii.gz" for n in ("ct", "lung")]
    segment_lesions(*paths, DEFAULT_MODEL, work / "lesion.nii.gz", config, threads=2)
    lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "lesion.nii.gz"))) > 0
    cm3 = float(np.prod(ct.GetSpacing())) / 1000.0
    return ", ".join(
        f"{k} {np.count_nonzero(lesion & (lobes == v)) * cm3:.2f}" for k, v in LOBE_LABELS.items()
    )


class _Carina(logging.Handler):
    """Keeps the slice of the lung step's "carina at slice N" log line (work orientation)."""

    def __init__(self) -> None:
        super().__init__()
        self.slice: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"carina at slice (\d+)", record.getMessage())
        if found:
            self.slice = int(found.group(1))


def tops_above_carina(ct: sitk.Image, lobes: sitk.Image, carina_slice: int | None) -> str:
    """'R / L' mm from the carina up to the top of the right and left lower lobe, or '-'."""
    if carina_slice is None:
        return "-"
    work_ct, work_lobes = to_work(ct), to_work(lobes)
    carina_z = work_ct.TransformIndexToPhysicalPoint((0, 0, carina_slice))[2]
    labels = sitk.GetArrayViewFromImage(work_lobes)
    tops = []
    for name in ("rll", "lll"):
        top = int(np.flatnonzero((labels == LOBE_LABELS[name]).any(axis=(1, 2))).max())
        tops.append(work_lobes.TransformIndexToPhysicalPoint((0, 0, top))[2] - carina_z)
    return " / ".join(f"{t:+.0f}" for t in tops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lesions", action="store_true", help="also lesion cm3 per lobe")
    args = parser.parse_args()
    print(real_lung_masks.source())
    extra = " lesion cm3 per lobe |" if args.lesions else ""
    header = " | ".join(f"{k} %" for k in LOBES)
    print(f"| series | {header} | RLL/R | RML/R | LLL/L | lower lobe tops above carina mm |{extra}")
    print("|---" * (len(LOBES) + 5 + bool(extra)) + "|")
    print(
        f"| published mean | {shares(LOBE_VOLUME_PERCENT)} | 0 to +25 |" + (" |" if extra else "")
    )
    carina = _Carina()
    logger = logging.getLogger("serialct")
    logger.addHandler(carina)
    logger.setLevel(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for case in real_lung_masks.cases():
            if case.lower_half:
                continue
            ct = real_lung_masks.convert(case, work)
            carina.slice = None
            lung = segment_lungs(ct, defaults()["lung"])
            lobes_image = segment_lobes(ct, lung)
            lobes = sitk.GetArrayFromImage(lobes_image)
            counts = np.bincount(lobes.ravel(), minlength=len(LOBES) + 1)
            total = counts[1:].sum()
            percent = {k: 100 * counts[v] / total for k, v in LOBE_LABELS.items()}
            cells = f"{shares(percent)} | {tops_above_carina(ct, lobes_image, carina.slice)}"
            cells += f" | {lesion_cm3(ct, lung, lobes, work)}" if extra else ""
            print(f"| {case.name} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
