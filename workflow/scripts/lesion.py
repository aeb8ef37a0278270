# COVID-Lesion Net on one scan -> lesion.nii.gz (1 GGO, 2 consolidation, 3 other).
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from serialct.logs import setup
from serialct.steps import segment_lesions

setup()
segment_lesions(
    snakemake.input.ct,
    snakemake.input.lung,
    snakemake.input.model,
    snakemake.output.lesion,
    snakemake.config,
    threads=snakemake.threads,
)
