# serialct: serial chest-CT quantification of viral pneumonia.
# Table of contents only; the rules live in workflow/rules, the logic in src/serialct.
from snakemake.utils import min_version

min_version("9.0")


# The demo config unless --configfile names one (a directive here would be merged with it).
if not config:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/cluster.smk"
include: "workflow/rules/convert.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/lung.smk"
include: "workflow/rules/lesion.smk"
include: "workflow/rules/quantify.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/train.smk"


rule all:
    input:
        all_outputs,
    default_target: True
