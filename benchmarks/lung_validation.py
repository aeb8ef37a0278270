"""Lung mask and lobe split against synthetic truth at realistic size (issue 4).

For each phantom (serialct.phantom, a stand-in for patient data) of the severity range, prints
lung Dice, lung volume error, the share of true lesion / consolidation voxels inside the mask,
the worst per-lobe lesion percent error (our lobes + the TRUE lesion mask vs the true lobes) and
its sources apart: ``geom`` (our lobe split run on the TRUE lung mask: the approximate fissure
planes), ``mask`` (the TRUE lobes carried onto our lung mask, each voxel of it taking the nearest
true lobe: lesion missed by the mask drops out, tissue wrongly in it dilutes its lobe) and
``miss`` (the TRUE lobes cut to our lung mask: the misses alone), time of ``segment_lungs`` and
the peak memory of a process that reads the CT and runs it (spawned child, 2 threads; the peak
includes the Python interpreter and the CT).

    .venv/bin/python benchmarks/lung_validation.py               # 300x512x512, ~12 min
    .venv/bin/python benchmarks/lung_validation.py --shape 96x192x192
    .venv/bin/python benchmarks/lung_validation.py --seeds 4,1,2     # a few phantoms only
    .venv/bin/python benchmarks/lung_validation.py --set midpoint_edge=false  # a lung setting
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import yaml
from scipy import ndimage as ndi

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
    # dense cases added after the floor/apex fills were tuned on the ones above (held out)
    (9, 45.0, 0.5),
    (10, 40.0, 0.5),
    (11, 48.0, 0.5),
)
THREADS = 2


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
    return float("nan")


def _percent(lesion: np.ndarray, region: np.ndarray) -> float:
    return 100 * np.count_nonzero(lesion & region) / max(np.count_nonzero(region), 1)


def _nearest_labels(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``labels`` carried onto ``mask``: each voxel of it takes the nearest labelled voxel's
    label (0 outside ``mask``). Computed in the bounding box of both."""
    box = ndi.find_objects(((labels > 0) | mask).astype(np.uint8))[0]
    _, nearest = ndi.distance_transform_edt(labels[box] == 0, return_indices=True)
    out = np.zeros_like(labels)
    out[box] = np.where(mask[box], labels[box][tuple(nearest)], 0)
    return out


def _segment(queue: mp.Queue, path: str, lung_cfg: dict) -> None:
    """Child process (spawned, so its peak RSS is this scan's alone: interpreter, CT, mask):
    the mask and its time."""
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(THREADS)
    image = sitk.ReadImage(path)
    start = time.perf_counter()
    lung = segment_lungs(image, lung_cfg)
    seconds = time.perf_counter() - start
    sitk.WriteImage(lung, path.replace(".nii", "_lung.nii"))
    queue.put((seconds, _peak_mb()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="300x512x512", help="z x y x x")
    parser.add_argument(
        "--seeds", default="", help="comma-separated phantom seeds of CASES (default: all)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a lung.* setting (YAML value), e.g. midpoint_edge=false; repeatable",
    )  # fmt: skip
    args = parser.parse_args()
    lung_cfg = defaults()["lung"]
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in lung_cfg:
            parser.error(f"--set {item}: no lung setting {key!r}; known: {sorted(lung_cfg)}")
        lung_cfg[key] = yaml.safe_load(value)
    shape = tuple(int(n) for n in args.shape.split("x"))
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    unknown = sorted(set(seeds) - {case[0] for case in CASES})
    if unknown:
        parser.error(f"--seeds: no case with seed {unknown}; known: {[c[0] for c in CASES]}")
    cases = [case for case in CASES if not seeds or case[0] in seeds]
    print(
        f"{'seed':>4} {'les%':>5} {'cons':>5} {'dice':>6} {'vol%':>7} {'les_in':>6} "
        f"{'cons_in':>7} {'lobe_pts':>8} {'geom':>5} {'mask':>5} {'miss':>5} {'time_s':>6} "
        f"{'peak_MB':>7}"
    )
    ctx = mp.get_context("spawn")
    for seed, percent, consolidation in cases:
        ph = draw_phantom(np.random.default_rng(seed), shape, percent, consolidation)
        image = sitk.GetImageFromArray(ph.hu)
        image.SetSpacing(ph.spacing[::-1])
        image.SetOrigin(origin_for_shape(shape)[::-1])
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "ct.nii")
            sitk.WriteImage(image, path)
            queue = ctx.Queue()
            child = ctx.Process(target=_segment, args=(queue, path, lung_cfg))
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
        true_lung = sitk.GetImageFromArray(ph.lung)
        true_lung.CopyInformation(image)
        geom_lobes = sitk.GetArrayFromImage(segment_lobes(image, true_lung))
        carried = _nearest_labels(ph.lobes, mask)
        worst = worst_geom = worst_mask = worst_miss = 0.0
        for value in LOBE_LABELS.values():
            true_lobe = ph.lobes == value
            true_pct = _percent(lesion, true_lobe)
            worst = max(worst, abs(true_pct - _percent(lesion, lobes == value)))
            worst_geom = max(worst_geom, abs(true_pct - _percent(lesion, geom_lobes == value)))
            worst_mask = max(worst_mask, abs(true_pct - _percent(lesion, carried == value)))
            worst_miss = max(worst_miss, abs(true_pct - _percent(lesion, true_lobe & mask)))
        print(
            f"{seed:>4} {ph.lesion_percent():5.1f} {consolidation:5.2f} {dice:6.4f} "
            f"{volume:+7.2f} {inside:6.3f} {dense_in:7.3f} {worst:8.2f} {worst_geom:5.1f} "
            f"{worst_mask:5.1f} {worst_miss:5.1f} {seconds:6.2f} "
            f"{peak:7.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
