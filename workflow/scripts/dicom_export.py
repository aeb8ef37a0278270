# One scan's masks and metrics -> seg.dcm (DICOM-SEG) and sr.dcm (TID 1500 SR).
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from pathlib import Path

from serialct.logs import setup
from serialct.scan_failure import dicom_folders, run_scan_step
from serialct.steps import export_dicom

setup()
inputs, out = snakemake.input, snakemake.output
run_scan_step(
    "export",
    Path(out.seg).parent,
    out,
    lambda: export_dicom(
        inputs.manifest, Path(inputs.lung).parent, inputs.metrics, out.seg, out.sr, snakemake.config
    ),
    own=dicom_folders(inputs.manifest),  # (a blank UID in the scan's own series)
)
