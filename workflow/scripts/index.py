# Scan index of one centre: headers read (cached), one manifest per scan written if changed.
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from serialct.logs import setup
from serialct.steps import index_center

setup()
index_center(
    snakemake.params.dicom,
    snakemake.wildcards.center,
    snakemake.output.index,
    snakemake.params.manifests,
    snakemake.config,
    snakemake.params.fingerprint,
    snakemake.threads,
)
