"""DICOM-SEG and SR of one scan: read back with highdicom, checked by dicom3tools' dciodvfy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from serialct.config import defaults
from serialct.constants import LOBE_LABELS
from serialct.dicom.convert import convert_series
from serialct.dicom.readback import check_seg
from serialct.dicom.seg import SEGMENTS
from serialct.errors import InputError
from serialct.scan_failure import dicom_folders, note_export_failure, run_scan_step
from serialct.steps import export_dicom
from serialct.tables import build_scans_table
from tests.dicom_factory import write_series

DCIODVFY = Path(sys.executable).parent / "dciodvfy"
# a coronal plane, mirrored
ROW_DIR, COL_DIR = np.array([-1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0])
NORMAL = np.cross(ROW_DIR, COL_DIR)
STEP = -2.5  # slices stored against the normal
SPACING = (0.8, 0.7)  # between rows, between columns
UIDS = {
    "study_uid": "1.2.826.0.1.3680043.8.498.10",
    "series_uid": "1.2.826.0.1.3680043.8.498.11",
    "extra": {"FrameOfReferenceUID": "1.2.826.0.1.3680043.8.498.12", "PatientName": "Doe^Jane"},
}


def _source_masks(shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Masks on the source's own (slice, row, column) grid; lobes and lesions inside the lungs."""
    n, rows, cols = shape
    lung = np.zeros(shape, np.uint8)
    lung[1:-1, 2:-2, 2 : cols // 2 - 1] = 1
    lung[1:-1, 2:-2, cols // 2 + 1 : -2] = 2
    lobes = np.zeros(shape, np.uint8)
    lobes[lung == 1] = LOBE_LABELS["rul"]
    lobes[(lung == 1) & (np.arange(rows)[None, :, None] > rows // 2)] = LOBE_LABELS["rll"]
    lobes[(lung == 1) & (np.arange(n)[:, None, None] == 2)] = LOBE_LABELS["rml"]
    lobes[lung == 2] = LOBE_LABELS["lul"]
    lobes[(lung == 2) & (np.arange(rows)[None, :, None] > rows // 2)] = LOBE_LABELS["lll"]
    lesion = np.zeros(shape, np.uint8)
    lesion[2, 4:8, 4:7] = 1
    lesion[3, 10:13, cols // 2 + 3 : cols // 2 + 6] = 2
    return {"lung": lung, "lobes": lobes, "lesion": lesion}


def _scan(tmp_path: Path, metrics: dict | None = None) -> tuple[Path, list[Path], dict]:
    """A mirrored coronal series stored in reverse, converted, with masks on the NIfTI grid."""
    shape = (6, 18, 22)
    hu = np.full(shape, -800, np.int16)
    paths = write_series(
        tmp_path / "dicom", hu, orientation=(*ROW_DIR, *COL_DIR), step=STEP, **UIDS
    )
    for p in paths:  # pixel spacing of the factory is isotropic: make rows and columns differ
        ds = pydicom.dcmread(p)
        ds.PixelSpacing = list(SPACING)
        ds.save_as(p)
    scan_dir = tmp_path / "scan"
    scan_dir.mkdir()
    convert_series(paths, scan_dir / "ct.nii.gz", scan_dir / "ct.json")
    ct = sitk.ReadImage(str(scan_dir / "ct.nii.gz"))
    first = pydicom.dcmread(paths[0])
    source = _source_masks(shape)
    for name, array in source.items():
        image = sitk.GetImageFromArray(array)
        image.SetOrigin([float(v) for v in first.ImagePositionPatient])
        image.SetSpacing((SPACING[1], SPACING[0], abs(STEP)))
        slice_dir = NORMAL * np.sign(STEP)
        image.SetDirection(np.column_stack([ROW_DIR, COL_DIR, slice_dir]).ravel().tolist())
        on_ct = sitk.Resample(image, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        assert sitk.GetArrayViewFromImage(on_ct).sum() == array.sum()  # the grids coincide
        sitk.WriteImage(on_ct, str(scan_dir / f"{name}.nii.gz"))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps({"files": [str(p) for p in paths], "patient_id": "S-abc", "scan_id": "x"})
    )
    metrics = metrics or {
        "lung_volume_cm3": 1.5, "right_lung_volume_cm3": 0.8, "left_lung_volume_cm3": 0.7,
        "lesion_volume_cm3": 0.04, "lesion_percent": 2.7, "ggo_volume_cm3": 0.02,
        "ggo_percent": 1.3, "consolidation_volume_cm3": 0.02, "consolidation_percent": 1.4,
        "ai_ct_score": 3, "lesion_percent_rul": 1.1, "ai_score_rul": 1,
        "lesion_percent_rml": None, "ai_score_rml": None,
    }  # fmt: skip
    (scan_dir / "metrics.json").write_text(json.dumps(metrics))
    return manifest, paths, source


def _export(tmp_path: Path, config: dict | None = None, **kw) -> tuple[Path, Path, list, dict]:
    manifest, paths, source = _scan(tmp_path, **kw)
    scan_dir = tmp_path / "scan"
    seg, sr = scan_dir / "seg.dcm", scan_dir / "sr.dcm"
    export_dicom(manifest, scan_dir, scan_dir / "metrics.json", seg, sr, config or {})
    return seg, sr, paths, source


def test_seg_reads_back_voxel_for_voxel_on_the_source_frames(tmp_path):
    seg_path, _, paths, source = _export(tmp_path)
    seg = hd.seg.segread(seg_path)
    uids = [pydicom.dcmread(p).SOPInstanceUID for p in paths]
    by_label = {d.SegmentLabel: int(d.SegmentNumber) for d in seg.SegmentSequence}
    expected = [s for s in SEGMENTS if (source[s.mask] == s.label).any()]
    assert sorted(by_label) == sorted(s.name for s in expected)
    assert "Other lesion" not in by_label  # a segment with no voxel is left out
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids,
        segment_numbers=[by_label[s.name] for s in expected],
        assert_missing_frames_are_empty=True,
    )
    for i, s in enumerate(expected):
        np.testing.assert_array_equal(pixels[..., i] > 0, source[s.mask] == s.label, s.name)


def test_seg_codes_identity_and_references(tmp_path):
    manifest, paths, _ = _scan(tmp_path)
    identity = {"PatientBirthDate": "19500101", "PatientComments": "lives at 1 Main St",
                "StudyDescription": "CT chest Jane Doe", "PhysiciansOfRecord": "Who^Dr",
                "IssuerOfPatientID": "HOSP", "AccessionNumber": "A123"}  # fmt: skip
    for p in paths:
        ds = pydicom.dcmread(p)
        for keyword, value in identity.items():
            setattr(ds, keyword, value)
        ds.save_as(p)
    before = {p: p.read_bytes() for p in paths}
    scan_dir = tmp_path / "scan"
    seg_path, sr_path = scan_dir / "seg.dcm", scan_dir / "sr.dcm"
    export_dicom(manifest, scan_dir, scan_dir / "metrics.json", seg_path, sr_path,
                 {"pseudonymise": {"key_file": "k", "mapping": "m"}})  # fmt: skip
    assert {p: p.read_bytes() for p in paths} == before  # the sources are not touched
    seg = pydicom.dcmread(seg_path)
    first = pydicom.dcmread(paths[0])
    for exported in (seg, pydicom.dcmread(sr_path)):
        assert exported.PatientID == "S-abc" and str(exported.PatientName) == "S-abc^"
        for keyword, value in identity.items():
            assert str(exported.get(keyword, "")) in ("", "None"), keyword
            assert value not in str(exported), keyword
    assert seg.StudyInstanceUID == first.StudyInstanceUID
    assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID
    referenced = {
        item.ReferencedSOPInstanceUID
        for series in seg.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    }
    assert referenced == {pydicom.dcmread(p).SOPInstanceUID for p in paths}
    codes = {
        d.SegmentLabel: (
            d.SegmentedPropertyTypeCodeSequence[0].CodeValue,
            [m.CodeValue for m in d.SegmentedPropertyTypeCodeSequence[0].get(
                "SegmentedPropertyTypeModifierCodeSequence", [])],
        )
        for d in seg.SegmentSequence
    }  # fmt: skip
    assert codes["Right lung"] == ("39607008", ["24028007"])
    assert codes["Left lower lobe"] == ("90572001", ["7771000"])
    assert codes["Ground-glass opacity"] == ("112120", [])
    assert codes["Consolidation"] == ("95436008", [])


def test_without_pseudonymise_the_source_name_stays(tmp_path):
    seg_path, _, _, _ = _export(tmp_path)
    seg = pydicom.dcmread(seg_path)
    assert seg.PatientID == "S-abc"  # the scan's patient id (from its manifest)
    assert str(seg.PatientName) == "Doe^Jane"


def _measurements(sr: pydicom.Dataset) -> dict[tuple[str, str], float]:
    """(tracking identifier, concept meaning) -> value, over every measurement group."""
    report = hd.sr.srread(sr) if isinstance(sr, Path) else sr
    found = {}
    for group in report.content.get_planar_roi_measurement_groups() + list(
        report.content.get_volumetric_roi_measurement_groups()
    ) + list(report.content.get_image_measurement_groups()):  # fmt: skip
        for m in group.get_measurements():
            found[group.tracking_identifier, m.name.meaning] = m.value
    return found


def test_sr_holds_the_metrics_and_references_the_seg(tmp_path):
    seg_path, sr_path, _, _ = _export(tmp_path)
    seg = pydicom.dcmread(seg_path)
    sr = hd.sr.srread(sr_path)
    found = _measurements(sr)
    assert found["Right lung", "Volume"] == pytest.approx(0.8)
    assert found["Ground-glass opacity", "Percent of lung volume"] == pytest.approx(1.3)
    assert found["Right upper lobe", "Lesion percent of lobe volume"] == pytest.approx(1.1)
    assert found["Right upper lobe", "Lobe CT score (0-5)"] == 1
    assert found["Scan totals", "AI CT score (0-25)"] == 3
    assert found["Scan totals", "Lesion percent of lung volume"] == pytest.approx(2.7)
    assert not any(group == "Right middle lobe" for group, _ in found)  # None: left out
    evidence = {
        item.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert seg.SOPInstanceUID in evidence
    referenced = set()  # (highdicom 0.28 fails to parse its own segment references: walk them)

    def walk(items) -> None:  # noqa: ANN001
        for item in items:
            for ref in item.get("ReferencedSOPSequence", []):
                if "ReferencedSegmentNumber" in ref:
                    assert ref.ReferencedSOPInstanceUID == seg.SOPInstanceUID
                    referenced.add(int(ref.ReferencedSegmentNumber))
            walk(item.get("ContentSequence", []))

    walk(pydicom.dcmread(sr_path).ContentSequence)
    measured = {"Right lung", "Left lung", "Right upper lobe", "Ground-glass opacity"}
    measured.add("Consolidation")
    numbers = {d.SegmentLabel: int(d.SegmentNumber) for d in seg.SegmentSequence}
    assert referenced == {numbers[label] for label in measured}  # lobes without values: none


def test_dciodvfy_finds_no_error(tmp_path):
    seg_path, sr_path, _, _ = _export(tmp_path)
    for path in (seg_path, sr_path):
        run = subprocess.run([str(DCIODVFY), str(path)], capture_output=True, text=True)
        lines = (run.stdout + run.stderr).splitlines()
        assert not [line for line in lines if line.startswith("Error")], lines


@pytest.mark.parametrize("keyword", ["SeriesInstanceUID", "FrameOfReferenceUID"])
def test_blank_uid_is_a_one_line_error_naming_the_file(tmp_path, keyword):
    manifest, paths, _ = _scan(tmp_path)
    ds = pydicom.dcmread(paths[1])
    setattr(ds, keyword, "")
    ds.save_as(paths[1])
    scan_dir = tmp_path / "scan"
    with pytest.raises(InputError, match=rf"{paths[1].name}: blank {keyword}"):
        export_dicom(manifest, scan_dir, scan_dir / "metrics.json", scan_dir / "s.dcm",
                     scan_dir / "r.dcm", {})  # fmt: skip


def test_source_identity_is_not_changed_and_bad_study_references_are_dropped(tmp_path):
    """Real exports carry ReferencedStudySequence items without their class UID (Lung_Dx);
    the SEG copies that sequence, so such items would make it invalid."""
    manifest, paths, _ = _scan(tmp_path)
    for p in paths:
        ds = pydicom.dcmread(p)
        item = pydicom.Dataset()
        item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.99"
        ds.ReferencedStudySequence = [item]
        ds.save_as(p)
    scan_dir = tmp_path / "scan"
    seg_path, sr_path = scan_dir / "seg.dcm", scan_dir / "sr.dcm"
    export_dicom(manifest, scan_dir, scan_dir / "metrics.json", seg_path, sr_path,
                 {"pseudonymise": {"key_file": "k", "mapping": "m"}})  # fmt: skip
    assert "ReferencedStudySequence" not in pydicom.dcmread(seg_path)
    run = subprocess.run([str(DCIODVFY), str(seg_path)], capture_output=True, text=True)
    assert not [x for x in run.stderr.splitlines() if x.startswith("Error")]
    assert pydicom.dcmread(sr_path).PatientID == "S-abc"  # the SR follows the SEG's identity


def test_in_the_workflow_a_blank_uid_fails_only_this_scans_export(tmp_path):
    """As workflow/scripts/quantify.py runs the export step: placeholders and failed.txt, no
    crash; the line joins the measured scan's qc_messages and the issues table."""
    manifest, paths, _ = _scan(tmp_path)
    ds = pydicom.dcmread(paths[0])
    ds.StudyInstanceUID = ""
    ds.save_as(paths[0])
    scan_dir = tmp_path / "scan"
    outputs = [scan_dir / "seg.dcm", scan_dir / "sr.dcm"]
    ran = run_scan_step(
        "export",
        scan_dir,
        outputs,
        lambda: export_dicom(manifest, scan_dir, scan_dir / "metrics.json", *outputs, {}),
        own=dicom_folders(manifest),
    )
    assert not ran
    assert (scan_dir / "failed.txt").read_text().startswith("export: ")
    assert "blank StudyInstanceUID" in (scan_dir / "failed.txt").read_text()
    assert all(p.stat().st_size == 0 for p in outputs)
    metrics = scan_dir / "metrics.json"
    measured = {**json.loads(metrics.read_text()), "center": "C", "patient_id": "S-abc",
                "study_date": "2020-02-01", "qc_status": "ok"}  # fmt: skip
    metrics.write_text(json.dumps(measured))
    note_export_failure(metrics, scan_dir)
    after = json.loads(metrics.read_text())
    assert after["qc_messages"] == [(scan_dir / "failed.txt").read_text().strip()]
    assert after["qc_status"] == "ok" and after["ai_ct_score"] == 3  # the numbers stay
    clinical = pd.DataFrame(
        {"patient_id": ["S-abc"], "severity": ["moderate"],
         "onset_date": ["2020-01-20"], "admission_date": ["2020-01-22"]}
    )  # fmt: skip
    _, issues = build_scans_table(pd.DataFrame([after]), {"C": clinical}, {}, defaults())
    assert any(issue.startswith("export: ") for issue in issues["issue"]), issues


def test_readback_check_is_exact_and_catches_a_changed_voxel(tmp_path):
    seg_path, _, _, _ = _export(tmp_path)
    scan_dir = tmp_path / "scan"
    checks = check_seg(seg_path, scan_dir)
    assert checks and all(c.exact for c in checks), checks
    lesion = sitk.ReadImage(str(scan_dir / "lesion.nii.gz"))
    array = sitk.GetArrayFromImage(lesion)
    array[tuple(np.argwhere(array == 1)[0])] = 2  # one GGO voxel becomes consolidation
    changed = sitk.GetImageFromArray(array)
    changed.CopyInformation(lesion)
    sitk.WriteImage(changed, str(scan_dir / "lesion.nii.gz"))
    by_label = {c.label: c for c in check_seg(seg_path, scan_dir)}
    assert by_label["Ground-glass opacity"].mismatched == 1
    assert not by_label["Consolidation"].exact and by_label["Right lung"].exact
