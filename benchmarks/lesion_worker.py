"""CPU seconds per scan of the workflow's lesion step for a group of scans, each job in its own
process (``lesion.worker: false``) against the run's warm worker (``serialct.lesion.worker``).

Runs the workflow's own ``lesion`` script (workflow/scripts/lesion.py) from a one-rule Snakefile
over ``--scans`` phantom scans (ct + lung NIfTI), as one Snakemake process runs a SLURM group
job: ``--cores 2``, 2 threads per job, so the jobs run one after another. CPU = user + system
of Snakemake and every process it waited for, plus the worker's own (it reports it when it
exits: it is nobody's child once its first job has gone). Usage::

    .venv/bin/python benchmarks/lesion_worker.py [--scans 50] [--shape 80,256,256] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
MODEL = ROOT / "resources" / "models" / "covid_lesion_net.pt"

SNAKEFILE = """
SCANS = config["scans"]
rule all:
    input: expand("scans/{{s}}/lesion.nii.gz", s=SCANS)
rule lesion:
    input: ct="scans/{{s}}/ct.nii.gz", lung="scans/{{s}}/lung.nii.gz", model="{model}"
    output: lesion="scans/{{s}}/lesion.nii.gz"
    log: "logs/{{s}}.log"
    threads: 2
    script: "{script}"
"""


def make_scans(folder: Path, n: int, shape: tuple[int, int, int]) -> list[str]:
    from serialct.phantom import draw_phantom

    names = []
    for i in range(n):
        scan = folder / "scans" / f"s{i:03d}"
        scan.mkdir(parents=True, exist_ok=True)
        if not (scan / "lung.nii.gz").is_file():
            p = draw_phantom(np.random.default_rng(i), shape=shape, lesion_percent=5.0)
            ct = sitk.GetImageFromArray(p.hu)
            ct.SetSpacing([float(s) for s in p.spacing[::-1]])
            lung = sitk.GetImageFromArray(p.lung.astype(np.uint8))
            lung.CopyInformation(ct)
            sitk.WriteImage(ct, str(scan / "ct.nii.gz"))
            sitk.WriteImage(lung, str(scan / "lung.nii.gz"))
        names.append(scan.name)
    return names


def run(folder: Path, names: list[str], use_worker: bool) -> dict[str, float]:
    """Wall and CPU seconds of the lesion jobs of ``names`` (outputs removed first)."""
    from serialct.config import defaults

    for name in names:
        (folder / "scans" / name / "lesion.nii.gz").unlink(missing_ok=True)
    config = defaults()
    config.update(device="cpu", scans=names)
    config["lesion"]["worker"] = use_worker
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "Snakefile").write_text(
        SNAKEFILE.format(model=MODEL, script=ROOT / "workflow" / "scripts" / "lesion.py")
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, SERIALCT_WORKER_LOG="1", PYTHONPATH=path)
    done = subprocess.run(
        [str(SNAKEMAKE), "--cores", "2", "--configfile", "config.yaml", "--quiet", "all"],
        cwd=folder, capture_output=True, text=True, env=env,
    )  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    worker_cpu = 0.0
    if use_worker:
        time.sleep(2.0)  # the worker exits within a second of Snakemake
        logs = sorted(Path(tempfile.gettempdir(), f"serialct-{os.getuid()}").glob("*.log"),
                      key=lambda p: p.stat().st_mtime)  # fmt: skip
        found = re.findall(r"exits: (\d+) scans, CPU ([\d.]+) s", logs[-1].read_text())
        if not found or int(found[-1][0]) != len(names):
            raise RuntimeError(f"worker log {logs[-1]} does not report {len(names)} scans")
        worker_cpu = float(found[-1][1])
        logs[-1].unlink()
    return {"wall_s_per_scan": wall / len(names), "cpu_s_per_scan": (cpu + worker_cpu) / len(names),
            "worker_cpu_s": worker_cpu}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=50)
    parser.add_argument("--shape", default="80,256,256", help="phantom Z,Y,X")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="lesion-worker-"))
    names = make_scans(folder, args.scans, shape)  # type: ignore[arg-type]
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "command": " ".join(["benchmarks/lesion_worker.py", *(argv or sys.argv[1:])]),
               "scans": args.scans, "shape": list(shape), "model": MODEL.name}  # fmt: skip
    for mode, use in (("per_process", False), ("worker", True)):
        results[mode] = run(folder, names, use)
        print(mode, json.dumps(results[mode]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
