# Volumes, percents, per-lobe involvement, AI CT score, histogram distances, a QC overlay,
# provenance.json and (config dicom_export) the scan's DICOM-SEG and SR: one job per scan, so
# that the export adds no job to the DAG.


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
        model=str(locate(config["model"])),  # (for provenance.json: the lesion rule's model)
    output:
        metrics=f"{SCAN_DIR}/metrics.json",
        qc=f"{SCAN_DIR}/qc.png",
        provenance=f"{SCAN_DIR}/provenance.json",
        **{name.split(".")[0]: f"{SCAN_DIR}/{name}" for name in DICOM_EXPORT},
    log:
        f"{LOGS}/quantify/{{center}}/{{patient}}/{{scan}}.log",
    benchmark:
        f"{BENCH}/quantify/{{center}}/{{patient}}/{{scan}}.tsv"
    group:
        "cpu_measure"
    resources:
        mem_mb=grows_mb(6000),  # (the SEG of a 300-slice 512x512 scan adds about 0.9 GB)
        runtime=grows(15),
    conda:
        "../../envs/serialct.yaml"
    script:
        "../scripts/quantify.py"


rule scans:
    input:
        per_scan(PER_SCAN + DICOM_EXPORT),
