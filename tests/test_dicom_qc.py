"""QC gate of index and conversion: each archive problem handled or quarantined with a reason."""

import logging

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from dicom_factory import CORONAL, REAL_DATA, REAL_MISSING, ramp_volume, write_series, write_slice

from serialct.config import defaults
from serialct.dicom.convert import convert_dicom_dir, convert_series
from serialct.dicom.headers import read_headers
from serialct.dicom.index import rank_series, write_index
from serialct.dicom.series import list_series
from serialct.errors import InputError

needs_real = pytest.mark.skipif(not REAL_DATA.is_dir(), reason=REAL_MISSING)


def _table(path):
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def _two_acquisitions(folder, n_second=8, **tags):
    """One series (one SeriesInstanceUID), two acquisitions at the same table positions."""
    first = write_series(folder / "a", ramp_volume((5, 4, 4), seed=1), extra=tags.get("a"))
    second = write_series(
        folder / "b", ramp_volume((n_second, 4, 4), seed=2), extra=tags.get("b"), names=None
    )
    return first, second


def test_duplicate_positions_split_by_acquisition_number_and_best_taken(tmp_path):
    _two_acquisitions(tmp_path / "dicom", a={"AcquisitionNumber": 1}, b={"AcquisitionNumber": 2})
    series = list_series(read_headers(tmp_path / "dicom"))
    assert series["acquisition"].tolist() == ["AcquisitionNumber=1", "AcquisitionNumber=2"]
    assert series["n_files"].tolist() == [5, 8] and (series["skip_reason"] == "").all()
    cfg = defaults()["series"] | {"coverage_tolerance_mm": 1.0}
    scans, table = rank_series(read_headers(tmp_path / "dicom"), "C1", cfg)
    assert len(scans) == 1 and scans.iloc[0]["n_files"] == 8
    assert table["chosen"].tolist() == [False, True]
    assert table["reason"][0].startswith(
        "not chosen: series 2 [AcquisitionNumber=2] preferred (larger coverage"
    )
    out = convert_dicom_dir(tmp_path / "dicom", tmp_path / "out")
    assert out["qc_status"].tolist() == ["ok", "ok"]  # each acquisition its own volume
    assert out["path"].tolist() == ["P001_20200201_2.nii.gz", "P001_20200201_2-2.nii.gz"]


def test_duplicate_positions_split_by_acquisition_time_or_quarantined(tmp_path):
    _two_acquisitions(
        tmp_path / "t",
        n_second=5,
        a={"AcquisitionNumber": 1, "AcquisitionTime": "101010"},
        b={"AcquisitionNumber": 1, "AcquisitionTime": "101530"},
    )
    scans, table = rank_series(read_headers(tmp_path / "t"), "C1")
    assert table["acquisition"].tolist() == ["AcquisitionTime=101010", "AcquisitionTime=101530"]
    assert table["chosen"].tolist() == [True, False]  # equal rank: the earlier acquisition
    assert "earlier acquisition" in table["reason"][1]

    _two_acquisitions(tmp_path / "n")  # no tag tells the two apart: quarantined
    scans, table = rank_series(read_headers(tmp_path / "n"), "C1")
    assert scans.empty and len(table) == 1
    assert table["reason"][0].startswith("repeated slice positions (5 files share a position")
    with pytest.raises(InputError, match="repeats the slice position"):
        files = list_series(read_headers(tmp_path / "n"))["files"][0]
        convert_series(files, tmp_path / "x.nii.gz", tmp_path / "y.json")


@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")
def test_truncated_and_garbage_files_skipped_with_warning(tmp_path, caplog):
    hu = ramp_volume((6, 8, 8), seed=4)
    files = write_series(tmp_path / "in", hu)
    data = files[5].read_bytes()
    files[5].write_bytes(data[: len(data) - 40])  # last slice: pixel data cut short
    junk = tmp_path / "in" / "IM9999.dcm"
    junk.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 60)  # a broken header
    with caplog.at_level(logging.WARNING, logger="serialct"):
        sidecar = convert_series([*files, junk], tmp_path / "o.nii.gz", tmp_path / "o.json")
    assert sidecar["qc_status"] == "warn: 2 unreadable file(s) skipped: IM0005.dcm, IM9999.dcm"
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "o.nii.gz")))
    assert np.array_equal(array, np.maximum(hu[:5], -1024))
    assert "IM0005.dcm: pixel data unreadable, file skipped" in caplog.text
    files[0].write_bytes(files[0].read_bytes()[:300])
    with pytest.raises(InputError, match="none of the 1 files"):
        convert_series([files[0]], tmp_path / "p.nii.gz", tmp_path / "p.json")


