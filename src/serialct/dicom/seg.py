"""DICOM Segmentation (highdicom) of one scan's lungs, lobes and lesions, on its source series.

Each segment is one label of the scan's NIfTI masks (contract: ``lung.nii.gz`` 1 right 2 left,
``lobes.nii.gz`` 1 RUL .. 5 LLL, ``lesion.nii.gz`` 1 GGO 2 consolidation 3 other lesion),
sampled by nearest neighbour at the physical centre of every pixel of every source frame, so
the SEG's frames lie exactly on the source images whatever order, orientation or reorientation
the NIfTI has. Segments are BINARY (they overlap: a lobe lies inside its lung) and a segment with
no voxel is left out.

Codes: lungs and lobes as TotalSegmentator's and IDC's lung SEGs code them (SNOMED CT "Lung",
"Upper lobe of lung", "Lower lobe of lung" with laterality Right / Left, "Middle lobe of right
lung"; category "Anatomical Structure"); GGO as DICOM's "Ground glass opacity" (DCM 112120,
CID 6102), consolidation as SNOMED CT 95436008 "Lung consolidation", other lesion as
"Lesion"; category "Morphologically Abnormal Structure".
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Final

import highdicom as hd
import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from serialct.constants import (
    LESION_CONSOLIDATION,
    LESION_GGO,
    LESION_OTHER,
    LOBE_LABELS,
    LUNG_LEFT,
    LUNG_RIGHT,
)
from serialct.dicom import multiframe
from serialct.errors import InputError

ANATOMY: Final = codes.SCT.AnatomicalStructure
ABNORMAL: Final = codes.SCT.MorphologicallyAbnormalStructure
LUNG: Final = codes.SCT.Lung
UPPER_LOBE: Final = hd.sr.CodedConcept("45653009", "SCT", "Upper lobe of lung")
MIDDLE_LOBE: Final = codes.SCT.MiddleLobeOfRightLung
LOWER_LOBE: Final = hd.sr.CodedConcept("90572001", "SCT", "Lower lobe of lung")
RIGHT: Final = hd.sr.CodedConcept("24028007", "SCT", "Right")
LEFT: Final = hd.sr.CodedConcept("7771000", "SCT", "Left")
GGO: Final = codes.cid6102.GroundGlassOpacity
CONSOLIDATION: Final = hd.sr.CodedConcept("95436008", "SCT", "Lung consolidation")
LESION: Final = codes.SCT.Lesion
SERIES_NUMBER: Final = 9001  # SEG series number (SR: 9002); high, apart from the scanner's
SERIES_DESCRIPTION: Final = "serialct lungs, lobes, lesions"
REQUIRED_UIDS: Final = (  # what a SEG must reference in its source images
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
)  # fmt: skip
PSEUDONYMISED_KEEP: Final = (  # source attributes a pseudonymised SEG takes: UIDs and geometry
    *REQUIRED_UIDS, "SOPClassUID", "SpecificCharacterSet", "Modality", "StudyDate", "StudyTime",
    "StudyID", "Rows", "Columns", "NumberOfFrames", "PixelSpacing", "ImagePositionPatient",
    "ImageOrientationPatient", "SliceThickness", "SpacingBetweenSlices", "ImageType",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
    "DimensionOrganizationSequence", "DimensionIndexSequence",
)  # fmt: skip
TYPE_2_COPIED: Final = (  # patient and study attributes a SEG copies from its source (type 2)
    "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
    "StudyDate", "StudyTime", "ReferringPhysicianName",
)  # fmt: skip


@dataclass(frozen=True)
class Segment:
    """One segment: which mask (``lung``, ``lobes``, ``lesion``), its label there, its codes."""

    mask: str
    label: int
    name: str
    category: hd.sr.CodedConcept
    kind: hd.sr.CodedConcept
    laterality: hd.sr.CodedConcept | None = None


SEGMENTS: Final = (
    Segment("lung", LUNG_RIGHT, "Right lung", ANATOMY, LUNG, RIGHT),
    Segment("lung", LUNG_LEFT, "Left lung", ANATOMY, LUNG, LEFT),
    Segment("lobes", LOBE_LABELS["rul"], "Right upper lobe", ANATOMY, UPPER_LOBE, RIGHT),
    Segment("lobes", LOBE_LABELS["rml"], "Right middle lobe", ANATOMY, MIDDLE_LOBE),
    Segment("lobes", LOBE_LABELS["rll"], "Right lower lobe", ANATOMY, LOWER_LOBE, RIGHT),
    Segment("lobes", LOBE_LABELS["lul"], "Left upper lobe", ANATOMY, UPPER_LOBE, LEFT),
    Segment("lobes", LOBE_LABELS["lll"], "Left lower lobe", ANATOMY, LOWER_LOBE, LEFT),
    Segment("lesion", LESION_GGO, "Ground-glass opacity", ABNORMAL, GGO),
    Segment("lesion", LESION_CONSOLIDATION, "Consolidation", ABNORMAL, CONSOLIDATION),
    Segment("lesion", LESION_OTHER, "Other lesion", ABNORMAL, LESION),
)


@dataclass(frozen=True)
class Frame:
    """A source frame's geometry: first pixel's centre, row and column directions, spacing."""

    position: np.ndarray  # mm, patient (LPS)
    row_dir: np.ndarray  # direction of increasing column index
    col_dir: np.ndarray  # direction of increasing row index
    spacing: tuple[float, float]  # (between rows, between columns), mm
    shape: tuple[int, int]  # (rows, columns)


def frames_of(ds: Dataset) -> list[Frame]:
    """Geometry of every frame of one source image (single- or multi-frame: the per-frame or
    shared functional groups, :func:`serialct.dicom.multiframe.frame_tags`)."""
    per_frame = multiframe.frame_tags(ds) or [
        {tag: multiframe.tag_text(ds.get(tag)) for tag in multiframe.GEOMETRY_TAGS}
    ]
    found = []
    for tags in per_frame:
        missing = [tag for tag in multiframe.GEOMETRY_TAGS if not tags[tag]]
        if missing:
            raise InputError(
                f"{ds.filename}: no {missing[0]}; the scan cannot be exported as DICOM-SEG"
            )
        position, orientation, spacing = (
            [float(v) for v in tags[tag].split("\\")] for tag in multiframe.GEOMETRY_TAGS
        )
        found.append(
            Frame(
                np.asarray(position, float),
                np.asarray(orientation[:3], float),
                np.asarray(orientation[3:6], float),
                (spacing[0], spacing[1]),
                (int(ds.Rows), int(ds.Columns)),
            )
        )
    return found


def frame_voxels(image: sitk.Image, frame: Frame) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """For each pixel centre of ``frame``: the nearest voxel of ``image`` as (z, y, x) index
    arrays of the pixels inside it, and the (rows, cols) mask of those pixels."""
    origin = np.asarray(image.GetOrigin(), float)
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    to_index = np.linalg.inv(direction * np.asarray(image.GetSpacing(), float))
    # the map is affine: index(r, c) = first + c * along_row + r * along_column
    first = to_index @ (frame.position - origin)
    along_row = to_index @ (frame.spacing[1] * frame.row_dir)
    along_column = to_index @ (frame.spacing[0] * frame.col_dir)
    rows, cols = frame.shape
    r = np.arange(rows, dtype=float)[:, None]
    c = np.arange(cols, dtype=float)[None, :]
    index = [np.rint(first[k] + c * along_row[k] + r * along_column[k]).astype(np.int64)
             for k in range(3)]  # fmt: skip
    inside = np.ones((rows, cols), dtype=bool)
    for k, size in enumerate(image.GetSize()):
        inside &= (index[k] >= 0) & (index[k] < size)
    return (index[2][inside], index[1][inside], index[0][inside]), inside


def sample_frame(
    labels: np.ndarray, voxels: tuple[np.ndarray, ...], inside: np.ndarray
) -> np.ndarray:
    """``labels`` (z, y, x) at a frame's pixels (:func:`frame_voxels`); 0 outside the image."""
    out = np.zeros(inside.shape, dtype=labels.dtype)
    out[inside] = labels[voxels]
    return out


