"""One benchmark stage in a fresh process (run by ``benchmarks/run.py``, one call per repeat).

    python benchmarks/stage_worker.py STEP '{"kwarg": ...}' [--profile OUT.txt]

Calls the same ``serialct.steps`` function the workflow job calls, then prints one JSON line:
``inner_s`` (the step alone, imports excluded), ``peak_mb`` (this process's VmHWM: unlike
ru_maxrss it is not inherited from the parent over fork/exec) and step-specific numbers.
With ``--profile`` the step runs under cProfile and the top 10 by cumulative time go to OUT.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import numpy as np

HERE = Path(__file__).resolve().parent
BASELINE_AIR_HU: Final = -320  # classic air / lung threshold of the textbook lung mask
PROFILE_LINES: Final = 10


def peak_mb() -> float:
    """Peak resident memory in MiB of this process (VmHWM) or of the largest child it waited
    for (ru_maxrss of RUSAGE_CHILDREN: external commands such as snakemake and its jobs)."""
    own = float("nan")
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            own = float(line.split()[1]) / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return max(own, children)


def _config(path: str | None) -> dict[str, Any]:
    from serialct.config import defaults, load_config

    return load_config(path) if path else defaults()


def baseline_lung(hu: np.ndarray) -> np.ndarray:
    """The floor: air below BASELINE_AIR_HU, minus air touching the in-plane image border,
    the two largest remaining components, holes filled slice by slice."""
    import numpy as np
    from scipy import ndimage

    air = hu < BASELINE_AIR_HU
    labels, n = ndimage.label(air)
    border = np.unique(
        np.concatenate([labels[:, [0, -1], :].ravel(), labels[:, :, [0, -1]].ravel()])
    )
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[border] = 0
    sizes[0] = 0
    keep = [k for k in np.argsort(sizes)[-2:] if sizes[k] > 0]
    mask = np.isin(labels, keep)
    return np.stack([ndimage.binary_fill_holes(s) for s in mask])


def step_index(dicom: str, out_dir: str, config: str) -> dict[str, Any]:
    from serialct.steps import index_center

    out = Path(out_dir)
    index_center(Path(dicom), "BENCH", out / "BENCH.tsv", out / "BENCH", _config(config))
    return {"scans": len(list((out / "BENCH").rglob("*.json")))}


def step_convert(manifest: str, out_dir: str) -> dict[str, Any]:
    from serialct.steps import convert_scan

    out = Path(out_dir)
    convert_scan(Path(manifest), out / "ct.nii.gz", out / "ct.json")
    return {}


def step_discover_convert(folder: str, out_dir: str) -> dict[str, Any]:
    """Headers of a folder read, series listed, the first usable one converted: what
    benchmarks/convert_vs_dcm2niix.py times, without importing it (its synthetic-series writer
    would add import time to this process that a conversion does not need)."""
    from serialct.dicom.convert import convert_series
    from serialct.dicom.headers import read_headers
    from serialct.dicom.series import list_series
    from serialct.errors import InputError

    usable = [r for r in list_series(read_headers(Path(folder))).itertuples() if not r.skip_reason]
    if not usable:
        return {"outcome": "no usable series"}
    out, files = Path(out_dir), [Path(f) for f in usable[0].files]
    start = time.perf_counter()
    try:
        outcome = convert_series(files, out / "ct.nii.gz", out / "ct.json")["qc_status"]
    except InputError:
        outcome = "refused"  # e.g. gantry tilt: timed to the refusal
    seconds = time.perf_counter() - start
    return {"outcome": outcome.split(":")[0], "convert_s": seconds, "slices": len(files)}


def step_masks(ct: str, out_dir: str, config: str | None) -> dict[str, Any]:
    from serialct.steps import segment_masks

    out = Path(out_dir)
    return {
        "qc": segment_masks(Path(ct), out / "lung.nii.gz", out / "lobes.nii.gz", _config(config))
    }


def step_lesion(ct: str, lung: str, out: str, config: str | None, threads: int) -> dict[str, Any]:
    import SimpleITK as sitk

    from serialct.steps import segment_lesions

    cfg = _config(config)
    cfg["device"] = "cpu"
    segment_lesions(Path(ct), Path(lung), Path(cfg["model"]), Path(out), cfg, threads=threads)
    return {"slices": sitk.ReadImage(ct).GetSize()[2]}


def step_quantify(scan_dir: str, reference: str | None, config: str | None) -> dict[str, Any]:
    from serialct.steps import quantify_scan

    scan, cfg = Path(scan_dir), _config(config)
    quantify_scan(
        scan, scan / "ct.json", Path(reference or cfg["reference_histogram"]),
        scan / "metrics.json", scan / "qc.png", cfg,
    )  # fmt: skip
    return {}


def step_lung_only(ct: str, out: str) -> dict[str, Any]:
    """serialct's lung mask alone (no lobes), for the anchor against the baseline."""
    import SimpleITK as sitk

    from serialct.config import defaults
    from serialct.lung import segment_lungs

    sitk.WriteImage(segment_lungs(sitk.ReadImage(ct), defaults()["lung"]), out, True)
    return {}


def step_baseline_lung(ct: str, out: str) -> dict[str, Any]:
    import numpy as np
    import SimpleITK as sitk

    image = sitk.ReadImage(ct)
    mask = sitk.GetImageFromArray(baseline_lung(sitk.GetArrayFromImage(image)).astype(np.uint8))
    mask.CopyInformation(image)
    sitk.WriteImage(mask, out, True)
    return {}


