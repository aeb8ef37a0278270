"""Real non-COVID chest CT (``../shared/data/real``): the default lesion model is silent there.

Every real chest series in the shared data (Lung-PET-CT-Dx: Philips 5 mm and Siemens 8 mm, each
with a lung and a soft-tissue kernel; CIP: GE 4 mm) has lungs without COVID-19 lesions (two
carry a lung tumour). Through convert, lung mask and lesion inference with the shipped default
model, the lesion share of the lung must stay at or below :data:`MAX_LESION_PERCENT`; then the
same DICOM runs through the workflow (``snakemake scans``) with the same assertion on
``metrics.json``. Only Lung_Dx-A0001's two series were among the training negatives of the
default model (``resources/models/README.md``); the other three were not trained on, but took
part in choosing its fine-tuning recipe.

The ceiling is what the shipped model reaches (worst series 1.43 %), not the project's aim of
0.5 %, which it misses (A0002: a lung tumour and the left lung base over the stomach); it holds
the improvement over the previous default (3.97 % on the same series) and catches regressions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from serialct.config import defaults
from serialct.dicom.convert import convert_dicom_dir
from serialct.histogram import write_reference
from serialct.shipped import DEFAULT_MODEL
from serialct.steps import segment_lesions, segment_masks

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
LUNG_PET_CT_DX = REAL / "lung-pet-ct-dx"
CIP = REAL / "cip-ct64-lung-mask" / "dicom"
MAX_LESION_PERCENT = 1.6  # measured worst 1.43 % (aim 0.5 %, not met; see the docstring)
SERIES = sorted(p.parent for p in LUNG_PET_CT_DX.glob("*/*/*/1-01.dcm")) + [CIP]

pytestmark = pytest.mark.integration


def _lesion_percent(lesion: Path, lung: Path) -> float:
    les = sitk.GetArrayFromImage(sitk.ReadImage(str(lesion))) > 0
    lung_arr = sitk.GetArrayFromImage(sitk.ReadImage(str(lung))) > 0
    return 100.0 * np.count_nonzero(les & lung_arr) / np.count_nonzero(lung_arr)


def test_every_shared_chest_series_is_listed() -> None:
    assert len(SERIES) == 5, SERIES


@pytest.mark.parametrize("series", SERIES, ids=lambda p: p.name.replace(" ", "")[:40])
def test_default_model_is_silent_on_normal_lungs(series: Path, tmp_path: Path) -> None:
    config = defaults()
    config["device"] = "cpu"
    table = convert_dicom_dir(series, tmp_path)
    ct = tmp_path / Path(table.loc[table["path"] != "", "path"].iloc[0]).name
    lung, lobes, lesion = (tmp_path / f"{n}.nii.gz" for n in ("lung", "lobes", "lesion"))
    segment_masks(ct, lung, lobes, config)
    segment_lesions(ct, lung, DEFAULT_MODEL, lesion, config, threads=2)
    percent = _lesion_percent(lesion, lung)
    print(f"{series.name}: lesion {percent:.3f} % of the lung")
    assert percent <= MAX_LESION_PERCENT


def test_workflow_on_real_normal_chests(tmp_path: Path) -> None:
    """The contract's workflow, default model, on both real DICOM trees: every scan's
    ``metrics.json`` has lesion_percent <= MAX_LESION_PERCENT."""
    sheet = tmp_path / "clinical.tsv"
    pd.DataFrame(
        {
            "patient_id": ["Lung_Dx-A0001", "Lung_Dx-A0002", "123456"],
            "severity": ["moderate"] * 3,
            "onset_date": ["2007-04-01", "2007-04-20", "2006-01-01"],
            "admission_date": ["2007-04-02", "2007-04-21", "2006-01-01"],
        }
    ).to_csv(sheet, sep="\t", index=False)
    edges = np.linspace(-1000, 0, 101)
    reference = tmp_path / "reference.tsv"
    write_reference(reference, edges, np.full(100, 0.01))
    config = {
        "results": str(tmp_path / "results"),
        "centers": {
            "ldx": {"dicom": str(LUNG_PET_CT_DX), "clinical": str(sheet)},
            "cip": {"dicom": str(CIP), "clinical": str(sheet)},
        },
        "reference_histogram": str(reference),
        "model": str(DEFAULT_MODEL),
        "series": {"max_slice_thickness_mm": 8.0},  # Lung_Dx-A0002 has 8 mm slices only
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run = subprocess.run(
        [str(Path(sys.executable).with_name("snakemake")), "scans", "--cores", "2",
         "--configfile", str(config_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-5000:]
    metrics = sorted((tmp_path / "results" / "scans").glob("*/*/*/metrics.json"))
    assert len(metrics) == 3, metrics
    for path in metrics:
        percent = json.loads(path.read_text())["lesion_percent"]
        print(f"{path.parent}: lesion {percent:.3f} %")
        assert percent <= MAX_LESION_PERCENT, path