def _identified(ds: Dataset, patient_id: str, pseudonymised: bool) -> Dataset:
    """A copy of a source header carrying the scan's patient identity (see ``build``)."""
    if pseudonymised:  # only what the SEG needs: nothing else of the patient or study is copied
        kept = Dataset()
        for keyword in PSEUDONYMISED_KEEP:
            if keyword in ds:
                setattr(kept, keyword, copy.deepcopy(ds[keyword].value))
        ds = kept
    else:
        ds = copy.deepcopy(ds)
    for keyword in TYPE_2_COPIED:  # copied into the SEG, where they must be present
        if keyword not in ds:
            setattr(ds, keyword, "")
    for keyword in ("ReferencedStudySequence", "ReferencedPerformedProcedureStepSequence"):
        # copied into the SEG; an item without its class UID (seen in real exports) is invalid
        if any("ReferencedSOPClassUID" not in item for item in ds.get(keyword, [])):
            del ds[keyword]
    ds.PatientID = patient_id
    if pseudonymised:
        ds.PatientName = f"{patient_id}^"  # (a one-component person name)
    return ds


def tracking_uid(patient_id: str, segment: str) -> str:
    """The same UID for the same structure of the same patient in every scan (serial scans)."""
    return generate_uid(entropy_srcs=["serialct", patient_id, segment])


