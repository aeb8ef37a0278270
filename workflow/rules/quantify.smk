# Volumes, percents, per-lobe involvement, AI CT score, histogram distances and a QC overlay.


rule quantify:
    input:
        manifest=f"{RESULTS}/index/{{center}}/{{patient}}/{{scan}}.json",  # (identity if failed)
        ct=f"{SCAN_DIR}/ct.nii.gz",
        sidecar=f"{SCAN_DIR}/ct.json",
        lung=f"{SCAN_DIR}/lung.nii.gz",
        lung_qc=f"{SCAN_DIR}/lung_qc.json",
        lobes=f"{SCAN_DIR}/lobes.nii.gz",
        lesion=f"{SCAN_DIR}/lesion.nii.gz",
        reference=REFERENCE,
    output:
        metrics=f"{SCAN_DIR}/metrics.json",
        qc=f"{SCAN_DIR}/qc.png",
    log:
        f"{LOGS}/quantify/{{center}}/{{patient}}/{{scan}}.log",
    benchmark:
        f"{BENCH}/quantify/{{center}}/{{patient}}/{{scan}}.tsv"
    group:
        "cpu_measure"
    resources:
        mem_mb=grows(4000),
        runtime=grows(15),
    conda:
        "../../envs/serialct.yaml"
    script:
        "../scripts/quantify.py"


rule scans:
    input:
        per_scan(PER_SCAN),
