# COVID-Lesion Net on one scan -> lesion.nii.gz (1 GGO, 2 consolidation), in the run's warm
# lesion worker (serialct.lesion.worker: torch and the model loaded once per run or group job).
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from pathlib import Path

from serialct.lesion.worker import segment_lesions
from serialct.logs import setup
from serialct.scan_failure import run_scan_step

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
        snakemake.threads,
    ),
)
