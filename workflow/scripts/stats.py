# Cohort analysis (the paper's Tables 1-5, correlations, curve fits) from tables alone.
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from serialct.logs import setup
from serialct.steps import cohort_stats

setup()
cohort_stats(
    snakemake.input.scans,
    snakemake.input.clinical,
    [],  # readings are already joined into scans.tsv
    snakemake.config,
    snakemake.params.out_dir,
)
