"""The cost of every serialct stage, side by side with the tools users would pick instead.

    .venv/bin/python benchmarks/run.py [--quick] [--out benchmarks/results/NAME.json]
        [--markdown BENCHMARKS.md] [--compare OLD.json] [--profile STAGE|auto] [--repeats N]

Every stage runs as a fresh process (``benchmarks/stage_worker.py``, which calls the same
``serialct.steps`` function as the workflow job), ``--repeats`` times; the parent reads wall
seconds, CPU seconds (user + system, children included, from ``os.wait4``) and the peak
resident memory the worker reports. Cases:

* synthetic: one ``serialct synth`` patient at ``--shape`` (default 300,512,512): workflow
  index, then per scan (the first ``--scans``) convert, lung+lobes, lesion inference on CPU,
  quantify; discover+convert of one scan's folder against ``dcm2niix -z y`` (the functions of
  ``benchmarks/convert_vs_dcm2niix.py``); serialct's lung mask against a threshold-and-largest-
  components baseline (time and Dice against the phantom's true lung);
* real: the DICOM samples in ../shared/data/real (discover+convert vs dcm2niix, then the chain);
* workflow: dry-run DAG build at 465 and 10,000 scans (``benchmarks/dag_scale.py``, issue 7);
* demo: ``make demo`` equivalent (``serialct synth`` + ``snakemake``) in a temporary folder.

Writes the JSON (``--compare`` a later run against it: regressions over 20 % are printed and
the exit status is 1) and BENCHMARKS.md. ``--quick`` uses tiny shapes, one repeat and a
one-patient demo, for checking the script, not for numbers (about 2 min). The full run took
30 min on the 2-core build machine under load 6-9 (the 10,000-scan dry runs and the demo are
half of it). ``--profile STAGE`` (a substring of "group: stage") adds a cProfile top 10 of one
extra run of that stage; ``--profile auto`` does it for the stages behind each missed goal.
``--from-json RESULT`` re-renders (and ``--compare``s) a saved result without measuring.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_results as br  # noqa: E402

WORKER: Final = HERE / "stage_worker.py"
REAL: Final = ROOT.parent / "shared" / "data" / "real"
FULL_SHAPE: Final = (300, 512, 512)
QUICK_SHAPE: Final = (48, 128, 128)
DAG_SIZES: Final = (465, 10_000)
QUICK_DAG_SIZES: Final = (465,)
DEMO_PATIENTS: Final = 6  # as the Makefile's demo
DEMO_SEED: Final = 1
SYNTH_SEED: Final = 3
LUNG_ANCHOR: Final = {"seed": 3, "lesion_percent": 30.0, "consolidation": 0.4}
NOT_DICOM: Final = frozenset({".jpg", ".jpeg", ".png", ".gz", ".nii", ".md", ".txt", ".tsv"})
BUSY_LOAD_PER_CORE: Final = 0.25  # 1-min load above this per core at the start: "under load"
STEP_TIMEOUT_S: Final = 3600
PROFILE_REPEAT: Final = -1  # repeat index of a profiled rerun: its own folders (index-1, ...)
LUNGMASK_NOTE: Final = (
    "not available: lungmask downloads its U-net weights (R231) from GitHub at first use and "
    "this machine has no internet"
)
GPU_SCRIPT_NOTE: Final = (
    "`benchmarks/lesion_speed.py --device cuda` (issue 5) measures slices/s of the raw net at "
    "512x512 for several batch sizes, fp32/bf16/fp16 and channels_last. It has **never run on a "
    "GPU**: no device was lent to this session (round 3), nor to the one before it (stop 9). "
    "Its latest numbers are CPU ones, from the stop-9 closing note (2-core build machine, not "
    "re-measured here): 0.018 s per 512x512 slice through the volume path, 0.29 s at native "
    "512 resolution. The CPU inference rows above are this run's own measurements."
)
GPU_RESULTS_GLOB: Final = "lesion_speed*"  # saved outputs of lesion_speed.py, if any


class StepFailed(RuntimeError):
    """A benchmark process exited non-zero."""


def machine_short() -> str:
    gpu = "GPU" if shutil.which("nvidia-smi") else "no GPU"
    return f"{os.cpu_count()}-core {platform.machine()}, {gpu}"


def machine() -> str:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    gpu = "GPU present" if shutil.which("nvidia-smi") else "no GPU"
    return (
        f"{model or platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{mem_gb:.0f} GB, {platform.system()} {platform.release().split('-')[0]}, "
        f"Python {platform.python_version()}, {gpu}"
    )


def run_process(argv: list[str], cwd: Path = ROOT, timeout: float = STEP_TIMEOUT_S) -> dict:
    """Run ``argv``; wall seconds, CPU seconds (user + system, waited-for children included),
    ru_maxrss in MiB (an upper bound: it includes what the child inherited at fork), exit
    status, stdout and stderr."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err, start_new_session=True)
        # past the timeout, kill the process group this call started (the step and its children)
        timer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {
            "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "maxrss_mb": usage.ru_maxrss / 1024,
            "rc": proc.returncode,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


def run_step(step: str, kwargs: dict[str, Any], profile: Path | None = None) -> dict:
    """One stage_worker process: process numbers plus the worker's JSON line."""
    argv = [sys.executable, str(WORKER), step, json.dumps(kwargs)]
    if profile is not None:
        argv += ["--profile", str(profile)]
    proc = run_process(argv)
    if proc["rc"] != 0:
        tail = [line for line in proc["stderr"].strip().splitlines() if line.strip()]
        if proc["rc"] == -signal.SIGKILL:
            raise StepFailed(f"{step} killed (over {STEP_TIMEOUT_S} s, or out of memory)")
        raise StepFailed(tail[-1] if tail else f"{step} exited {proc['rc']}")
    report = json.loads(proc["stdout"].strip().splitlines()[-1])
    return {**proc, **report}


class Bench:
    """Collects stages; ``measure`` runs one step ``repeats`` times and records it."""

    def __init__(self, repeats: int, profile: list[str], workdir: Path) -> None:
        self.repeats = repeats
        self.profile = [p.lower() for p in profile]
        self.workdir = workdir
        self.stages: list[dict[str, Any]] = []
        self.profiles: dict[str, str] = {}
        self.reruns: dict[str, Callable[[], None]] = {}

    def stage(self, group: str, name: str, per: str, **fields: Any) -> dict[str, Any]:
        stage = {"group": group, "name": name, "per": per, "status": "ok", "note": "",
                 "wall_s": [], "cpu_s": [], "peak_mb": [], "inner_s": [], "ratio": None,
                 "ratio_note": "", "job": True, **fields}  # fmt: skip
        self.stages.append(stage)
        return stage

    def add(self, stage: dict[str, Any], run: dict[str, Any], inner_key: str = "inner_s") -> None:
        stage["wall_s"].append(round(run["wall_s"], 4))
        stage["cpu_s"].append(round(run["cpu_s"], 4))
        stage["peak_mb"].append(round(run.get("peak_mb", run["maxrss_mb"]), 1))
        if inner_key in run:
            stage["inner_s"].append(round(run[inner_key], 4))

    def measure(
        self, group: str, name: str, per: str, step: str, kwargs: Callable[[int], dict],
        repeats: int | None = None, inner_key: str = "inner_s", **fields: Any,
    ) -> dict[str, Any]:  # fmt: skip
        """``repeats`` runs of ``step`` (kwargs of repeat k from ``kwargs(k)``); a failure
        marks the stage "failed: <last stderr line>" and is not raised."""
        stage = self.stage(group, name, per, **fields)
        last: dict[str, Any] = {}
        try:
            for k in range(repeats or self.repeats):
                last = run_step(step, kwargs(k))
                self.add(stage, last, inner_key)
        except StepFailed as exc:
            stage["status"] = f"failed: {exc}"
            return stage
        stage["last"] = {k: v for k, v in last.items() if k not in ("stdout", "stderr")}
        if step != "command":  # a profile of an external command shows only the wait
            self.register(group, name, step, lambda: kwargs(PROFILE_REPEAT))
        return stage

    def register(
        self, group: str, name: str, step: str, kwargs: Callable[[], dict[str, Any]]
    ) -> None:
        """Keep a profiled rerun of a measured stage; run it now if ``--profile`` asks. The
        rerun's kwargs are made when it runs (they may set up fresh folders)."""
        key = f"{group}: {name}"

        def rerun() -> None:
            out = self.workdir / f"profile-{len(self.profiles)}.txt"
            try:
                run_step(step, kwargs(), profile=out)
                self.profiles[key] = out.read_text()
            except StepFailed as exc:
                self.profiles[key] = f"profiled rerun failed: {exc}"

        self.reruns[key] = rerun
        if any(p in key.lower() for p in self.profile):
            rerun()


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _single_scan_folder(manifest: Path, folder: Path) -> Path:
    """The DICOM files of one scan (from its manifest) hard-linked (else copied) into a folder
    of their own, so dcm2niix and serialct see exactly one series."""
    _fresh(folder)
    for f in json.loads(manifest.read_text())["files"]:
        try:
            os.link(f, folder / Path(f).name)
        except OSError:
            shutil.copy2(f, folder / Path(f).name)
    return folder


def anchor_conversion(bench: Bench, group: str, folder: Path, work: Path) -> dict[str, Any]:
    """discover+convert of ``folder`` vs dcm2niix on it, repeats alternating; the ratio is of
    the whole-process medians (the in-function ratio goes in the note)."""
    ours = bench.stage(group, br.DISCOVER_CONVERT, "series")
    theirs = bench.stage(group, "dcm2niix -z y (same folder)", "series", job=False, anchor=True,
                         note="its own process; peak not measured")  # fmt: skip
    try:
        for k in range(bench.repeats):
            run = run_step(
                "discover_convert", {"folder": str(folder), "out_dir": str(_fresh(work / f"a{k}"))}
            )
            bench.add(ours, run, "convert_s")
            other = run_step(
                "dcm2niix", {"folder": str(folder), "out_dir": str(_fresh(work / f"b{k}"))}
            )
            # dcm2niix's own process: its wall and CPU as the worker saw them, not the worker's
            theirs["wall_s"].append(round(other["dcm2niix_s"], 4))
            theirs["inner_s"].append(round(other["dcm2niix_s"], 4))
            theirs["cpu_s"].append(round(other["dcm2niix_cpu_s"], 4))
    except StepFailed as exc:
        ours["status"] = theirs["status"] = f"failed: {exc}"
        return ours
    ours["note"] = f"outcome {run.get('outcome')}, {run.get('slices', '?')} slices"
    if run.get("outcome") in ("refused", "no usable series"):
        ours["note"] += " (timed to the refusal: not comparable)"
    a, b = br.median(ours["wall_s"]), br.median(theirs["wall_s"])
    if a and b:
        ours["ratio"] = round(a / b, 3)
        ours["ratio_note"] = "x dcm2niix"
        ai, bi = br.median(ours["inner_s"]), br.median(theirs["inner_s"])
        if ai and bi:
            ours["inner_ratio"] = round(ai / bi, 3)
            ours["note"] += f"; convert_series alone vs dcm2niix: {ai / bi:.2f}x"
    ours["outcome"] = run.get("outcome")
    profiled = work / "profiled"
    bench.register(group, br.DISCOVER_CONVERT, "discover_convert",
                   lambda: {"folder": str(folder), "out_dir": str(_fresh(profiled))})  # fmt: skip
    return ours


def bench_synthetic(bench: Bench, shape: tuple[int, int, int], n_scans: int, threads: int,
                    extra: dict[str, Any]) -> None:  # fmt: skip
    z, y, x = shape
    group = f"synthetic {z}x{y}x{x}"
    extra.update(synthetic_group=group, slices=z)
    work = bench.workdir / "synthetic"
    synth = work / "cohort"
    bench.measure(
        group, "serialct synth (set-up, 1 patient)", "cohort", "command",
        lambda k: {"argv": [str(Path(sys.executable).with_name("serialct")), "synth", str(synth),
                            "--patients", "1", "--seed", str(SYNTH_SEED), "--shape",
                            f"{z},{y},{x}"]},
        repeats=1, job=False,
    )  # fmt: skip
    if bench.stages[-1]["status"] != "ok":
        return
    config = str(synth / "config.yaml")
    index = bench.measure(
        group, br.INDEX, "job (all scans of the patient)", "index",
        lambda k: {"dicom": str(synth / "dicom"), "out_dir": str(_fresh(work / f"index{k}")),
                   "config": config},
    )  # fmt: skip
    if index["status"] != "ok":
        return
    extra["index_scans"] = index["last"]["scans"]
    index["note"] = f"{extra['index_scans']} scans indexed"
    manifests = sorted((work / "index0" / "BENCH").rglob("*.json"))[:n_scans]
    if not manifests:
        index["status"] = "failed: the index found no scan"
        return
    scan_dirs = [work / "scans" / m.stem for m in manifests]
    reference = str(synth / "reference_histogram.tsv")
    steps = (
        (br.CONVERT, "convert", lambda m, d: {"manifest": str(m), "out_dir": str(d)}),
        (br.MASKS, "masks", lambda m, d: {"ct": str(d / "ct.nii.gz"), "out_dir": str(d),
                                          "config": config}),
        (br.LESION, "lesion", lambda m, d: {"ct": str(d / "ct.nii.gz"),
                                            "lung": str(d / "lung.nii.gz"),
                                            "out": str(d / "lesion.nii.gz"), "config": config,
                                            "threads": threads}),
        (br.QUANTIFY, "quantify", lambda m, d: {"scan_dir": str(d), "reference": reference,
                                                "config": config}),
    )  # fmt: skip
    for d in scan_dirs:
        d.mkdir(parents=True, exist_ok=True)
    for name, step, make in steps:
        per = f"scan ({threads} torch threads)" if step == "lesion" else "scan"
        stage = bench.measure(
            group, name, per, step,
            lambda k, make=make: make(manifests[k % len(manifests)], scan_dirs[k % len(manifests)]),
            repeats=bench.repeats * len(manifests),
        )  # fmt: skip
        stage["note"] = f"{len(manifests)} scan(s) x {bench.repeats} repeat(s)"
        if step == "lesion" and stage["status"] == "ok":
            stage["note"] += f"; {br.median(stage['wall_s']) / z:.3f} s/slice"
    if manifests:
        one = _single_scan_folder(manifests[0], work / "one-scan-dicom")
        anchor_conversion(bench, group, one, work / "conv")
    bench_lung_anchor(bench, shape)


def bench_lung_anchor(bench: Bench, shape: tuple[int, int, int]) -> None:
    """serialct's lung mask vs the threshold baseline on a phantom with a true lung mask."""
    z, y, x = shape
    a = LUNG_ANCHOR
    group = f"lung anchor: phantom {z}x{y}x{x}, {a['lesion_percent']:.0f} % lesion"
    work = bench.workdir / "lung-anchor"
    try:
        run_step("phantom", {"shape": list(shape), "seed": a["seed"], "out_dir": str(work),
                             "lesion_percent": a["lesion_percent"],
                             "consolidation": a["consolidation"]})  # fmt: skip
    except StepFailed as exc:
        bench.stage(group, "phantom set-up", "", status=f"failed: {exc}")
        return
    ct, truth = str(work / "ct.nii.gz"), str(work / "truth_lung.nii.gz")
    ours = bench.measure(
        group,
        "serialct lung mask (segment_lungs)",
        "scan",
        "lung_only",
        lambda k: {"ct": ct, "out": str(work / "ours.nii.gz")},
    )
    floor = bench.measure(
        group,
        "baseline: threshold + 2 largest components",
        "scan",
        "baseline_lung",
        lambda k: {"ct": ct, "out": str(work / "floor.nii.gz")},
        anchor=True,
    )
    for stage, mask in ((ours, "ours"), (floor, "floor")):
        if stage["status"] == "ok":
            d = run_step("dice", {"mask": str(work / f"{mask}.nii.gz"), "truth": truth})
            stage["dice"] = round(d["dice"], 4)
            stage["note"] = (
                f"Dice {d['dice']:.4f}, lung volume {d['volume_error_percent']:+.1f} % vs truth"
            )
    if ours["status"] == "ok" and floor["status"] == "ok":
        ours["ratio"] = round(br.median(ours["wall_s"]) / br.median(floor["wall_s"]), 3)
        ours["ratio_note"] = "x baseline"
    bench.stage(group, "lungmask (R231)", "scan", status=LUNGMASK_NOTE, job=False)


def bench_real(bench: Bench, threads: int) -> None:
    """Each DICOM sample: discover+convert vs dcm2niix, then lung+lobes, lesion, quantify (with
    the synthetic cohort's reference histogram: the config default is a path in the user's
    project, not shipped)."""
    synthetic_reference = bench.workdir / "synthetic" / "cohort" / "reference_histogram.tsv"
    reference = str(synthetic_reference) if synthetic_reference.is_file() else None
    if not REAL.is_dir():
        bench.stage("real", "samples", "", status=f"not available: {REAL} missing")
        return
    for folder in sorted(p for p in REAL.iterdir() if p.is_dir()):
        if all(f.suffix.lower() in NOT_DICOM for f in folder.rglob("*") if f.is_file()):
            continue  # no DICOM (the MedSeg JPG slices)
        group = f"real {folder.name}"
        work = bench.workdir / "real" / folder.name
        conv = anchor_conversion(bench, group, folder, work)
        if conv["status"] != "ok" or conv.get("outcome") not in ("ok", "warn"):
            continue
        scan = work / "a0"
        bench.measure(group, br.MASKS, "scan", "masks",
                      lambda k, s=scan: {"ct": str(s / "ct.nii.gz"), "out_dir": str(s),
                                         "config": None})  # fmt: skip
        if not (scan / "lung.nii.gz").is_file():
            continue
        bench.measure(group, br.LESION, f"scan ({threads} torch threads)", "lesion",
                      lambda k, s=scan: {"ct": str(s / "ct.nii.gz"), "lung": str(s / "lung.nii.gz"),
                                         "out": str(s / "lesion.nii.gz"), "config": None,
                                         "threads": threads})  # fmt: skip
        bench.measure(
            group,
            br.QUANTIFY,
            "scan",
            "quantify",
            lambda k, s=scan: {"scan_dir": str(s), "reference": reference, "config": None},
        )


def bench_dag(bench: Bench, sizes: tuple[int, ...]) -> None:
    """Dry-run DAG builds through benchmarks/dag_scale.py (issue 7). The row is the dry-run
    process itself (the index-only cohort it needs is drawn once per size, not counted)."""
    if not (HERE / "dag_scale.py").is_file():
        for n in sizes:
            bench.stage("workflow", f"{br.DAG}, {n} scans", "dry run", status=(
                "not available: benchmarks/dag_scale.py (issue 7) is not there yet"))  # fmt: skip
        return
    for n in sizes:
        stage = bench.stage("workflow", f"{br.DAG}, {n} scans", "dry run",
                            note="snakemake --dry-run process; peak is an upper bound")  # fmt: skip
        cohort = _fresh(bench.workdir / f"dag{n}")
        try:
            for _ in range(bench.repeats):
                run = run_step("dag", {"n_scans": n, "workdir": str(cohort)})
                stage["wall_s"].append(round(run["measured_s"], 4))
                stage["inner_s"].append(round(run["measured_s"], 4))
                stage["cpu_s"].append(round(run["dry_run_cpu_s"], 4))
                stage["peak_mb"].append(round(run["dry_run_peak_mb"], 1))
        except StepFailed as exc:
            stage["status"] = f"failed: {exc}"
            continue
        kwargs = {"n_scans": n, "workdir": str(cohort)}
        bench.register("workflow", stage["name"], "dag", lambda kwargs=kwargs: kwargs)


def bench_demo(bench: Bench, patients: int, shape: tuple[int, int, int] | None) -> None:
    """``make demo`` in a temporary folder: synth (set-up) and the whole workflow."""
    demo = bench.workdir / "demo"
    serialct = str(Path(sys.executable).with_name("serialct"))
    argv = [serialct, "synth", str(demo), "--patients", str(patients), "--seed", str(DEMO_SEED)]
    if shape is not None:
        argv += ["--shape", ",".join(map(str, shape))]
    size = "x".join(map(str, shape)) if shape else "default shape"
    group = f"demo ({patients} patient(s), {size})"
    bench.measure(group, "serialct synth", "cohort", "command", lambda k: {"argv": argv},
                  repeats=1, job=False)  # fmt: skip
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    cores = str(min(2, os.cpu_count() or 1))
    stage = bench.measure(
        group, "whole workflow (snakemake)", "cohort", "command",
        lambda k: {"argv": [snakemake, "--cores", cores, "--configfile",
                            str(demo / "config.yaml"), "--quiet"], "cwd": str(ROOT)},
        repeats=1, job=False,
    )  # fmt: skip
    truth = demo / "truth.tsv"
    if stage["status"] == "ok" and truth.is_file():
        scans = len(truth.read_text().strip().splitlines()) - 1
        stage["note"] = f"{scans} scans, --cores {cores}; peak = largest single process"


MISSED_GOAL_STAGES: Final = {
    "conversion vs dcm2niix -z y": [br.DISCOVER_CONVERT],
    "CPU chain without inference, per scan": [br.INDEX, br.CONVERT, br.MASKS, br.QUANTIFY],
    "lesion inference on CPU": [br.LESION],
    "10k-scan dry run": [f"{br.DAG}, 10000 scans"],
}


def gpu_section(results_dir: Path = HERE / "results") -> str:
    """The GPU script, with any saved output of it under benchmarks/results (its device is
    named in that output)."""
    saved = sorted(results_dir.glob(GPU_RESULTS_GLOB)) if results_dir.is_dir() else []
    if not saved:
        return GPU_SCRIPT_NOTE
    text = [GPU_SCRIPT_NOTE, "", "Saved outputs of it:"]
    for path in saved:
        text += ["", f"`{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}`:", "",
                 "```", path.read_text()[:3000].rstrip(), "```"]  # fmt: skip
    return "\n".join(text)


def scale_section(results_dir: Path = HERE / "results") -> str:
    """Issue 21's saved measurements: the lesion step per scan in a 50-scan group, each job its
    own process against the warm worker (benchmarks/lesion_worker.py), and the dry-run DAG
    against a bare Snakefile (benchmarks/dag_scale.py --bare). Their own runs, not this one."""
    text = []
    worker = results_dir / "lesion_worker.json"
    if worker.is_file():
        w = json.loads(worker.read_text())
        text += [
            f"`{worker.relative_to(ROOT)}` ({w.get('date', '')}; "
            f"`{w.get('command', 'benchmarks/lesion_worker.py')}`): the workflow's lesion script "
            f"on {w['scans']} phantom scans of {'x'.join(map(str, w['shape']))} voxels, one "
            "Snakemake process, jobs in series (as in one SLURM group job), 2 threads each.",
            "",
            "| lesion jobs | wall s per scan | CPU s per scan |",
            "|---|---|---|",
            *(f"| {name} | {w[key]['wall_s_per_scan']:.2f} | {w[key]['cpu_s_per_scan']:.2f} |"
              for key, name in (("per_process", "each in its own process (before)"),
                                ("worker", "one warm worker (after)"))),
            "",
        ]  # fmt: skip
    dag = results_dir / "dag_scale.json"
    if dag.is_file():
        d = json.loads(dag.read_text())
        rows, goals = [], []
        for r in d["results"]:
            seconds, bare = r["dry_run_s"], r.get("bare_dry_run_s")
            ratio = f"{seconds / bare:.2f}" if bare else "—"
            rows.append(f"| {r['scans']} | {r['jobs']} | {seconds:.1f} | "
                        f"{f'{bare:.1f}' if bare else '—'} | {ratio} |")  # fmt: skip
            if r["scans"] >= 10000:
                goals.append(f"{r['scans']} scans {seconds:.0f} s"
                             + (f" ({ratio}x bare)" if bare else ""))  # fmt: skip
        text += [
            f"`{dag.relative_to(ROOT)}` ({d.get('date', '')}; `{d.get('command', '')}`): "
            "dry run of the workflow against a bare Snakefile of four chained trivial rules per "
            "scan over the same scans, in the same run.",
            "",
            "| scans | jobs | workflow dry run (s) | bare Snakefile (s) | ratio |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "Issue 21's goals: 10,000 scans no slower than the bare Snakefile, 100,000 scans "
            f"within 300 s. Measured: {'; '.join(goals)}.",
            *(["", f"Note: {d['note']}."] if d.get("note") else []),
        ]
    return "\n".join(text) or "No saved lesion-worker or DAG-scale result."


def profile_missed(bench: Bench, goals: list[dict[str, Any]], group: str) -> None:
    """``--profile auto``: one profiled rerun of the stages behind each missed goal."""
    for goal in goals:
        if goal["met"] is not False:
            continue
        names = MISSED_GOAL_STAGES.get(goal["goal"], [])
        keys = [f"{g}: {n}" for n in names for g in (group, "workflow")]
        if goal["goal"] == "peak memory per job":
            keys = [goal["detail"].removeprefix("largest: ")]
        for key in keys:
            if key in bench.reruns and key not in bench.profiles:
                bench.reruns[key]()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes, 1 repeat: checks the script")
    ap.add_argument("--shape", help="synthetic Z,Y,X (default 300,512,512; quick 48,128,128)")
    ap.add_argument("--scans", type=int, default=2, help="synthetic scans measured per repeat")
    ap.add_argument("--repeats", type=int, help="runs per stage (default 3; quick 1)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for lesion inference")
    ap.add_argument("--demo-patients", type=int, help=f"default {DEMO_PATIENTS}; quick 1")
    ap.add_argument("--skip", action="append", default=[], help="leave a case out",
                    choices=["synthetic", "real", "dag", "demo"])  # fmt: skip
    ap.add_argument("--profile", action="append", default=[],
                    help="cProfile top 10 of stages whose name contains this (repeatable); "
                         "'auto': the stages behind missed goals")  # fmt: skip
    ap.add_argument("--out", type=Path, help="JSON (default benchmarks/results/DATE[-quick].json)")
    ap.add_argument(
        "--markdown",
        type=Path,
        help="default BENCHMARKS.md; quick: benchmarks/results/BENCHMARKS-quick.md",
    )
    ap.add_argument("--compare", type=Path, help="earlier JSON: print regressions, exit 1 if any")
    ap.add_argument("--from-json", type=Path, help="no measuring: render/compare this result")
    ap.add_argument("--workdir", type=Path, help="keep the work files here (default: temporary)")
    return ap.parse_args(argv)


def measure_all(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    quick = args.quick
    shape = tuple(int(v) for v in args.shape.split(",")) if args.shape else (
        QUICK_SHAPE if quick else FULL_SHAPE)  # fmt: skip
    repeats = args.repeats or (1 if quick else 3)
    cores = os.cpu_count() or 1
    load_start = os.getloadavg()[0]
    bench = Bench(repeats, [p for p in args.profile if p != "auto"], workdir)
    extra: dict[str, Any] = {"shape": list(shape)}
    started = time.perf_counter()
    patients = args.demo_patients or (1 if quick else DEMO_PATIENTS)
    cases: dict[str, Callable[[], None]] = {
        "synthetic": lambda: bench_synthetic(bench, shape, args.scans, args.threads, extra),  # type: ignore[arg-type]
        "real": lambda: bench_real(bench, args.threads),
        "dag": lambda: bench_dag(bench, QUICK_DAG_SIZES if quick else DAG_SIZES),
        "demo": lambda: bench_demo(bench, patients, QUICK_SHAPE if quick else None),
    }
    for case, run_case in cases.items():
        if case in args.skip:
            continue
        try:
            run_case()
        except Exception as exc:  # one broken case must not lose the others' numbers
            bench.stage(case, "(case aborted)", "", status=f"failed: {type(exc).__name__}: {exc}")
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "machine_short": machine_short(),
        "load": {
            "start": load_start,
            "end": os.getloadavg()[0],
            "busy": load_start > BUSY_LOAD_PER_CORE * cores,
        },  # fmt: skip
        "options": {
            "quick": quick,
            "repeats": repeats,
            "shape": list(shape),
            "scans": args.scans,
            "threads": args.threads,
            "command": " ".join([".venv/bin/python benchmarks/run.py", *sys.argv[1:]]).strip(),
        },  # fmt: skip
        "stages": bench.stages,
        "extra": extra,
        "profiles": bench.profiles,
    }
    result["goals"] = br.evaluate_goals(result)
    if "auto" in args.profile:
        profile_missed(bench, result["goals"], extra.get("synthetic_group", ""))
    result["total_s"] = round(time.perf_counter() - started, 1)
    result["sections"] = {
        "GPU inference script": gpu_section(),
        "Lesion worker and DAG scale (issue 21)": scale_section(),
        "Run": f"This run took {result['total_s']:.0f} s in all.",
    }
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        result["goals"] = br.evaluate_goals(result)
        result.setdefault("sections", {})["Lesion worker and DAG scale (issue 21)"] = (
            scale_section()
        )  # saved outputs of their own scripts: the newest, not the ones of the JSON's run
    else:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="serialct-bench-"))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            result = measure_all(args, workdir.resolve())
        finally:
            if args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M")
        out = args.out or HERE / "results" / f"{stamp}{'-quick' if args.quick else ''}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"results: {out}")
    markdown = args.markdown or (
        HERE / "results" / "BENCHMARKS-quick.md" if result["options"].get("quick")
        else ROOT / "BENCHMARKS.md"
    )  # fmt: skip
    markdown.parent.mkdir(parents=True, exist_ok=True)
    text = br.render_markdown(result)
    markdown.write_text(text)
    print(text)
    print(f"markdown: {markdown}")
    if args.compare:
        lines, compared = br.compare(json.loads(args.compare.read_text()), result)
        for line in lines:
            print(line)
        if compared == 0:
            print(f"no stage in common with {args.compare}: nothing compared")
            return 2
        print(f"{compared} stages compared with {args.compare}: {len(lines)} regression(s)")
        return 1 if lines else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
