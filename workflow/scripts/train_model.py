# Train COVID-Lesion Net as config `train` says -> {results}/models/covid_lesion_net.pt (+ .json).
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115  first: everything goes to the log
from serialct.lesion.train_cli import train_from_config
from serialct.logs import setup

setup()
train_from_config(snakemake.config, snakemake.output.model, threads=snakemake.threads)
