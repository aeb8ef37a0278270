import json

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import CORONAL, REAL_DATA, REAL_MISSING, ramp_volume, write_series
from pydicom.uid import RLELossless

from serialct.constants import HU_MIN_STORED
from serialct.dicom.convert import convert_dicom_dir, convert_series
from serialct.errors import InputError

needs_real = pytest.mark.skipif(not REAL_DATA.is_dir(), reason=REAL_MISSING)


def _read(path):
    image = sitk.ReadImage(str(path))
    return image, sitk.GetArrayFromImage(image)


def test_round_trip_hu_and_geometry_with_intercept(tmp_path):
    hu = ramp_volume((5, 8, 6))
    hu[0, 0, 0] = -3024  # below HU_MIN_STORED: clipped
    names = ["zz.dcm", "aa.dcm", "mm.dcm", "bb.dcm", "cc.dcm"]  # name order is not slice order
    files = write_series(
        tmp_path / "in",
        hu,
        names=names,
        intercept=-1024.0,
        step=2.5,
        origin=(-100.0, -50.0, 20.0),
        pixel_spacing=(0.8, 0.6),
    )
    assert pydicom.dcmread(files[0]).pixel_array.dtype == np.int16
    out = tmp_path / "out" / "ct.nii.gz"
    sidecar = convert_series(sorted(files), out, tmp_path / "out" / "ct.json")
    image, array = _read(out)
    assert image.GetPixelID() == sitk.sitkInt16
    expected = np.maximum(hu, HU_MIN_STORED)
    assert np.array_equal(array, expected)
    assert np.allclose(image.GetOrigin(), (-100.0, -50.0, 20.0))
    assert np.allclose(image.GetSpacing(), (0.6, 0.8, 2.5))  # x, y, z
    assert np.allclose(image.GetDirection(), np.eye(3).flatten())
    assert sidecar["qc_status"] == "ok" and sidecar["qc_messages"] == []
    assert sidecar["size"] == [5, 8, 6] and np.allclose(sidecar["spacing"], [2.5, 0.8, 0.6])
    assert sidecar["clipped_voxels"] == 1 and sidecar["n_slices"] == 5
    assert sidecar["patient_id"] == "P001" and sidecar["study_date"] == "2020-02-01"
    text = (tmp_path / "out" / "ct.json").read_text()
    assert json.loads(text) == sidecar
    assert "Doe" not in text and "1960" not in text


def test_unsigned_pixels_with_slope_and_padding_value(tmp_path):
    hu = ramp_volume((3, 4, 4)).astype(float)
    hu[:, 0, :] = 1000.0  # stored 1000/0.5 + 2048 = 4048: the padding value below
    files = write_series(tmp_path, hu, intercept=-1024.0, slope=0.5, dtype=np.uint16, padding=4048)
    sidecar = convert_series(files, tmp_path / "o.nii.gz", tmp_path / "o.json")
    _, array = _read(tmp_path / "o.nii.gz")
    assert (array[:, 0, :] == HU_MIN_STORED).all()
    assert np.array_equal(array[:, 1:, :], hu[:, 1:, :])
    assert sidecar["padding_voxels"] == 12


def test_rle_lossless_series_round_trip(tmp_path):
    hu = ramp_volume((3, 64, 64), seed=5)  # GDCM's RLE decoder needs more than a few columns
    files = write_series(tmp_path, hu)
    for path in files:
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless)
        ds.save_as(path)
    sidecar = convert_series(files, tmp_path / "o.nii.gz", tmp_path / "o.json")
    assert sidecar["transfer_syntax"] == RLELossless
    assert np.array_equal(_read(tmp_path / "o.nii.gz")[1], hu)


def test_oblique_geometry_matches_dicom_positions(tmp_path):
    files = write_series(
        tmp_path,
        ramp_volume((4, 5, 3)),
        orientation=CORONAL,
        step=3.0,
        origin=(1.0, 2.0, 3.0),
        pixel_spacing=(0.9, 0.7),
    )
    convert_series(files[::-1], tmp_path / "o.nii.gz", tmp_path / "o.json")
    image, _ = _read(tmp_path / "o.nii.gz")
    row, col = np.array(CORONAL[:3]), np.array(CORONAL[3:])
    for k, path in enumerate(files):
        ipp = np.array([float(v) for v in pydicom.dcmread(path).ImagePositionPatient])
        for i, j in [(0, 0), (2, 4)]:  # (column, row) index
            expected = ipp + i * 0.7 * row + j * 0.9 * col
            assert np.allclose(image.TransformIndexToPhysicalPoint((i, j, k)), expected, atol=1e-4)


