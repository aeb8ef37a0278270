"""Multi-frame CT (Enhanced, Legacy Converted Enhanced): a classic series converted to one file
must give the NIfTI the classic series gives, and what cannot be one volume is refused."""

import json
import re

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import ramp_volume, write_series
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless, RLELossless, generate_uid

from serialct.dicom.convert import convert_dicom_dir, convert_series
from serialct.dicom.headers import read_headers
from serialct.dicom.index import write_index
from serialct.dicom.series import list_series
from serialct.errors import InputError
from serialct.steps import convert_scan

ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_CONVERTED_CT = "1.2.840.10008.5.1.4.1.1.2.2"
IN_STACK_POSITION_NUMBER = 0x00209057
FRAME_CONTENT_SEQUENCE = 0x00209111
TOP_LEVEL = (
    "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime", "Modality", "Manufacturer",
    "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation",
)  # fmt: skip


def _item(**tags: object) -> Sequence:
    item = Dataset()
    for keyword, value in tags.items():
        setattr(item, keyword, value)
    return Sequence([item])


def to_enhanced(
    classic: list,
    path,
    *,
    sop_class: str = ENHANCED_CT,
    series_number: str = "2",
    seed: int = 1,
    frame_rescale: bool = True,
    edit=None,
):
    """One multi-frame file from classic slices, its frames in shuffled order.

    Orientation, spacing and kernel go to the shared functional groups, each frame's position
    to its own; with ``frame_rescale`` every frame gets its own RescaleIntercept (its stored
    values shifted to match), else the classic rescale is shared. ``edit(ds)`` changes the
    dataset before it is saved.
    """
    slices = [pydicom.dcmread(p) for p in classic]
    order = np.random.default_rng(seed).permutation(len(slices))
    first = slices[0]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = first.file_meta.TransferSyntaxUID
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    for keyword in TOP_LEVEL:
        setattr(ds, keyword, getattr(first, keyword))
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID, ds.SeriesNumber = generate_uid(), series_number
    ds.SeriesDescription = "Lung 1.0 enhanced"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.InstanceNumber = "1"
    ds.NumberOfFrames = str(len(slices))
    organization = generate_uid()
    ds.DimensionOrganizationSequence = _item(DimensionOrganizationUID=organization)
    ds.DimensionIndexSequence = _item(
        DimensionOrganizationUID=organization, DimensionIndexPointer=IN_STACK_POSITION_NUMBER,
        FunctionalGroupPointer=FRAME_CONTENT_SEQUENCE,
    )  # fmt: skip
    shared = Dataset()
    shared.PixelMeasuresSequence = _item(
        PixelSpacing=first.PixelSpacing, SliceThickness=first.SliceThickness
    )
    shared.PlaneOrientationSequence = _item(ImageOrientationPatient=first.ImageOrientationPatient)
    shared.CTReconstructionSequence = _item(ConvolutionKernel=first.ConvolutionKernel)
    if not frame_rescale:
        shared.PixelValueTransformationSequence = _item(
            RescaleIntercept=first.RescaleIntercept, RescaleSlope=first.RescaleSlope,
            RescaleType="HU",
        )  # fmt: skip
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames, pixels = [], []
    in_stack = {int(k): n + 1 for n, k in enumerate(np.argsort(order))}
    for k in order:
        src = slices[k]
        hu = src.pixel_array * float(src.RescaleSlope) + float(src.RescaleIntercept)
        intercept = float(src.RescaleIntercept) - (10.0 * int(k) if frame_rescale else 0.0)
        pixels.append(np.rint((hu - intercept) / float(src.RescaleSlope)).astype(np.int16))
        frame = Dataset()
        frame.FrameContentSequence = _item(
            StackID="1", InStackPositionNumber=in_stack[int(k)],
            DimensionIndexValues=in_stack[int(k)],
        )  # fmt: skip
        frame.PlanePositionSequence = _item(ImagePositionPatient=src.ImagePositionPatient)
        if frame_rescale:
            frame.PixelValueTransformationSequence = _item(
                RescaleIntercept=f"{intercept:.6f}", RescaleSlope=src.RescaleSlope,
                RescaleType="HU",
            )  # fmt: skip
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.ascontiguousarray(np.stack(pixels)).tobytes()
    if edit is not None:
        edit(ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _classic(folder, **tags):
    hu = ramp_volume((6, 8, 10), seed=3)
    return write_series(
        folder, hu, origin=(-12.5, 30.25, -101.0), step=1.5, pixel_spacing=(0.7, 0.7),
        intercept=-1024.0, thickness=1.5, series_number="3", **tags,
    )  # fmt: skip


def _same_image(a, b):
    ia, ib = sitk.ReadImage(str(a)), sitk.ReadImage(str(b))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ia), sitk.GetArrayFromImage(ib))
    assert ia.GetSpacing() == ib.GetSpacing()
    assert ia.GetOrigin() == ib.GetOrigin()
    assert ia.GetDirection() == ib.GetDirection()
    assert ia.GetPixelID() == ib.GetPixelID() == sitk.sitkInt16


