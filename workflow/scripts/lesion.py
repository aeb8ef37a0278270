# COVID-Lesion Net on one scan -> lesion.nii.gz (1 GGO, 2 consolidation).
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from pathlib import Path

from serialct.logs import setup
from serialct.scan_failure import run_scan_step
from serialct.steps import segment_lesions

setup()
run_scan_step(
    "lesion",
    Path(snakemake.output.lesion).parent,
    snakemake.output,
    lambda: segment_lesions(
        snakemake.input.ct,
        snakemake.input.lung,
        snakemake.input.model,
        snakemake.output.lesion,
        snakemake.config,
        threads=snakemake.threads,
    ),
)
