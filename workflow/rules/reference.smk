# The normal-lung reference histogram built from the site's own normal scans (config
# normal_scans); without them quantify compares with config reference_histogram (shipped).
from serialct.reference import REFERENCE_TSV, normal_fingerprint, normal_folders, reference_path

REFERENCE = str(reference_path(config))


rule reference:
    output:
        histogram=f"{RESULTS}/{REFERENCE_TSV}",
        scans=f"{RESULTS}/{REFERENCE_TSV}".removesuffix(".tsv") + ".scans.tsv",
    params:
        dicom=normal_folders(config),
        fingerprint=lambda wildcards: normal_fingerprint(config),
    log:
        f"{LOGS}/reference.log",
    benchmark:
        f"{BENCH}/reference.tsv"
    resources:
        mem_mb=grows_mb(6000),
        runtime=grows(120),
    conda:
        "../../envs/serialct.yaml"
    script:
        "../scripts/reference.py"
