# Config validation, the scan index (a checkpoint per centre) and every input function.
import os
from pathlib import Path

from snakemake.utils import validate

from serialct.dicom.tree import index_fingerprint


validate(config, schema="../schemas/config.schema.yaml")

# Jobs in per-rule conda envs import the package from the repository.
SRC = str(Path(workflow.basedir) / "src")
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])))

RESULTS = config["results"]
CENTERS = list(config["centers"])
SCAN_DIR = f"{RESULTS}/scans/{{center}}/{{patient}}/{{scan}}"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
STATS_FILES = [
    *(f"{RESULTS}/stats/table{i}.tsv" for i in range(1, 6)),
    f"{RESULTS}/stats/correlations.tsv",
    f"{RESULTS}/stats/curve_fits.tsv",
    f"{RESULTS}/stats/peaks.tsv",
    f"{RESULTS}/stats/mixed_model.tsv",
    f"{RESULTS}/stats/centers.tsv",
    f"{RESULTS}/stats/excluded.tsv",
    f"{RESULTS}/stats/repeated_measures.tsv",
]
FIGURES = [f"{RESULTS}/figures/figure{i}.png" for i in (2, 3, 4)]
PER_SCAN = [
    "ct.nii.gz", "lung.nii.gz", "lobes.nii.gz", "lesion.nii.gz", "metrics.json", "qc.png",
    "provenance.json",
]
DICOM_EXPORT = ["seg.dcm", "sr.dcm"] if config["dicom_export"] else []


wildcard_constraints:
    center="[A-Za-z0-9-]+",
    patient="[A-Za-z0-9._-]+",
    scan="[0-9]{8}(-[0-9]+)?",


def on_gpu():
    return config["device"] == "cuda"


# config cluster.gpu_partition: the SLURM partition of the GPU rules (lesion, train_model)
GPU_PARTITION = (
    {"slurm_partition": config["cluster"]["gpu_partition"]}
    if config["cluster"]["gpu_partition"]
    else {}
)


include: "resources.smk"


def parent_of(name):
    """Params function: the folder of a named input (derived, so it also holds off-node)."""
    return lambda wildcards, input: str(Path(input[name][0]).parent)


def user_lobes(wildcards):
    """The user's own lobe mask of this scan (config lobes_from), or nothing."""
    from serialct.lobes import user_lobes_path

    if not config.get("lobes_from"):
        return []
    found = user_lobes_path(
        Path(config["lobes_from"]), wildcards.center, wildcards.patient, wildcards.scan
    )
    return [str(found)] if found else []


def dicom_root(wildcards):
    return config["centers"][wildcards.center]["dicom"]


def dicom_fingerprint(wildcards):
    """Cheap fingerprint of the DICOM tree (names, sizes, mtimes): new files rerun the index; an
    unmounted root gives the fingerprint last indexed, so runs from tables need no images. The
    index path is built here, not taken as `output`: params derived from output are not tracked."""
    index = Path(f"{RESULTS}/index/{wildcards.center}.tsv")
    return index_fingerprint(Path(dicom_root(wildcards)), index)


def indexed_scans(center):
    """(patient, scan) pairs of a centre, known once its index checkpoint has run."""
    import pandas as pd

    index = checkpoints.index.get(center=center).output.index
    table = pd.read_csv(index, sep="\t", dtype=str)
    return list(zip(table["patient_id"], table["scan_id"]))


def per_scan(names):
    """Input function: the named per-scan files of every scan of every centre."""

    def files(wildcards):
        return [
            f"{RESULTS}/scans/{center}/{patient}/{scan}/{name}"
            for center in CENTERS
            for patient, scan in indexed_scans(center)
            for name in names
        ]

    return files


def sheets_of(kind):
    return [s[kind] for s in config["centers"].values() if s.get(kind)]


def exemplary_scan_files(wildcards):
    """Figure 4: the serial scans of one patient (the first with the most scans, up to 3)."""
    best = []
    for center in CENTERS:
        by_patient = {}
        for patient, scan in indexed_scans(center):
            by_patient.setdefault(patient, []).append(scan)
        for patient, scans in sorted(by_patient.items()):
            if len(scans) > len(best):
                best = [f"{RESULTS}/scans/{center}/{patient}/{s}" for s in sorted(scans)[:3]]
    return [f"{d}/{name}" for d in best for name in ("ct.nii.gz", "lesion.nii.gz")]


def all_outputs(wildcards):
    """The cohort outputs. Every per-scan file (PER_SCAN) is an input of quantify, whose outputs
    tables and report take in, so listing 6 files per scan here again would only slow large DAGs."""
    return [
        f"{RESULTS}/tables/scans.tsv",
        f"{RESULTS}/tables/patients.tsv",
        *STATS_FILES,
        *FIGURES,
        f"{RESULTS}/report.html",
    ]
