# Figures 2-4.
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from serialct.logs import setup
from serialct.steps import make_figures

setup()
make_figures(
    snakemake.input.scans,
    snakemake.input.fits,
    snakemake.input.exemplary,
    snakemake.output,
)
