# report.html: tables, figures, QC overlays and the settings used.
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from serialct.logs import setup
from serialct.steps import write_report

setup()
write_report(
    snakemake.output[0],
    snakemake.params.stats_dir,
    snakemake.params.tables_dir,
    snakemake.params.figures_dir,
    snakemake.input.qc,
    snakemake.config,
    snakemake.input.series,
)
