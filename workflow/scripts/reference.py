# Normal-lung reference histogram from the normal scans' DICOM folders (config normal_scans).
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from serialct.logs import setup
from serialct.reference import build_from_dicom

setup()
build_from_dicom(
    snakemake.params.dicom,
    snakemake.output.histogram,
    snakemake.output.scans,
    snakemake.config,
    fingerprint=snakemake.params.fingerprint,
)