@pytest.mark.parametrize(
    ("dtype", "slope", "intercept"),
    [
        (np.int16, 1.0, -1024.0),
        (np.uint16, 1.0, -1024.0),
        (np.int16, 2.0, 0.0),
        (np.uint16, 0.5, -1024.0),
        (np.int16, 1.0, 0.0),
    ],
)
def test_signed_unsigned_and_rescale_variants(tmp_path, dtype, slope, intercept):
    hu = (ramp_volume((3, 6, 6), seed=7) // 2 * 2).astype(float)  # even: exact at slope 2
    files = write_series(tmp_path, hu, slope=slope, intercept=intercept, dtype=dtype)
    convert_series(files, tmp_path / "o.nii.gz", tmp_path / "o.json")
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "o.nii.gz")))
    assert np.array_equal(array, hu)


def test_rescale_differs_per_slice(tmp_path):
    hu = ramp_volume((3, 5, 5), seed=8) // 2 * 2  # even: exact at slope 2
    for k, (slope, intercept) in enumerate([(1.0, -1024.0), (2.0, -2000.0), (0.5, -1024.0)]):
        raw = np.rint((hu[k] - intercept) / slope).astype(np.uint16)
        write_slice(
            tmp_path / f"s{k}.dcm", raw, position=(0.0, 0.0, 2.0 * k), slope=slope,
            intercept=intercept,
        )  # fmt: skip
    convert_series(sorted(tmp_path.glob("*.dcm")), tmp_path / "o.nii.gz", tmp_path / "o.json")
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "o.nii.gz")))
    assert np.array_equal(array, hu)


def test_patient_without_usable_series_reported_others_continue(tmp_path, caplog):
    dicom = tmp_path / "dicom"
    write_series(dicom / "mr", ramp_volume((4, 4, 4)), patient_id="P1", modality="MR")
    write_series(
        dicom / "loc", ramp_volume((1, 4, 4)), patient_id="P1", series_uid="1.8",
        image_type="ORIGINAL\\PRIMARY\\LOCALIZER", orientation=CORONAL,
    )  # fmt: skip
    write_series(dicom / "thick", ramp_volume((4, 4, 4)), patient_id="P1", series_uid="1.9",
                 thickness=10.0, step=10.0)  # fmt: skip
    write_series(dicom / "ok", ramp_volume((4, 4, 4)), patient_id="P2", study_uid="2.1")
    with caplog.at_level(logging.WARNING, logger="serialct"):
        scans = write_index(dicom, "C1", tmp_path / "C1.tsv", tmp_path / "C1")
    assert scans["patient_id"].tolist() == ["P2"]
    table = _table(tmp_path / "C1.series.tsv")
    p1 = table[table["patient_id"] == "P1"]
    assert p1["chosen"].tolist() == ["False"] * 3
    assert {r.split(" (")[0] for r in p1["reason"]} == {
        "modality MR is not CT",
        "not a volume",
        "slice thickness 10 mm outside [0.5, 5] mm",
    }
    assert "patient P1 has no usable CT series (3 series skipped" in caplog.text
    p2 = table[table["patient_id"] == "P2"].iloc[0]
    assert (p2["chosen"], p2["scan_id"]) == ("True", "20200201")
    assert p2["reason"].startswith("chosen of 1 candidate(s): ORIGINAL, kernel LUNG")


def test_empty_folder_is_a_row_with_its_reason(tmp_path):
    (tmp_path / "dicom").mkdir()
    scans = write_index(tmp_path / "dicom", "C1", tmp_path / "C1.tsv", tmp_path / "C1")
    assert scans.empty
    table = _table(tmp_path / "C1.series.tsv")
    assert table[["center", "chosen"]].values.tolist() == [["C1", "False"]]
    assert table["reason"][0].startswith("no DICOM image series found under")