def step_phantom(shape: list[int], seed: int, lesion_percent: float, consolidation: float,
                 out_dir: str) -> dict[str, Any]:  # fmt: skip
    """Set-up, not timed: a phantom CT and its true lung mask as NIfTI."""
    import numpy as np
    import SimpleITK as sitk

    from serialct.phantom import draw_phantom, origin_for_shape

    ph = draw_phantom(np.random.default_rng(seed), tuple(shape), lesion_percent, consolidation)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, array in (("ct", ph.hu.astype(np.int16)), ("truth_lung", ph.lung > 0)):
        image = sitk.GetImageFromArray(array.astype(np.uint8) if array.dtype == bool else array)
        image.SetSpacing([float(s) for s in ph.spacing[::-1]])
        image.SetOrigin([float(o) for o in origin_for_shape(tuple(shape))[::-1]])
        sitk.WriteImage(image, str(out / f"{name}.nii.gz"), True)
    return {"lesion_percent": float(ph.lesion_percent())}


def step_dice(mask: str, truth: str) -> dict[str, Any]:
    import numpy as np
    import SimpleITK as sitk

    a = sitk.GetArrayFromImage(sitk.ReadImage(mask)) > 0
    b = sitk.GetArrayFromImage(sitk.ReadImage(truth)) > 0
    dice = 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))
    return {"dice": float(dice), "volume_error_percent": float(100 * (a.sum() / b.sum() - 1))}


def step_command(argv: list[str], cwd: str | None = None) -> dict[str, Any]:
    """An external command (synth, snakemake) run to completion; its children's peak counts."""
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return {}


def step_dcm2niix(folder: str, out_dir: str) -> dict[str, Any]:
    """``dcm2niix -z y`` as benchmarks/convert_vs_dcm2niix.py runs it."""
    sys.path.insert(0, str(HERE))
    from convert_vs_dcm2niix import _dcm2niix, time_dcm2niix

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = time_dcm2niix(_dcm2niix(), Path(folder), Path(out_dir))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"dcm2niix_s": seconds, "dcm2niix_cpu_s": cpu}


def step_dag(n_scans: int, workdir: str) -> dict[str, Any]:
    """benchmarks/dag_scale.py's ``measure``: it draws an index-only cohort in this process
    (once per workdir), then times a ``snakemake --dry-run`` child; that child's CPU seconds
    and peak (ru_maxrss of the children: an upper bound) are reported beside its seconds."""
    sys.path.insert(0, str(HERE))
    from dag_scale import measure  # issue 7

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = float(measure(int(n_scans), Path(workdir)))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"measured_s": seconds, "dry_run_cpu_s": cpu, "dry_run_peak_mb": after.ru_maxrss / 1024}


STEPS: Final[dict[str, Callable[..., dict[str, Any]]]] = {
    "index": step_index,
    "convert": step_convert,
    "discover_convert": step_discover_convert,
    "masks": step_masks,
    "lesion": step_lesion,
    "quantify": step_quantify,
    "lung_only": step_lung_only,
    "baseline_lung": step_baseline_lung,
    "phantom": step_phantom,
    "dice": step_dice,
    "command": step_command,
    "dcm2niix": step_dcm2niix,
    "dag": step_dag,
}


def profile_text(source: cProfile.Profile | str, focus: str = "serialct") -> str:
    """Top PROFILE_LINES ``focus`` functions by cumulative time, then the top PROFILE_LINES of
    all functions by own time (imports show up there as exec/compile/loading). ``source``: a
    profiler or a saved profile file."""
    text = io.StringIO()
    stats = pstats.Stats(source, stream=text)
    stats.sort_stats("cumulative").print_stats(focus, PROFILE_LINES)
    stats.sort_stats("tottime").print_stats(PROFILE_LINES)
    keep = [ln for ln in text.getvalue().splitlines() if ln.strip() and "Ordered by" not in ln]
    return "\n".join(ln for ln in keep if not ln.lstrip().startswith("List reduced")) + "\n"


def profile_dry_run(n_scans: int, workdir: str) -> str:
    """The dry run of ``step_dag`` under cProfile in its own process (the worker only waits
    for it): snakemake on dag_scale's index-only cohort, which ``step_dag`` has drawn."""
    config = Path(workdir) / f"index-only-{n_scans}" / "config.yaml"  # dag_scale.measure_jobs
    if not config.is_file():
        return f"no profile: {config} not found (dag_scale's cohort layout changed?)"
    snakemake = Path(sys.executable).with_name("snakemake")
    with tempfile.TemporaryDirectory() as tmp:
        prof = Path(tmp) / "dry-run.prof"
        subprocess.run(
            [sys.executable, "-m", "cProfile", "-o", str(prof), str(snakemake), "--cores", "1",
             "--configfile", str(config), "--dry-run", "--quiet", "rules"],
            cwd=HERE.parent, check=True, capture_output=True,
        )  # fmt: skip
        return profile_text(str(prof), focus="snakemake")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("kwargs", help="JSON object of the step's keyword arguments")
    parser.add_argument("--profile", help="write a cProfile top 10 (cumulative) here")
    args = parser.parse_args()
    logging.getLogger("serialct").setLevel(logging.WARNING)
    func, kwargs = STEPS[args.step], json.loads(args.kwargs)
    if args.profile and args.step == "dag":  # profile the dry-run process, not the wait
        extra = func(**kwargs)
        Path(args.profile).write_text(profile_dry_run(**kwargs))
        print(json.dumps({"peak_mb": peak_mb(), **extra}))
        return
    profiler = cProfile.Profile() if args.profile else None
    start = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    extra = func(**kwargs)
    if profiler is not None:
        profiler.disable()
    inner = time.perf_counter() - start
    if profiler is not None:
        Path(args.profile).write_text(profile_text(profiler))
    print(json.dumps({"inner_s": inner, "peak_mb": peak_mb(), **extra}))


if __name__ == "__main__":
    main()
