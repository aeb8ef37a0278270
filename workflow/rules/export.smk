# DICOM-SEG and SR per scan (config dicom_export): lungs, lobes and lesions on the source series,
# and the scan's measurements as a TID 1500 report referencing the SEG.


rule dicom_export:
    input:
        manifest=f"{RESULTS}/index/{{center}}/{{patient}}/{{scan}}.json",
        lung=f"{SCAN_DIR}/lung.nii.gz",
        lobes=f"{SCAN_DIR}/lobes.nii.gz",
        lesion=f"{SCAN_DIR}/lesion.nii.gz",
        metrics=f"{SCAN_DIR}/metrics.json",
    output:
        seg=f"{SCAN_DIR}/seg.dcm",
        sr=f"{SCAN_DIR}/sr.dcm",
    log:
        f"{LOGS}/dicom_export/{{center}}/{{patient}}/{{scan}}.log",
    benchmark:
        f"{BENCH}/dicom_export/{{center}}/{{patient}}/{{scan}}.tsv"
    group:
        "cpu_measure"
    resources:
        mem_mb=grows(3000),
        runtime=grows(10),
    conda:
        "../../envs/serialct.yaml"
    script:
        "../scripts/dicom_export.py"
