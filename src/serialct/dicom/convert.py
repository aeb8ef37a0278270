"""Convert a DICOM CT series to a NIfTI in HU (int16) with a JSON sidecar of QC findings.

Slices are sorted by position along the slice normal; the geometry (origin, direction, spacing)
is built from the headers, never from file names or InstanceNumber. Gantry-tilted series are
refused; uneven spacing or missing slices are resampled to a uniform step and flagged.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import nibabel as nib
import numpy as np
import pandas as pd
import SimpleITK as sitk
from isal import igzip_threaded
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from serialct.constants import HU_MIN_STORED
from serialct.dicom import geometry, multiframe
from serialct.dicom.headers import TRANSFER_SYNTAX, read_dataset, read_headers
from serialct.dicom.series import describe, iso_date, list_series, parse_numbers
from serialct.errors import InputError

logger = logging.getLogger("serialct")

HU_MAX_STORED: Final = int(np.iinfo(np.int16).max)
MIN_SLICES: Final = 3  # fewer slices still convert, with a warning
QC_OK: Final = "ok"
QC_WARN: Final = "warn"
QC_ERROR: Final = "error"
SAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]")
SERIES_TSV: Final = "series.tsv"
SERIES_TSV_COLUMNS: Final = (
    "patient_id",
    "scan_id",
    "study_date",
    "series_uid",
    "series_number",
    "series_description",
    "n_files",
    "path",
    "sidecar",
    "qc_status",
    "acquisition",
    "chosen",
    "reason",
)
QC_SKIPPED: Final = "skipped"


def _numbers(header: dict[str, str], tag: str, path: str) -> tuple[float, ...]:
    try:
        return parse_numbers(header[tag])
    except ValueError as exc:
        raise InputError(f"{path}: tag {tag} is not numeric: {header[tag]!r}") from exc


def _number(header: dict[str, str], tag: str, path: str, default: float) -> float:
    values = _numbers(header, tag, path)
    return values[0] if values else default


NATIVE_SYNTAXES: Final = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})
GZIP_LEVEL: Final = 1  # ISA-L deflate level (0-3): 1 is about as small as zlib 6, far faster
GZIP_THREADS: Final = 2
NIFTI_CODE_SCANNER: Final = 1
LPS_TO_RAS: Final = np.diag([-1.0, -1.0, 1.0])
NIFTI_VOX_OFFSET: Final = 352
NIFTI_NO_EXTENSION: Final = b"\0\0\0\0"


def _slice_hu(path: str, header: dict[str, str], ds: Dataset | np.ndarray) -> np.ndarray:
    """One file's pixels in HU (float32, y x), its own rescale applied; raises on any failure.

    Uncompressed files are decoded by pydicom (fast), compressed ones by GDCM (SimpleITK); a
    frame of a multi-frame file comes decoded (``ds`` is its stored pixels).
    """
    if isinstance(ds, np.ndarray) or header[TRANSFER_SYNTAX] in NATIVE_SYNTAXES:
        stored = ds if isinstance(ds, np.ndarray) else ds.pixel_array
        if stored.ndim != 2:
            raise ValueError(f"expected one frame of rows x columns, got shape {stored.shape}")
        slope = _number(header, "RescaleSlope", path, 1.0)
        intercept = _number(header, "RescaleIntercept", path, 0.0)
        hu = stored.astype(np.float32)
        if slope != 1.0:
            hu *= np.float32(slope)
        hu += np.float32(intercept)
        return hu
    image = sitk.ReadImage(path, sitk.sitkFloat32)  # GDCM applies slope and intercept
    array = sitk.GetArrayFromImage(image)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"expected one frame of rows x columns, got shape {array.shape}")
    return array


@dataclass
class _Volume:
    voxels: np.ndarray  # int16 (z, y, x), HU clipped to [HU_MIN_STORED, HU_MAX_STORED]
    padding: int  # voxels that held the PixelPaddingValue
    clipped: int  # voxels outside the int16 HU range before clipping
    failed: list[int]  # positions (in the given order) whose pixel data was unreadable


def _read_volume(
    files: list[str],
    headers: list[dict[str, str]],
    datasets: list[Dataset | np.ndarray],
    stream: NiftiStream | None = None,
) -> _Volume:
    """Pixels of the sorted files in HU, slice by slice (padding set to HU_MIN_STORED).

    Each slice also goes to ``stream`` until one file fails (the caller then aborts it).
    """
    shape = (len(files), int(headers[0]["Rows"]), int(headers[0]["Columns"]))
    voxels = np.empty(shape, np.int16)
    padding = clipped = 0
    failed: list[int] = []
    for k, (path, header, ds) in enumerate(zip(files, headers, datasets, strict=True)):
        try:
            hu = _slice_hu(path, header, ds)
        except Exception as exc:  # noqa: BLE001  any decoder failure: the file is skipped
            logger.warning("%s: pixel data unreadable, file skipped (%s)", path, exc)
            failed.append(k)
            stream = None
            continue
        if hu.shape != shape[1:]:
            raise InputError(f"{path}: slice of {hu.shape} pixels in a series of {shape[1:]}")
        pad = _numbers(header, "PixelPaddingValue", path)
        if pad:
            slope = _number(header, "RescaleSlope", path, 1.0)
            intercept = _number(header, "RescaleIntercept", path, 0.0)
            mask = np.abs(hu - np.float32(pad[0] * slope + intercept)) < 0.5 * abs(slope)
            padding += int(np.count_nonzero(mask))
            hu[mask] = HU_MIN_STORED
        np.rint(hu, out=hu)
        low, high = hu < HU_MIN_STORED, hu > HU_MAX_STORED
        clipped += int(np.count_nonzero(low)) + int(np.count_nonzero(high))
        np.clip(hu, HU_MIN_STORED, HU_MAX_STORED, out=hu)
        voxels[k] = hu
        if stream is not None:
            stream.write(voxels[k])
    if failed:
        voxels = np.delete(voxels, failed, axis=0)
    return _Volume(voxels, padding, clipped, failed)


def _nifti_header(
    shape_zyx: tuple[int, int, int],
    spacing_zyx: tuple[float, float, float],
    origin_lps: np.ndarray,
    direction: np.ndarray,
) -> bytes:
    """NIfTI-1 header (352 bytes with the empty extension flag) of an int16 volume."""
    dz, dy, dx = spacing_zyx
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ np.asarray(direction, float) @ np.diag([dx, dy, dz])
    affine[:3, 3] = LPS_TO_RAS @ np.asarray(origin_lps, float)
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape(tuple(shape_zyx)[::-1])
    header.set_qform(affine, code=NIFTI_CODE_SCANNER)
    header.set_sform(affine, code=NIFTI_CODE_SCANNER)
    header.set_zooms((dx, dy, dz))
    header.set_xyzt_units("mm", "sec")
    header["scl_slope"], header["scl_inter"] = 1.0, 0.0
    header["descrip"] = b"serialct"
    header["vox_offset"] = NIFTI_VOX_OFFSET
    return header.binaryblock + NIFTI_NO_EXTENSION


class NiftiStream:
    """A .nii.gz written slice by slice (ISA-L deflate in threads, overlapping the decoding).

    Slices are int16 (y, x) in z order; ``commit`` renames the finished file into place,
    ``abort`` removes it.
    """

    def __init__(
        self,
        path: Path,
        shape_zyx: tuple[int, int, int],
        spacing_zyx: tuple[float, float, float],
        origin_lps: np.ndarray,
        direction: np.ndarray,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".tmp-{self.path.name}")
        self.fh = igzip_threaded.open(
            self.tmp, "wb", compresslevel=GZIP_LEVEL, threads=GZIP_THREADS
        )
        self.fh.write(_nifti_header(shape_zyx, spacing_zyx, origin_lps, direction))

    def write(self, voxels: np.ndarray) -> None:
        data = np.ascontiguousarray(voxels, dtype="<i2")  # (.., y, x) C order: x fastest
        self.fh.write(memoryview(data).cast("B"))

    def commit(self) -> None:
        self.fh.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


def write_nifti(
    voxels: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    origin_lps: np.ndarray,
    direction: np.ndarray,
    path: Path,
) -> None:
    """Write an int16 (z, y, x) volume as gzipped NIfTI-1 (ISA-L deflate, threaded).

    ``direction`` is 3x3 LPS with columns x, y, z as in SimpleITK; the file reads back in
    SimpleITK with this origin, spacing and direction (qform and sform, scanner code). The
    header's description is "serialct": no DICOM text is copied.
    """
    stream = NiftiStream(path, voxels.shape, spacing_zyx, origin_lps, direction)
    try:
        stream.write(voxels)
    except BaseException:
        stream.abort()
        raise
    stream.commit()


def _clean_json(value: Any) -> Any:
    """NaN is no JSON: write it as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    return value


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_clean_json(data), indent=2) + "\n")
    os.replace(tmp, path)


