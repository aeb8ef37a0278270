"""The index at archive scale: a synthetic tree of many small DICOM files, indexed four ways.

Usage: python benchmarks/index_scale.py [--files 100000] [--per-series 100] [--workers 2]
    [--out DIR] [--keep]

Writes ``--files`` DICOM files (4x4 pixels, ``--per-series`` slices per patient) under
``OUT/dicom``, then times ``serialct.steps.index_center`` (what the workflow's index job runs):

1. the first index (no header cache);
2. a re-index with nothing new (every header from the cache);
3. a re-index after one new patient;
4. a first index killed (SIGKILL) half way through, then run again: how many headers the kill
   lost (read but not in the cache's journal) and how long the resumed index took.

Prints one JSON object; ``--keep`` leaves the tree in OUT.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from serialct.config import defaults
from serialct.dicom.header_cache import journal_path
from serialct.steps import index_center

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def write_patient(root: Path, k: int, slices: int) -> None:
    """One patient: one axial CT series of ``slices`` 4x4 slices, 1 mm apart."""
    folder = root / f"P{k:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.PatientID = f"P{k:06d}"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.9.{k}.1"
    ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.9.{k}.1.1"
    ds.StudyDate, ds.StudyTime, ds.Modality = "20200201", "101010", "CT"
    ds.SeriesNumber, ds.SeriesDescription = "2", "Lung 1.0"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 1.0
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelData = np.zeros((4, 4), np.int16).tobytes()
    for z in range(slices):
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.{k}.1.1.{z}"
        ds.InstanceNumber = z + 1
        ds.ImagePositionPatient = [0, 0, float(z)]
        ds.save_as(folder / f"IM{z:04d}.dcm", enforce_file_format=True)


def index(root: Path, out: Path, workers: int) -> float:
    start = time.perf_counter()
    index_center(root, "C1", out / "C1.tsv", out / "C1", defaults(), threads=workers)
    return round(time.perf_counter() - start, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--per-series", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="index_scale_"))
    root = out / "dicom"
    patients = args.files // args.per_series
    start = time.perf_counter()
    for k in range(patients):
        write_patient(root, k, args.per_series)
    result: dict[str, object] = {
        "files": patients * args.per_series,
        "workers": args.workers,
        "write_tree_s": round(time.perf_counter() - start, 1),
    }
    result["first_index_s"] = index(root, out / "a", args.workers)
    result["reindex_nothing_new_s"] = index(root, out / "a", args.workers)
    write_patient(root, patients, args.per_series)
    result["reindex_one_new_patient_s"] = index(root, out / "a", args.workers)

    killed = out / "b"
    script = (
        "import sys; from pathlib import Path; from serialct.config import defaults; "
        "from serialct.steps import index_center; "
        "index_center(Path(sys.argv[1]), 'C1', Path(sys.argv[2]) / 'C1.tsv', "
        "Path(sys.argv[2]) / 'C1', defaults(), threads=int(sys.argv[3]))"
    )
    job = subprocess.Popen(
        [sys.executable, "-c", script, str(root), str(killed), str(args.workers)],
        start_new_session=True, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(float(result["first_index_s"]) / 2)
    read_before_kill = _journal_rows(killed / "C1.headers-cache.tsv")
    os.killpg(job.pid, signal.SIGKILL)  # the job and its header-reading processes, as SLURM does
    job.wait()
    kept = _journal_rows(killed / "C1.headers-cache.tsv")
    result["killed_after_s"] = round(float(result["first_index_s"]) / 2, 2)
    result["headers_in_journal_at_kill"] = kept
    result["journal_rows_just_before_kill"] = read_before_kill
    result["resumed_index_s"] = index(root, killed, args.workers)
    # work lost to the kill: time spent before it, less the time the resumed index saved
    saved = float(result["first_index_s"]) - float(result["resumed_index_s"])
    result["lost_to_kill_s"] = round(float(result["killed_after_s"]) - saved, 2)
    print(json.dumps(result, indent=2))
    if not args.keep:
        shutil.rmtree(out)


def _journal_rows(cache: Path) -> int:
    """Rows in the cache's journal (header line not counted)."""
    path = journal_path(cache)
    return max(sum(1 for _ in path.open()) - 1, 0) if path.is_file() else 0


if __name__ == "__main__":
    main()
