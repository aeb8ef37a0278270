# Lung mask (1 right, 2 left) and lobes (1-5) of one scan.
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from serialct.logs import setup
from serialct.steps import segment_masks

setup()
segment_masks(
    snakemake.input.ct,
    snakemake.output.lung,
    snakemake.output.lobes,
    snakemake.config,
    user_lobes=snakemake.input.user_lobes or None,  # a path with config lobes_from, else empty
)