def _stack(paths: list[str], headers: list[dict[str, str]]) -> geometry.SliceStack:
    def numbers(tag: str) -> list[tuple[float, ...]]:
        return [_numbers(h, tag, p) for h, p in zip(headers, paths, strict=True)]

    return geometry.stack_slices(
        paths,
        numbers("ImagePositionPatient"),
        numbers("ImageOrientationPatient"),
        numbers("PixelSpacing"),
    )


def _open_stream(
    stack: geometry.SliceStack, first: dict[str, str], path: str, out_nifti: Path
) -> NiftiStream | None:
    """The output stream when the geometry is final before the pixels are read (uniform steps),
    so that compression overlaps decoding; None when the slices must be resampled."""
    n = len(stack.order)
    if n >= 2 and not geometry.is_uniform(stack.steps):
        return None
    if n >= 2:
        z_spacing = float(stack.offsets[-1] - stack.offsets[0]) / (n - 1)
    else:
        z_spacing = _number(first, "SliceThickness", path, 1.0)
    shape = (n, int(first["Rows"]), int(first["Columns"]))
    dy, dx = stack.pixel_spacing
    return NiftiStream(out_nifti, shape, (z_spacing, dy, dx), stack.origin, stack.direction)


def convert_series(
    files: list[Path], out_nifti: Path, out_json: Path, patient_id: str | None = None
) -> dict:
    """Write one series as NIfTI (HU, int16, padding clipped to HU_MIN_STORED) plus sidecar.

    Returns the sidecar dict; ``qc_status`` is "ok" or "warn: ..." (fewer than 3 slices,
    uneven spacing or missing slices, which are resampled to a uniform step, unreadable files,
    which are skipped). Raises InputError for gantry tilt, mixed orientations, repeated
    positions and a series of which no file is readable. ``patient_id`` (e.g. a pseudonym from
    the manifest) replaces the PatientID tag in the sidecar. A series in one multi-frame
    (Enhanced or Legacy Converted Enhanced CT) file is read frame by frame, as if each were a
    file.
    """
    all_paths = [str(f) for f in files]
    if not all_paths:
        raise InputError(f"{out_nifti}: no DICOM files given for this series")
    paths, headers, datasets, unreadable = [], [], [], []
    for path in all_paths:
        found = read_dataset(path, with_pixels=True)
        if found is None or not found[0]["Rows"]:
            logger.warning("%s: not a readable DICOM image, file skipped", path)
            unreadable.append(path)
            continue
        paths.append(path)
        headers.append(found[0])
        datasets.append(found[1])
    if not paths:
        raise InputError(f"{all_paths[0]}: none of the {len(all_paths)} files is a readable DICOM")
    if any(h[multiframe.FRAME_COUNT] for h in headers):
        if len(paths) > 1:
            raise InputError(
                f"{paths[0]}: a multi-frame (enhanced) CT file in a series of {len(paths)} files; "
                "only a series in one multi-frame file is supported"
            )
        paths, headers, datasets = multiframe.split_frames(
            paths[0], headers[0], datasets[0], headers[0][TRANSFER_SYNTAX]
        )
    stack = _stack(paths, headers)
    first = headers[stack.order[0]]
    tag_tilt = _number(first, "GantryDetectorTilt", paths[stack.order[0]], 0.0)
    positions = [
        _numbers(h, "ImagePositionPatient", p) for h, p in zip(headers, paths, strict=True)
    ]
    geometry.check_tilt(paths[stack.order[0]], tag_tilt, geometry.tilt_angle_deg(stack, positions))

    order = list(stack.order)
    stream = _open_stream(stack, headers[order[0]], paths[order[0]], Path(out_nifti))
    try:
        volume = _read_volume(
            [paths[i] for i in order],
            [headers[i] for i in order],
            [datasets[i] for i in order],
            stream,
        )
    except BaseException:
        if stream is not None:
            stream.abort()
        raise
    del datasets
    streamed = stream is not None and not volume.failed
    if streamed:
        stream.commit()
    elif stream is not None:
        stream.abort()
    if volume.failed:
        unreadable += [paths[order[k]] for k in volume.failed]
        keep = [i for k, i in enumerate(order) if k not in set(volume.failed)]
        if not keep:
            raise InputError(f"{paths[0]}: the pixel data of no file of this series is readable")
        paths, headers = [paths[i] for i in keep], [headers[i] for i in keep]
        stack = _stack(paths, headers)  # already sorted: the order is the identity
    ordered = [paths[i] for i in stack.order]
    first = headers[stack.order[0]]
    voxels = volume.voxels
    messages: list[str] = []
    if unreadable:
        names = ", ".join(sorted(Path(p).name for p in unreadable)[:5])
        more = f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
        messages.append(f"{len(unreadable)} unreadable file(s) skipped: {names}{more}")
    n = len(paths)
    stats = geometry.spacing_stats(stack.steps)
    if n < MIN_SLICES:
        messages.append(f"only {n} slice(s), fewer than {MIN_SLICES}")
    resampled = n >= 2 and not geometry.is_uniform(stack.steps)
    if resampled:
        if stats["gaps"]:
            messages.append(
                f"missing slices: {stats['gaps']} gap(s) above {geometry.GAP_FACTOR}x the median "
                f"step {stats['median']:.4g} mm (largest {stats['max']:.4g} mm)"
            )
        else:
            messages.append(f"uneven slice spacing: steps {stats['min']:.4g}-{stats['max']:.4g} mm")
        new_offsets = geometry.uniform_offsets(stack.offsets)
        resampled_hu = geometry.resample_along_normal(voxels, stack.offsets, new_offsets)
        voxels = np.rint(resampled_hu).astype(np.int16)  # between int16 values: no clipping
        z_spacing = float(new_offsets[1] - new_offsets[0])
        messages.append(f"resampled {n} slices to {len(new_offsets)} at {z_spacing:.4g} mm")
    elif n >= 2:
        z_spacing = float(stack.offsets[-1] - stack.offsets[0]) / (n - 1)
    else:
        z_spacing = _number(first, "SliceThickness", ordered[0], 1.0)

    dy, dx = stack.pixel_spacing
    if not streamed:
        write_nifti(voxels, (z_spacing, dy, dx), stack.origin, stack.direction, Path(out_nifti))

    try:
        study_date = iso_date(first["StudyDate"])
    except ValueError:
        study_date = ""
    syntax = first[TRANSFER_SYNTAX]
    status = QC_OK if not messages else f"{QC_WARN}: " + "; ".join(messages)
    sidecar = {
        "patient_id": first["PatientID"] if patient_id is None else patient_id,
        "study_date": study_date,
        "series_uid": first["SeriesInstanceUID"],
        "series_number": first["SeriesNumber"],
        "series_description": first["SeriesDescription"],
        "manufacturer": first["Manufacturer"],
        "kernel": first["ConvolutionKernel"],
        "n_slices": n,
        "axis_order": "zyx",
        "size": list(voxels.shape),
        "spacing": [z_spacing, dy, dx],
        "origin_lps": [float(v) for v in stack.origin],
        "direction": [float(v) for v in stack.direction.flatten()],
        "slice_spacing": stats,
        "gantry_tilt_deg": tag_tilt,
        "transfer_syntax": syntax,
        "transfer_syntax_name": UID(syntax).name if syntax else "",
        "resampled": resampled,
        "padding_voxels": volume.padding,
        "clipped_voxels": volume.clipped,
        "hu_min_stored": HU_MIN_STORED,
        "qc_status": status,
        "qc_messages": messages,
    }
    _write_json(Path(out_json), sidecar)
    log = logger.warning if messages else logger.info
    log("%s: %d slices -> %s (%s)", ordered[0], n, out_nifti, status)
    return sidecar


