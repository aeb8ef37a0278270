# DICOM series of one scan -> ct.nii.gz (HU) + ct.json sidecar with QC.
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from pathlib import Path

from serialct.logs import setup
from serialct.scan_failure import dicom_folders, run_scan_step
from serialct.steps import convert_scan

setup()
run_scan_step(
    "convert",
    Path(snakemake.output.ct).parent,
    snakemake.output,
    lambda: convert_scan(snakemake.input.manifest, snakemake.output.ct, snakemake.output.sidecar),
    own=dicom_folders(snakemake.input.manifest),
)