def build(
    sources: list[Dataset],
    masks: dict[str, sitk.Image],
    patient_id: str,
    pseudonymised: bool,
    software_version: str,
) -> hd.seg.Segmentation:
    """The scan's SEG. ``sources``: the series' headers (pixel data not needed); ``masks``:
    ``lung``, ``lobes`` and ``lesion`` label images on one grid. The SEG's PatientID is the
    scan's ``patient_id``. When ``pseudonymised`` (the pseudonym) it takes from the source only
    UIDs, dates and geometry (PSEUDONYMISED_KEEP): no name, birth date, accession number,
    physician, description or comment; the study, series and instance UIDs stay the source's, as
    a SEG must reference its images, so the file is pseudonymised, not anonymous."""
    for ds in sources:
        for keyword in REQUIRED_UIDS:
            if not str(ds.get(keyword, "")).strip():
                raise InputError(
                    f"{ds.filename}: blank {keyword}; a DICOM-SEG cannot reference this series "
                    "(set dicom_export: false, or give the series UIDs)"
                )
    grid = masks["lung"]  # (the masks share its grid: serialct.steps.export_dicom checks)
    arrays = {key: sitk.GetArrayViewFromImage(image) for key, image in masks.items()}
    per_frame: dict[str, list[np.ndarray]] = {key: [] for key in arrays}
    for frame in (f for ds in sources for f in frames_of(ds)):
        voxels, inside = frame_voxels(grid, frame)
        for key, labels in arrays.items():
            per_frame[key].append(sample_frame(labels, voxels, inside))
    sampled = {key: np.stack(frames) for key, frames in per_frame.items()}
    algorithm = hd.AlgorithmIdentificationSequence(
        name="serialct", version=software_version, family=codes.cid7162.ArtificialIntelligence
    )
    kept = [s for s in SEGMENTS if (sampled[s.mask] == s.label).any()]
    if not kept:
        raise InputError(f"{sources[0].filename}: no lung voxel on the source frames")
    descriptions = []
    for number, s in enumerate(kept, start=1):
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=s.name,
            segmented_property_category=s.category,
            segmented_property_type=copy.deepcopy(s.kind),  # (gets a modifier below)
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_id=s.name,
            tracking_uid=tracking_uid(patient_id, s.name),
        )
        if s.laterality is not None:  # (nested in the type's item; no highdicom argument)
            kind = description.SegmentedPropertyTypeCodeSequence[0]
            kind.SegmentedPropertyTypeModifierCodeSequence = [s.laterality]
        descriptions.append(description)
    pixels = np.stack([sampled[s.mask] == s.label for s in kept], axis=-1)
    try:
        return hd.seg.Segmentation(
            source_images=[_identified(ds, patient_id, pseudonymised) for ds in sources],
            pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="serialct",
            manufacturer_model_name="serialct",
            software_versions=software_version,
            device_serial_number="none",
            series_description=SERIES_DESCRIPTION,
        )
    except ValueError as exc:  # highdicom refuses the source headers
        raise InputError(f"{sources[0].filename}: no DICOM-SEG on this series: {exc}") from exc
