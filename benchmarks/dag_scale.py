"""How long Snakemake takes to build the DAG of a large cohort (a dry run, nothing executed).

The cohort is index-only (``serialct synth --index-only``): the index checkpoint's outputs
exist, so the dry run expands every scan's convert, lung, lesion and quantify jobs plus the
fan-in. With ``--bare`` the same run also times a bare Snakefile of four trivial chained rules
per scan over the same scan ids (issue 21's yardstick: Snakemake's own per-job cost). Usage::

    .venv/bin/python benchmarks/dag_scale.py --scans 465 10000 [--bare [--bare-up-to N]]
        [--workdir DIR] [--json OUT]

``measure(n_scans, workdir)`` is the function benchmarks/run.py calls.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
PER_SCAN_RULES = ("convert", "lung", "lesion", "quantify")
LIMIT_S = 60.0  # issue 7: the 10,000-scan DAG must build within a minute


def dry_run(config: Path, timeout: float = 3600.0) -> tuple[float, dict[str, int]]:
    """Seconds of ``snakemake --dry-run`` on ``config`` and its job counts per rule."""
    start = time.perf_counter()
    run = subprocess.run(
        [str(SNAKEMAKE), "--cores", "1", "--configfile", str(config), "--dry-run", "--quiet",
         "rules"],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise RuntimeError(f"dry run failed:\n{run.stderr[-3000:]}")
    counts = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\w+)\s+(\d+)$", run.stdout + run.stderr, re.MULTILINE)
    }
    return seconds, counts


def measure_jobs(n_scans: int, workdir: Path) -> tuple[float, int]:
    """(seconds, total jobs) of the dry run of an index-only cohort of ``n_scans`` scans drawn
    under ``workdir``; raises if the DAG does not hold one job per scan and per-scan rule."""
    from serialct.synth import synth_index_only

    cohort = Path(workdir) / f"index-only-{n_scans}"
    config = cohort / "config.yaml"
    if not config.is_file():
        synth_index_only(cohort, scans=n_scans, seed=0)
    seconds, counts = dry_run(config)
    wrong = {r: counts.get(r) for r in PER_SCAN_RULES if counts.get(r) != n_scans}
    if wrong:
        raise RuntimeError(f"DAG of {n_scans} scans has per-rule job counts {wrong}")
    return seconds, counts["total"]


BARE_SNAKEFILE = """
import csv
with open(config["index"]) as fh:
    ROWS = list(csv.DictReader(fh, delimiter="\\t"))
SCANS = [f"{r['center']}/{r['patient_id']}/{r['scan_id']}" for r in ROWS]
rule all:
    input: expand("bare/{s}/d.txt", s=SCANS)
rule a:
    output: "bare/{c}/{p}/{s}/a.txt"
    shell: "touch {output}"
rule b:
    input: "bare/{c}/{p}/{s}/a.txt"
    output: "bare/{c}/{p}/{s}/b.txt"
    shell: "touch {output}"
rule c:
    input: "bare/{c}/{p}/{s}/b.txt"
    output: "bare/{c}/{p}/{s}/c.txt"
    shell: "touch {output}"
rule d:
    input: "bare/{c}/{p}/{s}/c.txt"
    output: "bare/{c}/{p}/{s}/d.txt"
    shell: "touch {output}"
"""


def bare_dry_run(n_scans: int, workdir: Path) -> float:
    """Seconds of the dry run of a bare Snakefile with four chained rules per scan, over the
    scans of the index-only cohort of ``n_scans`` (drawn first by :func:`measure_jobs`)."""
    cohort = Path(workdir) / f"index-only-{n_scans}"
    index = sorted((cohort / "results" / "index").glob("*.tsv"))
    index = [p for p in index if not p.name.endswith(".series.tsv")]
    bare = Path(workdir) / f"bare-{n_scans}"
    bare.mkdir(exist_ok=True)
    (bare / "Snakefile").write_text(BARE_SNAKEFILE)
    start = time.perf_counter()
    run = subprocess.run(
        [str(SNAKEMAKE), "--cores", "1", "--dry-run", "--quiet", "rules",
         "--config", f"index={index[0]}"],
        cwd=bare, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    counts = re.findall(r"^d\s+(\d+)$", run.stdout + run.stderr, re.MULTILINE)
    if run.returncode != 0 or set(counts) != {str(n_scans)}:
        raise RuntimeError(f"bare dry run failed ({counts}):\n{run.stderr[-3000:]}")
    return seconds


def measure(n_scans: int, workdir: Path) -> float:
    """Seconds to build (dry-run) the workflow DAG of an index-only cohort of ``n_scans`` scans
    drawn under ``workdir`` (see :func:`measure_jobs`)."""
    return measure_jobs(n_scans, workdir)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, nargs="+", default=[465, 10000])
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--bare", action="store_true", help="also time the bare Snakefile")
    parser.add_argument(
        "--bare-up-to", type=int, default=None, help="with --bare: only cohorts up to this size"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dag-scale-") as tmp:
        workdir = args.workdir or Path(tmp)
        results = []
        for n in args.scans:
            seconds, jobs = measure_jobs(n, workdir)
            results.append({"scans": n, "jobs": jobs, "dry_run_s": round(seconds, 2)})
            print(f"{n:>6} scans: DAG of {jobs} jobs built in {seconds:.1f} s")
            if args.bare and (args.bare_up_to is None or n <= args.bare_up_to):
                bare = bare_dry_run(n, workdir)
                results[-1]["bare_dry_run_s"] = round(bare, 2)
                print(f"{n:>6} scans: bare Snakefile, 4 rules per scan: {bare:.1f} s")
    if args.json:
        saved = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "command": " ".join(["benchmarks/dag_scale.py", *(argv or sys.argv[1:])]),
                 "results": results}  # fmt: skip
        args.json.write_text(json.dumps(saved, indent=2) + "\n")
    return 0 if all(r["dry_run_s"] < LIMIT_S for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