def _output_stem(row: pd.Series, taken: set[str]) -> tuple[str, str, str]:
    """File stem ``<patient>_<YYYYMMDD>_<series>`` (unique), the scan id and the ISO date."""
    patient = SAFE_NAME.sub("_", row["patient_id"]) or "unknown"
    try:
        date = iso_date(row["study_date"])
        scan = row["study_date"].strip()
    except ValueError:
        date, scan = "", "nodate"
    series = SAFE_NAME.sub("_", row["series_number"]) or row["series_key"]
    stem, k = f"{patient}_{scan}_{series}", 1
    while stem in taken:
        k += 1
        stem = f"{patient}_{scan}_{series}-{k}"
    taken.add(stem)
    return stem, scan, date


def convert_dicom_dir(
    dicom_dir: Path, out_dir: Path, series_cfg: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Convert every CT series under ``dicom_dir`` (localizers etc. skipped) into ``out_dir``.

    Writes ``<patient>_<YYYYMMDD>_<series number>.nii.gz`` + ``.json`` per series and
    ``series.tsv``: one row per series found, converted or not, with ``chosen`` (the series the
    workflow's index would take for its study, rule ``series_cfg``) and ``reason`` (why chosen
    or skipped). A series that cannot be converted gets an empty path and ``qc_status``
    "error: ..."; a skipped one (no CT volume) "skipped". Raises InputError when no CT series
    is found (after writing ``series.tsv`` with the reason).
    """
    from serialct.dicom.index import rank_series

    dicom_dir, out_dir = Path(dicom_dir), Path(out_dir)
    headers = read_headers(dicom_dir)
    listed = list_series(headers)
    ranked = rank_series(headers, "", series_cfg)[1].set_index("series_key")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, taken = [], set()
    for row in listed.to_dict("records"):
        out = {c: row.get(c, "") for c in SERIES_TSV_COLUMNS}
        verdict = ranked.loc[row["series_key"]]
        out.update(path="", sidecar="", chosen=verdict["chosen"], reason=verdict["reason"])
        if row["skip_reason"]:
            out.update(scan_id="", study_date="", qc_status=QC_SKIPPED)
            rows.append(out)
            continue
        stem, scan, date = _output_stem(pd.Series(row), taken)
        nifti, sidecar = out_dir / f"{stem}.nii.gz", out_dir / f"{stem}.json"
        try:
            status = convert_series(row["files"], nifti, sidecar)["qc_status"]
            out.update(path=nifti.name, sidecar=sidecar.name)
        except InputError as exc:
            logger.error("%s not converted: %s", describe(pd.Series(row)), exc)
            status = f"{QC_ERROR}: {exc}"
        out.update(scan_id=scan, study_date=date, qc_status=status)
        rows.append(out)
    table = pd.DataFrame(rows, columns=list(SERIES_TSV_COLUMNS))
    if table.empty:
        reason = f"no DICOM image series found under {dicom_dir}"
        table = pd.DataFrame(
            [{c: "" for c in SERIES_TSV_COLUMNS} | {"chosen": False, "reason": reason,
                                                   "qc_status": QC_SKIPPED}]
        )  # fmt: skip
    table.to_csv(out_dir / SERIES_TSV, sep="\t", index=False)
    if not (table["qc_status"] != QC_SKIPPED).any():
        raise InputError(
            f"{dicom_dir}: no CT series found (searched recursively for DICOM files; "
            f"reasons in {out_dir / SERIES_TSV})"
        )
    return table
