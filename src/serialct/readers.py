"""Readers of the files users hand to the commands: any failure is an InputError naming the file.

Images (SimpleITK), JSON objects and the CT/mask grid check. ITK reads a truncated ``.nii.gz``
without complaint (the missing voxels zero), so a NIfTI's data is checked to be as long as its
header says: for a gzip file first from the size its trailer states, and only when that does not
match (or the file is no NIfTI) by reading the stream through to its end. Tables are read by
:mod:`serialct.sheets` and :func:`serialct.histogram.read_reference`, which do the same.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any, Final

import numpy as np
import SimpleITK as sitk

from serialct.errors import InputError
from serialct.failures import UNREADABLE_IMAGE

CHUNK_BYTES: Final = 1 << 22
GZIP_MAGIC: Final = b"\x1f\x8b"
GZIP_ISIZE_MODULUS: Final = 2**32
NIFTI_SUFFIXES: Final = (".nii", ".nii.gz")
SPACING_RTOL: Final = 1e-4  # as serialct.quantify: masks carry the CT's spacing


def _existing_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a file ({what})")
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file ({what})")


def _uncompressed_bytes(path: Path) -> int:
    """Bytes in the file, decompressed if gzip-compressed; InputError if the stream breaks."""
    with path.open("rb") as head:
        if head.read(len(GZIP_MAGIC)) != GZIP_MAGIC:  # ITK reads it uncompressed, whatever its name
            return path.stat().st_size
    from isal import igzip

    total = 0
    try:
        with igzip.open(path, "rb") as stream:
            while chunk := stream.read(CHUNK_BYTES):
                total += len(chunk)
    except (EOFError, OSError, zlib.error) as exc:
        if isinstance(exc, OSError) and exc.filename:
            raise
        raise InputError(
            f"{path}: truncated or corrupt gzip file ({exc}); copy or export it again"
        ) from exc
    return total


def _gzip_trailer_size(path: Path) -> int | None:
    """The uncompressed size (mod 2**32) a complete gzip file states in its last 4 bytes (ISIZE,
    RFC 1952); None for a file that is not gzip. A truncated file ends in compressed data, whose
    last bytes match the expected size only by chance (1 in 2**32)."""
    with path.open("rb") as fh:
        if fh.read(len(GZIP_MAGIC)) != GZIP_MAGIC:
            return None
        fh.seek(-4, os.SEEK_END)
        return int.from_bytes(fh.read(4), "little")


def _nifti_data_bytes(path: Path) -> int | None:
    """Header offset plus voxel bytes a NIfTI needs, or None when nibabel cannot tell."""
    import nibabel as nib

    try:
        image = nib.load(path)
        shape = image.header.get_data_shape()
        # the offset as stored in the file (the loaded header's vox_offset may read 0)
        offset = int(image.dataobj.offset)
        return offset + int(np.prod(shape)) * int(image.header["bitpix"]) // 8
    except Exception:  # noqa: BLE001  not a NIfTI nibabel reads: SimpleITK gives the message
        return None


def read_image(path: str | Path, pixel_type: int = sitk.sitkUnknown) -> sitk.Image:
    """An image file (NIfTI, NRRD, MHA...) read with SimpleITK."""
    path = Path(path)
    _existing_file(path, "image")
    needed = _nifti_data_bytes(path) if path.name.lower().endswith(NIFTI_SUFFIXES) else None
    if needed is None or _gzip_trailer_size(path) != needed % GZIP_ISIZE_MODULUS:
        # the cheap check did not settle it: decompress to the end (raises if the stream breaks)
        size = _uncompressed_bytes(path)
        if needed is not None and size < needed:
            raise InputError(
                f"{path}: truncated NIfTI ({size} of {needed} bytes); copy or export it again"
            )
    try:
        return sitk.ReadImage(str(path), pixel_type)
    except RuntimeError as exc:
        raise InputError(f"{path}: {UNREADABLE_IMAGE}") from exc


def read_json(path: str | Path, what: str = "JSON file") -> dict[str, Any]:
    """A JSON file holding one object (``what`` names it in messages, e.g. "scan sidecar")."""
    path = Path(path)
    _existing_file(path, what)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: {what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: {what} is not UTF-8 text ({exc.reason})") from exc
    if not isinstance(payload, dict):
        raise InputError(f"{path}: {what} must hold a JSON object, found {type(payload).__name__}")
    return payload


def check_same_grid(ct: sitk.Image, ct_path: Path, other: sitk.Image, other_path: Path) -> None:
    """InputError naming both files unless ``other`` has the CT's size and spacing."""
    if ct.GetSize() != other.GetSize() or not np.allclose(
        ct.GetSpacing(), other.GetSpacing(), rtol=SPACING_RTOL
    ):
        raise InputError(
            f"{other_path}: grid {other.GetSize()} voxels of "
            f"{_mm(other.GetSpacing())} mm differs from the CT {ct_path}: {ct.GetSize()} of "
            f"{_mm(ct.GetSpacing())} mm; make the mask from this CT"
        )


def _mm(spacing: tuple[float, ...]) -> str:
    return "x".join(f"{s:g}" for s in spacing)
