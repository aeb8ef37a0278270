# report.html: tables, figures, QC overlays and the settings used.
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from serialct import provenance
from serialct.logs import setup
from serialct.steps import write_report

setup()
inputs = snakemake.input
cohort_inputs = [*inputs.stats, *inputs.figures, *inputs.tables, *inputs.series, *inputs.sheets]
record = provenance.write(
    snakemake.output.provenance,
    provenance.cohort_record(cohort_inputs, inputs.model, inputs.reference, snakemake.config),
)
write_report(
    snakemake.output.report,
    snakemake.params.stats_dir,
    snakemake.params.tables_dir,
    snakemake.params.figures_dir,
    snakemake.input.qc,
    snakemake.config,
    snakemake.input.series,
    provenance=record,
)
