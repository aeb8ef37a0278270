# COVID-Lesion Net inference per scan; the weights are an input file, never a download.

import sys

from serialct.lesion.worker import start_for_slurm_job
from serialct.shipped import locate

# A packed SLURM job runs each lesion job in an srun step of its own: its lesion worker starts
# here, in the job's own Snakemake, before any step (serialct.lesion.worker).
start_for_slurm_job(locate(config["model"]), config, sys.argv)


rule lesion:
    input:
        ct=f"{SCAN_DIR}/ct.nii.gz",
        lung=f"{SCAN_DIR}/lung.nii.gz",
        model=str(locate(config["model"])),
    output:
        lesion=f"{SCAN_DIR}/lesion.nii.gz",
    log:
        f"{LOGS}/lesion/{{center}}/{{patient}}/{{scan}}.log",
    benchmark:
        f"{BENCH}/lesion/{{center}}/{{patient}}/{{scan}}.tsv"
    group:
        "gpu_scan"
    threads: 2
    resources:
        mem_mb=grows_mb(8000),
        runtime=grows(10 if on_gpu() else 60),
        gpu=1 if on_gpu() else 0,
        **GPU_PARTITION,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/lesion.py"
