# Fan-in: every metrics.json + clinical + readings -> scans.tsv, patients.tsv, issues.tsv.
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from serialct.logs import setup
from serialct.steps import build_tables

setup()
build_tables(
    snakemake.input.metrics,
    snakemake.config,
    snakemake.output.scans,
    snakemake.output.patients,
    snakemake.output.issues,
)