def test_tilted_series_never_becomes_a_scan(tmp_path):
    c, s = np.cos(np.radians(12)), np.sin(np.radians(12))
    write_series(
        tmp_path,
        ramp_volume((4, 4, 4)),
        positions=[(0.0, 0.0, 2.0 * k) for k in range(4)],
        orientation=(1.0, 0.0, 0.0, 0.0, c, -s),
    )  # fmt: skip (no GantryDetectorTilt tag: found from the positions)
    scans, table = rank_series(read_headers(tmp_path), "C1")
    assert scans.empty and table["reason"].tolist() == ["gantry tilt 12.0 deg: not supported"]


def test_selection_rule_is_configurable(tmp_path):
    common = {"step": 1.0, "thickness": 1.0}
    write_series(tmp_path / "a", ramp_volume((9, 4, 4)), series_uid="1.1", series_number="2",
                 extra={"ConvolutionKernel": "B70f"}, **common)  # fmt: skip
    write_series(tmp_path / "b", ramp_volume((9, 4, 4)), series_uid="1.2", series_number="3",
                 extra={"ConvolutionKernel": "B30f"}, **common)  # fmt: skip
    write_series(tmp_path / "c", ramp_volume((12, 4, 4)), series_uid="1.3", series_number="4",
                 image_type="DERIVED\\SECONDARY\\AXIAL", **common)  # fmt: skip
    headers = read_headers(tmp_path)
    cfg = defaults()["series"]
    chosen = rank_series(headers, "C", cfg)[1].set_index("series_number")
    assert chosen["chosen"].to_dict() == {"2": True, "3": False, "4": False}
    assert "(ORIGINAL before DERIVED" in chosen.at["4", "reason"]
    assert "(lower series number" in chosen.at["3", "reason"]
    soft = cfg | {"kernel_preference": ["b30", "b70"]}
    table = rank_series(headers, "C", soft)[1].set_index("series_number")
    assert table["chosen"].to_dict() == {"2": False, "3": True, "4": False}
    assert "(kernel preference" in table.at["2", "reason"]
    derived_ok = cfg | {"prefer_original": False}
    assert rank_series(headers, "C", derived_ok)[0]["series_number"].tolist() == ["4"]
    thin_only = cfg | {"max_slice_thickness_mm": 0.8}
    assert rank_series(headers, "C", thin_only)[0].empty


@needs_real
def test_real_samples_each_converted_or_refused_with_reason(tmp_path):
    """Every real DICOM sample in ../shared becomes a scan or is refused with its reason."""
    scans = write_index(REAL_DATA, "R", tmp_path / "R.tsv", tmp_path / "R")
    assert scans[["patient_id", "scan_id", "n_files"]].values.tolist() == [
        ["123456", "20060101", 79],  # CIP, GE 4 mm
        ["99000", "20030417", 3],  # GE lung bases
        ["Lung_Dx-A0001", "20070404", 64],  # Philips 5 mm: one of its two kernels
    ]
    table = _table(tmp_path / "R.series.tsv")
    reasons = table.groupby("n_files")["reason"].apply(list).to_dict()
    assert reasons["28"] == ["gantry tilt 18.5 deg: not supported"]  # GE head
    for n in ("2", "20"):  # lungmask slices and Siemens J2K: PatientID blank
        assert reasons[n][0].startswith("tag PatientID is blank")
    assert reasons["30"] == ["slice thickness 8 mm outside [0.5, 5] mm (config series)"] * 2
    assert sorted(r.split(":")[0] for r in reasons["64"]) == [
        "chosen of 2 candidate(s)",
        "not chosen",
    ]
    assert len(table) == 9  # medseg / pseudo-label JPGs are no DICOM: no series


@needs_real
def test_real_2d_jpg_folder_has_no_ct_series_and_says_so(tmp_path):
    with pytest.raises(InputError, match="no CT series found"):
        convert_dicom_dir(REAL_DATA / "medseg-covid-2d-train", tmp_path / "out")
    row = _table(tmp_path / "out" / "series.tsv").iloc[0]
    assert row["qc_status"] == "skipped" and row["reason"].startswith("no DICOM image series")