def test_missing_slice_resampled_and_flagged(tmp_path):
    offsets = [0.0, 1.0, 2.0, 3.0, 5.0, 6.0]
    hu = (np.array(offsets)[:, None, None] * 20.0 - 500.0 + np.zeros((1, 4, 4))).astype(np.int16)
    files = write_series(tmp_path, hu, offsets=offsets)
    sidecar = convert_series(files, tmp_path / "o.nii.gz", tmp_path / "o.json")
    assert sidecar["qc_status"].startswith("warn: missing slices: 1 gap(s)")
    assert sidecar["resampled"] and sidecar["slice_spacing"]["gaps"] == 1
    image, array = _read(tmp_path / "o.nii.gz")
    assert array.shape == (7, 4, 4) and image.GetSpacing()[2] == pytest.approx(1.0)
    assert np.array_equal(array[:, 0, 0], np.arange(7) * 20 - 500)  # slice at 4 mm interpolated


def test_uneven_spacing_without_gap_flagged(tmp_path):
    offsets = [0.0, 1.0, 2.0, 3.3, 4.3, 5.3]
    hu = (np.array(offsets)[:, None, None] * 10.0 + np.zeros((1, 3, 3))).astype(np.int16)
    sidecar = convert_series(
        write_series(tmp_path, hu, offsets=offsets), tmp_path / "o.nii.gz", tmp_path / "o.json"
    )
    assert "uneven slice spacing" in sidecar["qc_status"] and sidecar["qc_status"].startswith(
        "warn"
    )
    image, array = _read(tmp_path / "o.nii.gz")
    step = image.GetSpacing()[2]
    assert step == pytest.approx(5.3 / 5) and array.shape[0] == 6
    assert np.allclose(array[:, 1, 1], np.arange(6) * step * 10.0, atol=1.01)


def test_synthetic_gantry_tilt_refused(tmp_path):
    c, s = np.cos(np.radians(15)), np.sin(np.radians(15))
    positions = [(0.0, 0.0, 2.0 * k) for k in range(4)]
    files = write_series(
        tmp_path,
        ramp_volume((4, 4, 4)),
        positions=positions,
        orientation=(1.0, 0.0, 0.0, 0.0, c, -s),
    )
    with pytest.raises(InputError, match=r"gantry tilt 15\.0 deg in .*IM0000\.dcm"):
        convert_series(files, tmp_path / "o.nii.gz", tmp_path / "o.json")
    assert not (tmp_path / "o.nii.gz").exists()


def test_convert_dicom_dir_all_ct_series_with_manifest(tmp_path):
    dicom = tmp_path / "dicom"
    write_series(dicom / "a", ramp_volume((4, 4, 4)), series_uid="1.7.1", series_number="2")
    write_series(
        dicom / "b",
        ramp_volume((3, 4, 4)),
        series_uid="1.7.2",
        series_number="3",
        step=5.0,
        thickness=5.0,
    )
    write_series(
        dicom / "loc",
        ramp_volume((1, 4, 4)),
        series_uid="1.7.3",
        series_number="1",
        image_type="ORIGINAL\\PRIMARY\\LOCALIZER",
        orientation=CORONAL,
    )
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    write_series(
        dicom / "tilt",
        ramp_volume((3, 4, 4)),
        series_uid="1.7.4",
        series_number="4",
        positions=[(0.0, 0.0, 2.0 * k) for k in range(3)],
        tilt=10.0,
        orientation=(1.0, 0.0, 0.0, 0.0, c, -s),
    )
    (dicom / "readme.txt").write_text("hello")
    table = convert_dicom_dir(dicom, tmp_path / "out")
    on_disk = pd.read_csv(
        tmp_path / "out" / "series.tsv", sep="\t", dtype=str, keep_default_na=False
    )
    assert on_disk["path"].tolist() == table["path"].tolist()
    assert table["series_number"].tolist() == ["1", "2", "3", "4"]
    assert table["path"].tolist() == ["", "P001_20200201_2.nii.gz", "P001_20200201_3.nii.gz", ""]
    assert table["qc_status"].tolist()[:3] == ["skipped", "ok", "ok"]
    assert table["qc_status"].iloc[3].startswith("error: gantry tilt 10.0 deg")
    assert table["chosen"].tolist() == [False, True, False, False]
    reasons = table["reason"].tolist()
    assert "LOCALIZER" in reasons[0] and reasons[1].startswith("chosen of 2 candidate(s)")
    assert reasons[2].startswith("not chosen: series 2 preferred (thinner slices")
    assert reasons[3] == "gantry tilt 10.0 deg: not supported"
    assert on_disk["reason"].tolist() == reasons
    assert (tmp_path / "out" / "P001_20200201_3.json").is_file()
    with pytest.raises(InputError, match="no CT series"):
        convert_dicom_dir(dicom / "loc", tmp_path / "out2")
    assert "LOCALIZER" in pd.read_csv(tmp_path / "out2" / "series.tsv", sep="\t")["reason"][0]


