# Scan index per centre (checkpoint) and DICOM -> NIfTI per scan.

from serialct.steps import patients_sheet


checkpoint index:
    input:
        patients=lambda w: [str(p)] if (p := patients_sheet(config, w.center)) else [],
    output:
        index=f"{RESULTS}/index/{{center}}.tsv",
        series=f"{RESULTS}/index/{{center}}.series.tsv",
        fingerprint=f"{RESULTS}/index/{{center}}.fingerprint",
    params:
        dicom=dicom_root,
        fingerprint=dicom_fingerprint,
        manifests=f"{RESULTS}/index/{{center}}",
    log:
        f"{LOGS}/index/{{center}}.log",
    threads: 4  # header-reading processes (fewer when fewer cores are given)
    resources:
        mem_mb=grows_mb(2000),
        runtime=grows(60),
    conda:
        "../../envs/serialct.yaml"
    script:
        "../scripts/index.py"


rule convert:
    input:
        manifest=f"{RESULTS}/index/{{center}}/{{patient}}/{{scan}}.json",
    output:
        ct=f"{SCAN_DIR}/ct.nii.gz",
        sidecar=f"{SCAN_DIR}/ct.json",
    log:
        f"{LOGS}/convert/{{center}}/{{patient}}/{{scan}}.log",
    benchmark:
        f"{BENCH}/convert/{{center}}/{{patient}}/{{scan}}.tsv"
    group:
        "cpu_prepare"
    resources:
        mem_mb=grows_mb(3000),
        runtime=grows(15),
    conda:
        "../../envs/serialct.yaml"
    script:
        "../scripts/convert.py"
