# Measurements of one scan -> metrics.json and qc.png.
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from pathlib import Path

from serialct import provenance
from serialct.logs import setup
from serialct.scan_failure import run_scan_step, write_not_measured
from serialct.steps import quantify_scan

setup()
out = snakemake.output
run_scan_step(
    "quantify",
    Path(out.metrics).parent,
    out,
    lambda: quantify_scan(
        Path(snakemake.input.ct).parent,
        snakemake.input.sidecar,
        snakemake.input.reference,
        out.metrics,
        out.qc,
        snakemake.config,
    ),
    on_failure=lambda line: write_not_measured(snakemake.input.manifest, out.metrics, out.qc, line),
)
inputs = snakemake.input
provenance.write(
    out.provenance,
    provenance.scan_record(inputs.manifest, inputs.model, inputs.reference, snakemake.config),
)
