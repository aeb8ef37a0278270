# Optional: retrain COVID-Lesion Net on phantoms + the user's labelled data (config `train`).
# Not part of the default target: `snakemake train_model`; then set `model` to its output.
from serialct.lesion.train_args import train_input_files


rule train_model:
    input:
        lambda wildcards: train_input_files(config["train"]),
    output:
        model=f"{RESULTS}/models/covid_lesion_net.pt",
        meta=f"{RESULTS}/models/covid_lesion_net.json",
    log:
        f"{LOGS}/train_model.log",
    benchmark:
        f"{BENCH}/train_model.tsv"
    threads: 2
    resources:
        mem_mb=grows_mb(8000),
        runtime=grows(60 if on_gpu() else 600),
        gpu=1 if on_gpu() else 0,
        **GPU_PARTITION,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/train_model.py"
