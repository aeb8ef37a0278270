# Lung mask (1 right, 2 left) and five lobes per scan.


rule lung:
    input:
        ct=f"{SCAN_DIR}/ct.nii.gz",
        # an input function only when there are user lobes: one less call per job in large DAGs
        user_lobes=user_lobes if config.get("lobes_from") else [],
    output:
        lung=f"{SCAN_DIR}/lung.nii.gz",
        lobes=f"{SCAN_DIR}/lobes.nii.gz",
        qc=f"{SCAN_DIR}/lung_qc.json",
    log:
        f"{LOGS}/lung/{{center}}/{{patient}}/{{scan}}.log",
    benchmark:
        f"{BENCH}/lung/{{center}}/{{patient}}/{{scan}}.tsv"
    group:
        "cpu_prepare"
    resources:
        mem_mb=grows_mb(6000),
        runtime=grows(20),
    conda:
        "../../envs/serialct.yaml"
    script:
        "../scripts/lung.py"