@pytest.mark.parametrize(
    ("sop_class", "frame_rescale", "compress"),
    [(ENHANCED_CT, True, False), (LEGACY_CONVERTED_CT, False, True)],
    ids=["enhanced-per-frame-rescale", "legacy-converted-rle"],
)
def test_enhanced_file_converts_like_its_classic_series(tmp_path, sop_class, frame_rescale,
                                                        compress):  # fmt: skip
    dicom = tmp_path / "dicom"
    classic = _classic(dicom / "classic")

    def rle(ds):
        if compress:
            ds.compress(RLELossless)

    enhanced = to_enhanced(
        classic, dicom / "enhanced" / "ct.dcm", sop_class=sop_class, frame_rescale=frame_rescale,
        edit=rle,
    )  # fmt: skip
    headers = read_headers(dicom)
    row = headers[headers["path"] == str(enhanced)].iloc[0]
    assert row["FrameCount"] == "6" and row["FrameReason"] == ""
    assert row["ImagePositionPatient"] == "-12.500000\\30.250000\\-101.000000"  # lowest frame
    assert row["PixelSpacing"] == "0.700000\\0.700000" and row["ConvolutionKernel"] == "LUNG"

    table = convert_dicom_dir(dicom, tmp_path / "out").set_index("series_number")
    assert table.loc["2", "qc_status"] == table.loc["3", "qc_status"] == "ok"
    assert table.loc["2", "n_files"] == table.loc["3", "n_files"] == 6
    out = tmp_path / "out"
    _same_image(out / table.loc["2", "path"], out / table.loc["3", "path"])
    sidecar = json.loads((out / table.loc["2", "sidecar"]).read_text())
    assert sidecar["n_slices"] == 6 and sidecar["spacing"] == [1.5, 0.7, 0.7]

    # the workflow's path: the index sees the same coverage, thickness and slices in both, so
    # the lower series number (the enhanced one) decides; its manifest converts the same
    scans = write_index(dicom, "C1", tmp_path / "C1.tsv", tmp_path / "manifests")
    assert len(scans) == 1 and scans.at[0, "files"] == [str(enhanced)]
    series = pd.read_csv(tmp_path / "C1.series.tsv", sep="\t", dtype=str).set_index("series_number")
    assert series.loc["2", "chosen"] == "True" and series.loc["2", "n_files"] == "6"
    assert series.loc["2", "coverage_mm"] == series.loc["3", "coverage_mm"]
    assert "(lower series number;" in series.loc["3", "reason"]
    manifest = tmp_path / "manifests" / "P001" / "20200201.json"
    convert_scan(manifest, tmp_path / "scan.nii.gz", tmp_path / "scan.json")
    _same_image(tmp_path / "scan.nii.gz", out / table.loc["3", "path"])


def _repeat_a_position(ds):
    frames = ds.PerFrameFunctionalGroupsSequence
    frames[1].PlanePositionSequence = frames[0].PlanePositionSequence


def _tilt_one_frame(ds):
    ds.PerFrameFunctionalGroupsSequence[2].PlaneOrientationSequence = _item(
        ImageOrientationPatient=["1", "0", "0", "0", "0.9", "-0.43589"]
    )


def _undecodable(ds):
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51 not a codestream"] * 6)


@pytest.mark.parametrize(
    ("edit", "listed", "raised"),
    [
        (_repeat_a_position, r"repeated frame positions \(6 frames at 5 positions", None),
        (_tilt_one_frame, "frames of 2 orientations in one multi-frame file", None),
        (_undecodable, "", r"ct\.dcm: multi-frame pixel data cannot be decoded \(JPEG 2000"),
    ],
    ids=["two-phases", "two-orientations", "undecodable"],
)
def test_unsupported_multiframe_is_refused_with_a_reason(tmp_path, edit, listed, raised):
    classic = _classic(tmp_path / "classic")
    enhanced = to_enhanced(classic, tmp_path / "dicom" / "ct.dcm", edit=edit)
    series = list_series(read_headers(tmp_path / "dicom"))
    assert len(series) == 1
    if listed:
        assert re.search(listed, series.at[0, "skip_reason"])
    else:
        assert series.at[0, "skip_reason"] == ""
    with pytest.raises(InputError, match=raised or listed):
        convert_series([enhanced], tmp_path / "ct.nii.gz", tmp_path / "ct.json")
    assert not (tmp_path / "ct.nii.gz").exists()


def test_enhanced_file_mixed_into_a_series_is_refused(tmp_path):
    classic = _classic(tmp_path / "dicom" / "classic")
    second = to_enhanced(classic, tmp_path / "dicom" / "b.dcm")
    ds = pydicom.dcmread(second)
    to_enhanced(
        classic, tmp_path / "dicom" / "a.dcm",
        edit=lambda new: setattr(new, "SeriesInstanceUID", ds.SeriesInstanceUID),
    )  # fmt: skip
    series = list_series(read_headers(tmp_path / "dicom")).set_index("series_number")
    assert series.loc["2", "skip_reason"].startswith("multi-frame (enhanced) CT split over 2 files")
    assert series.loc["3", "skip_reason"] == ""
    with pytest.raises(InputError, match="only a series in one multi-frame file is supported"):
        convert_series(
            [tmp_path / "dicom" / "a.dcm", second], tmp_path / "ct.nii.gz", tmp_path / "ct.json"
        )
