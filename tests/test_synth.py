"""Synthetic cohort: DICOM round trip, sheets, reader scores, config, determinism."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from serialct.config import defaults, load_config
from serialct.constants import LOBES
from serialct.histogram import read_reference
from serialct.phantom import draw_phantom, origin_for_shape
from serialct.synth import (
    CONSOLIDATION_CUBIC,
    LESION_CUBIC,
    MAX_LESION_PERCENT,
    MIN_LESION_PERCENT,
    cubic,
    plan_patient,
    reader_scores,
    scan_burden,
    synth_cohort,
    write_series,
)

SHAPE = (20, 64, 64)
LOBE_COLS = [f"lesion_percent_{lobe}" for lobe in LOBES]
SCORE_COLS = [f"score_{lobe}" for lobe in LOBES]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    synth_cohort(out, patients=3, seed=11, shape=SHAPE, normal_scans=1)
    return out


def _read_series(files: list[str]) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    return reader.Execute()


def test_dicom_round_trip(tmp_path: Path) -> None:
    ph = draw_phantom(np.random.default_rng(2), SHAPE, lesion_percent=5.0)
    plan = plan_patient(np.random.default_rng(0), "P042", "moderate")
    files = write_series(tmp_path, ph, plan, dt.date(2020, 2, 3), 0, np.random.default_rng(1))
    assert len(files) == SHAPE[0]
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(tmp_path))
    assert len(series) == 1
    image = _read_series(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path), series[0]))
    assert np.array_equal(sitk.GetArrayFromImage(image), ph.hu)
    assert image.GetSpacing() == pytest.approx(ph.spacing[::-1], abs=1e-6)
    assert image.GetOrigin() == pytest.approx(origin_for_shape(SHAPE)[::-1], abs=1e-6)
    assert image.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))

    ds = pydicom.dcmread(files[0])
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage
    assert ds.PatientID == "P042" and str(ds.PatientName) == "P042"
    assert ds.StudyDate == "20200203" and ds.Modality == "CT"
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert ds.PixelRepresentation == 1 and ds.RescaleIntercept == -1024
    assert ds.Manufacturer == "serialct-synth"
    k = int(ds.InstanceNumber) - 1
    assert np.array_equal(ds.pixel_array.astype(int) - 1024, ph.hu[k])


def test_cohort_layout_and_config(cohort: Path) -> None:
    cfg = load_config(cohort / "config.yaml")
    center = cfg["centers"]["SYNTH"]
    assert Path(center["dicom"]) == cohort / "dicom"
    assert Path(cfg["results"]).is_absolute()
    for key in ("clinical", "readings"):
        assert Path(center[key]).is_file()
    assert "hu" not in (cohort / "config.yaml").read_text()  # defaults are not written
    patients = sorted(p for p in (cohort / "dicom").iterdir())
    assert len(patients) == 3 and not any(p.name.startswith("P0") for p in patients)


def test_dicom_series_match_truth(cohort: Path) -> None:
    truth = pd.read_csv(cohort / "truth.tsv", sep="\t", dtype={"scan_id": str})
    found = set()
    for folder in (cohort / "dicom").iterdir():
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
            files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
            assert len(files) == SHAPE[0]
            ds = pydicom.dcmread(files[0], stop_before_pixels=True)
            found.add((ds.PatientID, ds.StudyDate))
    assert found == set(zip(truth.patient_id, truth.scan_id, strict=True))


def test_sheets(cohort: Path) -> None:
    clinical = pd.read_csv(cohort / "clinical.tsv", sep="\t")
    readings = pd.read_csv(cohort / "readings.tsv", sep="\t")
    truth = pd.read_csv(cohort / "truth.tsv", sep="\t")
    assert list(clinical.columns) == [
        "patient_id", "severity", "onset_date", "admission_date", "age", "sex", "hypertension",
        "diabetes", "fever", "cough", "lymphocyte", "crp", "discharge_date",
    ]  # fmt: skip
    assert clinical.patient_id.tolist() == ["P001", "P002", "P003"]
    assert set(clinical.severity) == {"moderate", "severe"}
    assert list(readings.columns) == [
        "patient_id",
        "study_date",
        "ct_score",
        *SCORE_COLS,
        "involved_lobes",
    ]
    for col in ("patient_id", "study_date", "scan_id", "days_since_onset", "lung_volume_cm3",
                "lesion_volume_cm3", "ggo_volume_cm3", "consolidation_volume_cm3",
                "lesion_percent", *LOBE_COLS):  # fmt: skip
        assert col in truth.columns
    assert len(readings) == len(truth)
    counts = truth.groupby("patient_id").size()
    assert counts.between(3, 7).all()
    assert truth.days_since_onset.between(3, 45).all()
    assert (truth.lesion_percent >= MIN_LESION_PERCENT * 0.95).all()
    assert (truth.lesion_percent <= MAX_LESION_PERCENT * 1.05).all()
    assert np.allclose(
        truth.ggo_volume_cm3 + truth.consolidation_volume_cm3, truth.lesion_volume_cm3, atol=1e-2
    )
    assert readings[SCORE_COLS].isin(range(6)).all().all()
    assert (readings.ct_score == readings[SCORE_COLS].sum(axis=1)).all()
    assert readings.ct_score.between(0, 25).all()
    assert (readings.involved_lobes == (readings[SCORE_COLS] > 0).sum(axis=1)).all()
    onset = pd.to_datetime(truth.patient_id.map(clinical.set_index("patient_id").onset_date))
    days = (pd.to_datetime(truth.study_date) - onset).dt.days
    assert (days == truth.days_since_onset).all()


def test_reference_histogram(cohort: Path) -> None:
    edges, density = read_reference(cohort / "reference_histogram.tsv")
    hist = defaults()["histogram"]
    assert edges[0] == hist["min_hu"] and edges[-1] == hist["max_hu"]
    assert density.sum() == pytest.approx(1.0)
    peak = edges[np.argmax(density)]
    assert -900 < peak < -750  # normal parenchyma


def test_deterministic(tmp_path: Path, cohort: Path) -> None:
    synth_cohort(tmp_path, patients=3, seed=11, shape=SHAPE, normal_scans=1)
    for name in ("clinical.tsv", "readings.tsv", "truth.tsv", "reference_histogram.tsv"):
        assert (tmp_path / name).read_text() == (cohort / name).read_text()
    names = sorted(p.relative_to(tmp_path) for p in (tmp_path / "dicom").rglob("*.dcm"))
    assert names == sorted(p.relative_to(cohort) for p in (cohort / "dicom").rglob("*.dcm"))


def test_readers_score_their_own_perception_not_the_pipelines_bins(monkeypatch) -> None:
    """Issue 18 point 8: synthetic readers do not call serialct.ctscore (the pipeline's own
    binning, which made reader-vs-AI agreement circular); they perceive each lobe's percent
    with their own error and score it on the paper's table."""
    import serialct.ctscore

    def forbidden(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("readers must not use the pipeline's lobe_score")

    monkeypatch.setattr(serialct.ctscore, "lobe_score", forbidden)
    exact = {"rul": 0.0, "rml": 3.0, "rll": 25.0, "lul": 49.0, "lll": 90.0}
    scores = [reader_scores(exact, np.random.default_rng(s)) for s in range(300)]
    assert all(sc["rul"] == 0 for sc in scores)  # no lesion, never scored
    assert all(1 <= sc[lobe] <= 5 for sc in scores for lobe in ("rml", "rll", "lul", "lll"))
    # a lobe at an edge of the table is read on either side of it
    assert {sc["rll"] for sc in scores} >= {2, 3} and {sc["lul"] for sc in scores} >= {3, 4}
    assert np.mean([sc["rml"] == 1 for sc in scores]) > 0.85  # 3 %, well inside "< 5 %"
    assert np.mean([sc["lll"] >= 4 for sc in scores]) > 0.9


def test_burden_follows_paper_curves() -> None:
    assert cubic(LESION_CUBIC["severe"], 20.0) == pytest.approx(
        2.89 * 20 - 0.0912 * 400 + 0.000794 * 8000
    )
    rng = np.random.default_rng(0)
    draws = [scan_burden("severe", 20.0, 1.0, rng)[0] for _ in range(300)]
    assert np.median(draws) == pytest.approx(cubic(LESION_CUBIC["severe"], 20.0), rel=0.05)
    # the moderate cubic is negative late: the floor keeps a measurable lesion
    assert scan_burden("moderate", 50.0, 1.0, rng)[0] == MIN_LESION_PERCENT
    _, frac = scan_burden("moderate", 10.0, 1.0, rng)
    ratio = cubic(CONSOLIDATION_CUBIC["moderate"], 10.0) / cubic(LESION_CUBIC["moderate"], 10.0)
    assert frac == pytest.approx(ratio)
