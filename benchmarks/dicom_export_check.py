"""Check every scan's seg.dcm and sr.dcm of a results folder: dciodvfy (dicom3tools) errors and
warnings, the SEG read back voxel for voxel against the NIfTI labels
(:mod:`serialct.dicom.readback`), file sizes and the export's seconds (from the quantify log).

Usage: python benchmarks/dicom_export_check.py RESULTS_DIR
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from serialct.dicom.readback import check_seg

DCIODVFY = Path(sys.executable).with_name("dciodvfy")


def validate(path: Path) -> tuple[list[str], list[str]]:
    """dciodvfy's error and warning lines for one file."""
    run = subprocess.run([str(DCIODVFY), str(path)], capture_output=True, text=True)
    lines = (run.stdout + run.stderr).splitlines()
    return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warn")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    args = ap.parse_args()
    rows = []
    for scan in sorted(p.parent for p in args.results.glob("scans/*/*/*/seg.dcm")):
        if not (scan / "seg.dcm").stat().st_size:  # a failed scan or export: failed.txt says why
            print(f"{scan}: not exported: {(scan / 'failed.txt').read_text().strip()}")
            continue
        seg_errors, seg_warnings = validate(scan / "seg.dcm")
        sr_errors, sr_warnings = validate(scan / "sr.dcm")
        checks = check_seg(scan / "seg.dcm", scan)
        key = scan.relative_to(args.results / "scans")
        log = args.results / "logs" / "quantify" / f"{key}.log"
        text = log.read_text() if log.exists() else ""
        took = re.search(r"DICOM-SEG and SR took ([0-9.]+) s", text)
        seconds = float(took.group(1)) if took else None
        rows.append({
            "scan": str(key),
            "segments": len(checks),
            "exact": all(c.exact for c in checks),
            "seg_errors": len(seg_errors),
            "sr_errors": len(sr_errors),
            "warnings": len(seg_warnings) + len(sr_warnings),
            "seg_kb": round((scan / "seg.dcm").stat().st_size / 1024),
            "sr_kb": round((scan / "sr.dcm").stat().st_size / 1024),
            "export_s": seconds,
        })  # fmt: skip
        for line in seg_errors + sr_errors:
            print(f"{key}: {line}")
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    if not table.empty:
        first = args.results / "scans" / table["scan"].iloc[0]
        for name in ("seg.dcm", "sr.dcm"):
            print(f"dciodvfy warnings of the first scan's {name}:", *validate(first / name)[1],
                  sep="\n  ")  # fmt: skip
        print(f"{len(table)} scans; exact {int(table['exact'].sum())}; dciodvfy errors "
              f"{int(table['seg_errors'].sum() + table['sr_errors'].sum())}")  # fmt: skip
    sys.exit(0 if not table.empty and table["exact"].all() and not table["seg_errors"].any()
             and not table["sr_errors"].any() else 1)  # fmt: skip


if __name__ == "__main__":
    main()
