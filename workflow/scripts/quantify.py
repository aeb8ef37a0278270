# Measurements of one scan -> metrics.json, qc.png, provenance.json; seg.dcm and sr.dcm when
# config dicom_export is on (its own step: a scan whose export fails keeps its numbers).
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from pathlib import Path

from serialct import provenance
from serialct.logs import setup
from serialct.scan_failure import (
    dicom_folders,
    note_export_failure,
    run_scan_step,
    write_not_measured,
)
from serialct.steps import export_dicom, quantify_scan

setup()
inputs, out = snakemake.input, snakemake.output
scan_dir = Path(out.metrics).parent
run_scan_step(
    "quantify",
    scan_dir,
    [out.metrics, out.qc],
    lambda: quantify_scan(
        Path(inputs.ct).parent,
        inputs.sidecar,
        inputs.reference,
        out.metrics,
        out.qc,
        snakemake.config,
    ),  # fmt: skip
    on_failure=lambda line: write_not_measured(inputs.manifest, out.metrics, out.qc, line),
)
provenance.write(
    out.provenance,
    provenance.scan_record(inputs.manifest, inputs.model, inputs.reference, snakemake.config),
)
if snakemake.config["dicom_export"] and not run_scan_step(
    "export",
    scan_dir,
    [out.seg, out.sr],
    lambda: export_dicom(inputs.manifest, scan_dir, out.metrics, out.seg, out.sr, snakemake.config),
    own=dicom_folders(inputs.manifest),  # (a blank UID in the scan's own series)
):
    note_export_failure(out.metrics, scan_dir)  # (the scan's issues list; its numbers stay)
