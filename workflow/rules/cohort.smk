# Fan-in: per-scan metrics -> tables -> cohort statistics -> figures.


rule tables:
    input:
        metrics=per_scan(["metrics.json"]),
        clinical=sheets_of("clinical"),
        readings=sheets_of("readings"),
    output:
        scans=f"{RESULTS}/tables/scans.tsv",
        patients=f"{RESULTS}/tables/patients.tsv",
        issues=f"{RESULTS}/tables/issues.tsv",
    log:
        f"{LOGS}/tables.log",
    resources:
        mem_mb=grows_mb(2000),
        runtime=grows(10),
    conda:
        "../../envs/serialct.yaml"
    script:
        "../scripts/tables.py"


rule cohort_stats:
    input:
        scans=[f"{RESULTS}/tables/scans.tsv", *config["pooled_tables"]],
        clinical=sheets_of("clinical"),
    output:
        STATS_FILES,
    params:
        out_dir=lambda wildcards, output: str(Path(output[0]).parent),
    log:
        f"{LOGS}/stats.log",
    resources:
        mem_mb=grows_mb(2000),
        runtime=grows(10),
    conda:
        "../../envs/serialct.yaml"
    script:
        "../scripts/stats.py"


rule stats:
    input:
        STATS_FILES,


rule figures:
    input:
        scans=f"{RESULTS}/tables/scans.tsv",
        fits=f"{RESULTS}/stats/curve_fits.tsv",
        exemplary=exemplary_scan_files,
    output:
        FIGURES,
    log:
        f"{LOGS}/figures.log",
    resources:
        mem_mb=grows_mb(3000),
        runtime=grows(10),
    conda:
        "../../envs/serialct.yaml"
    script:
        "../scripts/figures.py"
