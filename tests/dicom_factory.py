"""Small synthetic DICOM CT series for the tests (pydicom, explicit VR little endian)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def _ds(v: float) -> str:
    return f"{v:.6f}"


def write_slice(
    path: Path,
    raw: np.ndarray,
    *,
    position: Sequence[float],
    orientation: Sequence[float] = AXIAL,
    pixel_spacing: Sequence[float] = (0.7, 0.7),
    patient_id: str = "P001",
    study_uid: str = "1.2.3.4",
    series_uid: str = "1.2.3.4.5",
    series_number: str = "2",
    description: str = "Lung 1.0",
    study_date: str = "20200201",
    study_time: str = "101010",
    modality: str = "CT",
    image_type: str = "ORIGINAL\\PRIMARY\\AXIAL",
    sop_class: str = CT_IMAGE_STORAGE,
    thickness: float = 1.0,
    intercept: float = -1024.0,
    slope: float = 1.0,
    instance_number: int = 1,
    padding: int | None = None,
    tilt: float | None = None,
    extra: dict[str, object] | None = None,
) -> Path:
    """Write one slice with stored values ``raw`` (int16 or uint16, rows x columns).

    ``extra`` sets further tags by keyword (e.g. AcquisitionNumber, InstitutionName).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.PatientName = "Doe^Jane"  # identifying: must never reach the outputs
    ds.PatientBirthDate = "19600101"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.Modality = modality
    ds.ImageType = image_type.split("\\")
    ds.Manufacturer = "SYNTH"
    ds.ConvolutionKernel = "LUNG"
    ds.SliceThickness = _ds(thickness)
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.ImageOrientationPatient = [_ds(v) for v in orientation]
    ds.PixelSpacing = [_ds(v) for v in pixel_spacing]
    ds.InstanceNumber = str(instance_number)
    ds.RescaleIntercept = _ds(intercept)
    ds.RescaleSlope = _ds(slope)
    if tilt is not None:
        ds.GantryDetectorTilt = _ds(tilt)
    unsigned = raw.dtype == np.uint16
    ds.Rows, ds.Columns = raw.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0 if unsigned else 1
    if padding is not None:
        ds.add_new(0x00280120, "US" if unsigned else "SS", padding)  # PixelPaddingValue
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(raw).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(
    folder: Path,
    hu: np.ndarray,
    *,
    origin: Sequence[float] = (-10.0, -20.0, -30.0),
    step: float = 1.5,
    offsets: Sequence[float] | None = None,
    positions: Sequence[Sequence[float]] | None = None,
    orientation: Sequence[float] = AXIAL,
    intercept: float = -1024.0,
    slope: float = 1.0,
    dtype: type = np.int16,
    names: Sequence[str] | None = None,
    **tags: object,
) -> list[Path]:
    """Write a (z, y, x) HU volume as one slice per file; returns the paths (slice order).

    Slice k lies at ``origin + offsets[k] * normal`` (default offsets ``k * step``), or at
    ``positions[k]`` when given. InstanceNumber runs backwards, so sorting by it would fail.
    """
    normal = np.cross(orientation[:3], orientation[3:6])
    n = hu.shape[0]
    if positions is None:
        offs = np.arange(n) * step if offsets is None else np.asarray(offsets, float)
        positions = [np.asarray(origin, float) + o * normal for o in offs]
    names = names or [f"IM{k:04d}.dcm" for k in range(n)]
    paths = []
    for k in range(n):
        raw = np.rint((hu[k] - intercept) / slope).astype(dtype)
        paths.append(
            write_slice(
                Path(folder) / names[k],
                raw,
                position=positions[k],
                orientation=orientation,
                intercept=intercept,
                slope=slope,
                instance_number=n - k,
                **tags,
            )
        )
    return paths


def ramp_volume(shape: tuple[int, int, int] = (5, 8, 6), seed: int = 0) -> np.ndarray:
    """A small HU volume with distinct values per voxel (-1000 .. about 1000)."""
    rng = np.random.default_rng(seed)
    return rng.integers(-1000, 1000, size=shape).astype(np.int16)


REAL_DATA = Path(__file__).parents[1] / ".." / "shared" / "data" / "real"
REAL_MISSING = f"real DICOM samples not found at {REAL_DATA} (shared data folder absent)"


def add_patient(cohort: Path, source: str, new: str) -> int:
    """Copy one patient's DICOM series and sheet rows under a new PatientID and new UIDs."""
    import pandas as pd
    import pydicom

    uids: dict[str, str] = {}
    studies = set()
    target = cohort / "dicom" / f"new-{new}"
    target.mkdir()
    for i, path in enumerate(sorted((cohort / "dicom").rglob("*.dcm"))):
        ds = pydicom.dcmread(path)
        if ds.PatientID != source:
            continue
        ds.PatientID = ds.PatientName = new
        for tag in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            old = str(getattr(ds, tag))
            uids.setdefault(old, generate_uid())
            setattr(ds, tag, uids[old])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        studies.add(ds.StudyInstanceUID)
        ds.save_as(target / f"{i:05d}.dcm")
    for sheet in ("clinical.tsv", "readings.tsv"):
        table = pd.read_csv(cohort / sheet, sep="\t", dtype=str)
        rows = table[table["patient_id"] == source].assign(patient_id=new)
        pd.concat([table, rows]).to_csv(cohort / sheet, sep="\t", index=False)
    return len(studies)