@needs_real
def test_real_ge_padding_clipped_and_slices_ordered_by_position(tmp_path):
    folder = REAL_DATA / "ge-3slice-lung-bases"
    files = sorted(folder.glob("*.dcm"))
    sidecar = convert_series(files, tmp_path / "ge.nii.gz", tmp_path / "ge.json")
    image, array = _read(tmp_path / "ge.nii.gz")
    assert array.shape == (3, 512, 512) and array.min() == HU_MIN_STORED
    ds = pydicom.dcmread(files[-1])  # 03.dcm is the lowest slice: first along +z
    assert np.allclose(image.GetOrigin(), [float(v) for v in ds.ImagePositionPatient])
    hu = ds.pixel_array.astype(int) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    assert (hu == -3024).sum() > 0  # padding present in the source
    assert np.array_equal(array[0], np.maximum(hu, HU_MIN_STORED))
    assert sidecar["padding_voxels"] == int(
        sum((pydicom.dcmread(f).pixel_array == -2000).sum() for f in files)
    )
    assert sidecar["qc_status"] == "ok" and sidecar["manufacturer"] == "GE MEDICAL SYSTEMS"
    assert np.allclose(image.GetSpacing(), (0.810547, 0.810547, 1.0), atol=1e-5)


@needs_real
def test_real_siemens_j2k_geometry_equals_reference(tmp_path):
    folder = REAL_DATA / "siemens-j2k-abdomen"
    files = sorted((folder / "dicom").iterdir())
    sidecar = convert_series(files, tmp_path / "j2k.nii.gz", tmp_path / "j2k.json")
    assert sidecar["transfer_syntax"] == "1.2.840.10008.1.2.4.90"
    image = sitk.DICOMOrient(sitk.ReadImage(str(tmp_path / "j2k.nii.gz")), "LPS")
    ref = sitk.DICOMOrient(sitk.ReadImage(str(folder / "reference_geometry.nii.gz")), "LPS")
    assert image.GetSize() == ref.GetSize() == (512, 512, 20)
    assert np.allclose(image.GetSpacing(), ref.GetSpacing(), atol=1e-4)
    assert np.allclose(image.GetOrigin(), ref.GetOrigin(), atol=1e-3)
    assert np.allclose(image.GetDirection(), ref.GetDirection(), atol=1e-6)
    array = sitk.GetArrayFromImage(image)
    assert array.min() == HU_MIN_STORED and 500 < array.max() < 3000  # decoded HU, not noise
    assert -100 < float(np.median(array[:, 156:356, 156:356])) < 150  # centre: soft tissue


@needs_real
def test_real_gantry_tilt_refused_with_clear_message(tmp_path):
    files = sorted((REAL_DATA / "ge-gantry-tilt-head").glob("*.dcm"))
    with pytest.raises(InputError, match=r"gantry tilt 18\.5 deg in .*01\.dcm: .*not supported"):
        convert_series(files, tmp_path / "t.nii.gz", tmp_path / "t.json")


@needs_real
def test_real_two_slice_series_converts_with_warning(tmp_path):
    files = sorted((REAL_DATA / "lungmask-chest-slices").glob("*.dcm"))
    sidecar = convert_series(files, tmp_path / "l.nii.gz", tmp_path / "l.json")
    assert sidecar["qc_status"] == "warn: only 2 slice(s), fewer than 3"
    image, array = _read(tmp_path / "l.nii.gz")
    assert array.shape == (2, 512, 512) and array.min() == HU_MIN_STORED  # -2048 clipped
    assert np.array_equal(array[0], array[1])
    assert np.allclose(image.GetSpacing(), (0.625, 0.625, 1.0))


def test_fast_writer_matches_simpleitk_nifti(tmp_path):
    import nibabel as nib

    from serialct.dicom.convert import write_nifti

    voxels = ramp_volume((5, 7, 9), seed=3)
    c, s = np.cos(0.3), np.sin(0.3)
    direction = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ np.array(
        [[1.0, 0.0, 0.0], [0.0, np.cos(0.2), -np.sin(0.2)], [0.0, np.sin(0.2), np.cos(0.2)]]
    )
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((-10.0, 20.0, 30.0))
    image.SetDirection(direction.flatten())
    sitk.WriteImage(image, str(tmp_path / "itk.nii.gz"), useCompression=True)
    write_nifti(
        voxels, (2.5, 0.8, 0.7), np.array([-10.0, 20.0, 30.0]), direction, tmp_path / "f.nii.gz"
    )
    ours, theirs = nib.load(tmp_path / "f.nii.gz"), nib.load(tmp_path / "itk.nii.gz")
    assert np.allclose(ours.affine, theirs.affine, atol=1e-5)
    assert np.array_equal(np.asarray(ours.dataobj), np.asarray(theirs.dataobj))
    back = sitk.ReadImage(str(tmp_path / "f.nii.gz"))
    assert np.allclose(back.GetDirection(), direction.flatten(), atol=1e-6)
    assert np.allclose(back.GetOrigin(), (-10.0, 20.0, 30.0))
    assert np.allclose(back.GetSpacing(), (0.7, 0.8, 2.5))
