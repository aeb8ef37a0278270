"""Lung mask and lobe split against synthetic truth at realistic size (issue 4).

For each phantom (serialct.phantom, a stand-in for patient data) of the severity range, prints
lung Dice, lung volume error, the share of true lesion / consolidation voxels inside the mask,
the worst per-lobe lesion percent error (our lobes + the TRUE lesion mask vs the true lobes),
time of ``segment_lungs`` and the peak memory of a process that reads the CT and runs it
(spawned child, 2 threads; the peak includes the Python interpreter and the CT itself).

    .venv/bin/python benchmarks/lung_validation.py               # 300x512x512, ~3 min
    .venv/bin/python benchmarks/lung_validation.py --shape 96x192x192
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from serialct.config import defaults
from serialct.constants import LESION_CONSOLIDATION, LOBE_LABELS
from serialct.lobes import segment_lobes
from serialct.lung import segment_lungs
from serialct.phantom import draw_phantom, origin_for_shape

# (seed, lesion percent, consolidation fraction): normal to > 40 % of the lung involved
CASES = (
    (1, 0.0, 0.15),
    (6, 0.0, 0.15),
    (2, 10.0, 0.3),
    (3, 30.0, 0.4),
    (7, 35.0, 0.5),
    (4, 45.0, 0.5),
    (5, 50.0, 0.3),
    (8, 42.0, 0.45),
)
THREADS = 2


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
    return float("nan")


def _segment(queue: mp.Queue, path: str) -> None:
    """Child process (spawned, so its peak RSS is this scan's alone: interpreter, CT, mask):
    the mask and its time."""
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(THREADS)
    image = sitk.ReadImage(path)
    start = time.perf_counter()
    lung = segment_lungs(image, defaults()["lung"])
    seconds = time.perf_counter() - start
    sitk.WriteImage(lung, path.replace(".nii", "_lung.nii"))
    queue.put((seconds, _peak_mb()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="300x512x512", help="z x y x x")
    args = parser.parse_args()
    shape = tuple(int(n) for n in args.shape.split("x"))
    print(
        f"{'seed':>4} {'les%':>5} {'cons':>5} {'dice':>6} {'vol%':>7} {'les_in':>6} "
        f"{'cons_in':>7} {'lobe_pts':>8} {'time_s':>6} {'peak_MB':>7}"
    )
    ctx = mp.get_context("spawn")
    for seed, percent, consolidation in CASES:
        ph = draw_phantom(np.random.default_rng(seed), shape, percent, consolidation)
        image = sitk.GetImageFromArray(ph.hu)
        image.SetSpacing(ph.spacing[::-1])
        image.SetOrigin(origin_for_shape(shape)[::-1])
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "ct.nii")
            sitk.WriteImage(image, path)
            queue = ctx.Queue()
            child = ctx.Process(target=_segment, args=(queue, path))
            child.start()
            seconds, peak = queue.get()
            child.join()
            lung = sitk.ReadImage(path.replace(".nii", "_lung.nii"))
        labels = sitk.GetArrayFromImage(lung)
        lobes = sitk.GetArrayFromImage(segment_lobes(image, lung))
        mask, truth = labels > 0, ph.lung > 0
        dice = 2 * np.count_nonzero(mask & truth) / (mask.sum() + truth.sum())
        volume = 100 * (mask.sum() / truth.sum() - 1)
        lesion = ph.lesion > 0
        inside = mask[lesion].mean() if lesion.any() else float("nan")
        dense = ph.lesion == LESION_CONSOLIDATION
        dense_in = mask[dense].mean() if dense.any() else float("nan")
        worst = 0.0
        for value in LOBE_LABELS.values():
            true_lobe, our_lobe = ph.lobes == value, lobes == value
            true_pct = 100 * np.count_nonzero(lesion & true_lobe) / true_lobe.sum()
            our_pct = 100 * np.count_nonzero(lesion & our_lobe) / max(our_lobe.sum(), 1)
            worst = max(worst, abs(true_pct - our_pct))
        print(
            f"{seed:>4} {ph.lesion_percent():5.1f} {consolidation:5.2f} {dice:6.4f} "
            f"{volume:+7.2f} {inside:6.3f} {dense_in:7.3f} {worst:8.2f} {seconds:6.2f} "
            f"{peak:7.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
