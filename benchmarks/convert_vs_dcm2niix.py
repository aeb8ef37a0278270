"""Wall time of ``serialct`` DICOM -> .nii.gz conversion against ``dcm2niix -z y``.

Writes a synthetic 512x512x300 int16 CT series (serialct.phantom), then converts it and every
real DICOM series in ../shared/data/real/ with both tools, ``--repeats`` times each
(alternating), and prints the median wall times and their ratios (goal: serialct <= 0.5x):
``serialct`` is ``convert_series`` in this process, ``cli`` the whole ``serialct convert
FOLDER OUT`` command in its own process (interpreter start, imports and the folder's header
scan included, as dcm2niix's are).

    .venv/bin/python benchmarks/convert_vs_dcm2niix.py [--repeats 5] [--keep DIR] [--real-only]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' small DICOM writer

from dicom_factory import write_series  # noqa: E402

from serialct.dicom.convert import convert_series  # noqa: E402
from serialct.dicom.headers import read_headers  # noqa: E402
from serialct.dicom.series import list_series  # noqa: E402
from serialct.errors import InputError  # noqa: E402
from serialct.phantom import draw_phantom  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"
SHAPE = (300, 512, 512)


def _dcm2niix() -> str:
    exe = shutil.which("dcm2niix") or str(Path(sys.executable).parent / "dcm2niix")
    if not Path(exe).exists():
        sys.exit("dcm2niix not found: pip install dcm2niix")
    return exe


def synthetic_series(folder: Path) -> list[Path]:
    phantom = draw_phantom(np.random.default_rng(0), shape=SHAPE, lesion_percent=5.0)
    hu = np.clip(np.rint(phantom.hu), -1024, 3071).astype(np.int16)
    dz, dy, dx = phantom.spacing
    return write_series(folder, hu, step=dz, pixel_spacing=(dy, dx), thickness=dz)


def time_serialct(files: list[Path], out: Path) -> tuple[float, str]:
    """Wall time and outcome ("ok", "warn", or "refused" for an InputError such as tilt)."""
    start = time.perf_counter()
    try:
        status = convert_series(files, out / "ct.nii.gz", out / "ct.json")["qc_status"]
    except InputError:
        status = "refused"  # timed to the refusal: not comparable with dcm2niix
    return time.perf_counter() - start, status.split(":")[0]


def time_cli(folder: Path, out: Path) -> float:
    """Wall time of the whole ``serialct convert FOLDER OUT`` process."""
    start = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).parent / "serialct"), "convert", str(folder), str(out)],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def time_dcm2niix(exe: str, folder: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [exe, "-z", "y", "-f", "%s", "-o", str(out), str(folder)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="keep the synthetic series here")
    parser.add_argument("--real-only", action="store_true", help="skip the synthetic series")
    args = parser.parse_args()
    logging.getLogger("serialct").setLevel(logging.ERROR)
    exe = _dcm2niix()
    version = subprocess.run([exe, "-v"], capture_output=True, text=True).stdout.split()
    work = Path(tempfile.mkdtemp(prefix="serialct-bench-"))
    cases: list[tuple[str, Path, list[Path]]] = []
    if not args.real_only:
        synth = args.keep or work / "synthetic"
        files = sorted(synth.glob("*.dcm")) or synthetic_series(synth)
        cases.append(("synthetic 512x512x300 int16", synth, files))
    if REAL.is_dir():
        for folder in sorted(p for p in REAL.iterdir() if p.is_dir()):
            for row in list_series(read_headers(folder)).itertuples():
                if not row.skip_reason:
                    name = f"real {folder.name} {row.series_number}"
                    cases.append((name, Path(row.files[0]).parent, row.files))
    print(f"dcm2niix {version[-1] if version else '?'}; {args.repeats} repeats, medians in s")
    print(
        f"{'series':44s} {'slices':>6s} {'serialct':>9s} {'cli':>7s} {'dcm2niix':>9s} "
        f"{'ratio':>6s} {'cli':>6s}  serialct"
    )
    for name, folder, series_files in cases:
        ours, cli, theirs = [], [], []
        for k in range(args.repeats):
            out = work / f"out-{k}"
            shutil.rmtree(out, ignore_errors=True)
            (out / "a").mkdir(parents=True)
            (out / "b").mkdir()
            seconds, status = time_serialct(series_files, out / "a")
            ours.append(seconds)
            cli.append(time_cli(folder, out / "c"))
            theirs.append(time_dcm2niix(exe, folder, out / "b"))
        a, c, b = (statistics.median(v) for v in (ours, cli, theirs))
        print(
            f"{name:44s} {len(series_files):6d} {a:9.3f} {c:7.3f} {b:9.3f} {a / b:6.2f} "
            f"{c / b:6.2f}  {status}"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
