# DICOM series of one scan -> ct.nii.gz (HU) + ct.json sidecar with QC.
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from serialct.logs import setup
from serialct.steps import convert_scan

setup()
convert_scan(snakemake.input.manifest, snakemake.output.ct, snakemake.output.sidecar)
