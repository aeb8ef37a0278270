# The self-contained HTML report.


rule report:
    input:
        stats=STATS_FILES,
        figures=FIGURES,
        tables=[f"{RESULTS}/tables/scans.tsv", f"{RESULTS}/tables/patients.tsv"],
        qc=per_scan(["qc.png"]),
        series=expand(f"{RESULTS}/index/{{center}}.series.tsv", center=CENTERS),
        sheets=sheets_of("clinical") + sheets_of("readings") + config["pooled_tables"],
        model=str(locate(config["model"])),
        reference=REFERENCE,
    output:
        report=f"{RESULTS}/report.html",
        provenance=f"{RESULTS}/provenance.json",
    params:
        stats_dir=parent_of("stats"),
        tables_dir=parent_of("tables"),
        figures_dir=parent_of("figures"),
    log:
        f"{LOGS}/report.log",
    resources:
        mem_mb=grows_mb(2000),
        runtime=grows(10),
    conda:
        "../../envs/serialct.yaml"
    script:
        "../scripts/report.py"
