# Lung mask (1 right, 2 left) and lobes (1-5) of one scan.
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from pathlib import Path

from serialct.logs import setup
from serialct.scan_failure import run_scan_step
from serialct.steps import segment_masks

setup()
run_scan_step(
    "lung",
    Path(snakemake.output.lung).parent,
    snakemake.output,
    lambda: segment_masks(
        snakemake.input.ct,
        snakemake.output.lung,
        snakemake.output.lobes,
        snakemake.config,
        user_lobes=snakemake.input.user_lobes or None,  # a path with config lobes_from, else empty
    ),
)
