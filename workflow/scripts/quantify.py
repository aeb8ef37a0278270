# Measurements of one scan -> metrics.json and qc.png.
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from pathlib import Path

from serialct.logs import setup
from serialct.steps import quantify_scan

setup()
quantify_scan(
    Path(snakemake.input.ct).parent,
    snakemake.input.sidecar,
    snakemake.input.reference,
    snakemake.output.metrics,
    snakemake.output.qc,
    snakemake.config,
)
