"""Read a scan's ``seg.dcm`` back and compare every segment, voxel for voxel, with the NIfTI
label it came from: highdicom's own geometry of both (the SEG's frames and the NIfTI's affine),
so the check does not reuse the export's sampling (:func:`serialct.dicom.seg.sample_frame`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import SimpleITK as sitk

from serialct.dicom.seg import SEGMENTS


@dataclass(frozen=True)
class SegmentCheck:
    label: str
    seg_voxels: int  # voxels of the segment in the SEG
    nifti_voxels: int  # voxels of that label in the NIfTI mask
    mismatched: int  # SEG voxels whose NIfTI voxel has another label (or lies outside)

    @property
    def exact(self) -> bool:
        return self.mismatched == 0 and self.seg_voxels == self.nifti_voxels


def check_seg(seg_path: Path, scan_dir: Path) -> list[SegmentCheck]:
    """One check per segment of ``seg_path`` against ``scan_dir``'s lung/lobes/lesion NIfTI."""
    seg = hd.seg.segread(seg_path)
    by_name = {s.name: s for s in SEGMENTS}
    masks: dict[str, tuple[np.ndarray, hd.Volume]] = {}
    checks = []
    for item in seg.SegmentSequence:
        segment = by_name[item.SegmentLabel]
        if segment.mask not in masks:
            image = sitk.ReadImage(str(Path(scan_dir) / f"{segment.mask}.nii.gz"))
            masks[segment.mask] = (sitk.GetArrayFromImage(image), hd.Volume.from_simpleitk(image))
        labels, nifti = masks[segment.mask]
        volume = seg.get_volume(segment_numbers=[int(item.SegmentNumber)])
        on = np.argwhere(volume.array[..., 0] > 0)
        index = nifti.map_reference_to_indices(
            volume.map_indices_to_reference(on), round_output=True
        )
        inside = np.all((index >= 0) & (index < np.asarray(nifti.spatial_shape)), axis=1)
        # hd.Volume.from_simpleitk orders the NIfTI's axes (x, y, z); its array is labels.T
        hits = labels.T[tuple(index[inside].T)] == segment.label
        checks.append(
            SegmentCheck(
                item.SegmentLabel,
                len(on),
                int((labels == segment.label).sum()),
                int((~inside).sum() + (~hits).sum()),
            )
        )
    return checks
