"""Read the header table of a DICOM tree: one row per DICOM file, cached by path, size and mtime.

Only the tags in ``TAGS`` are kept, all as strings (multi-values joined with a backslash, as in
DICOM). Identifying tags other than PatientID (names, birth dates, ...) are never read.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Final

import pandas as pd
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from serialct.dicom import header_cache, multiframe
from serialct.dicom.tree import iter_files
from serialct.errors import InputError

logger = logging.getLogger("serialct")

TAGS: Final = (
    "PatientID",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "SOPClassUID",
    "Modality",
    "ImageType",
    "Manufacturer",
    "ConvolutionKernel",
    "SliceThickness",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "GantryDetectorTilt",
    "InstanceNumber",
    "AcquisitionNumber",
    "AcquisitionTime",
    "TemporalPositionIdentifier",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "PixelPaddingValue",
)
FILE_COLUMNS: Final = ("path", "size", "mtime_ns")
TRANSFER_SYNTAX: Final = "TransferSyntaxUID"
COLUMNS: Final = (*FILE_COLUMNS, *TAGS, TRANSFER_SYNTAX, *multiframe.COLUMNS)
IS_DICOM: Final = "is_dicom"  # cache-only column: non-DICOM files are cached too, as "0"
DICOM_MAGIC: Final = b"DICM"
DICOM_MAGIC_OFFSET: Final = 128
# without the DICM preamble, a forced read only counts as DICOM if it found one of these
EVIDENCE_TAGS: Final = ("SOPClassUID", "Modality", "ImagePositionPatient", "StudyInstanceUID")


_text = multiframe.tag_text


# binary VRs (US/SS): converted by pydicom; every other tag is text and read from its raw bytes
BINARY_TAGS: Final = frozenset({"Rows", "Columns", "PixelRepresentation", "PixelPaddingValue"})
TAG_NUMBERS: Final = {keyword: tag_for_keyword(keyword) for keyword in TAGS}


def _raw_text(ds: Dataset, keyword: str) -> str:
    """A text tag from its undecoded bytes: much faster than pydicom's value conversion."""
    elem = ds.get_item(TAG_NUMBERS[keyword])
    if elem is None:
        return ""
    value = elem.value
    if isinstance(value, bytes):
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = value.decode("latin-1")
        return "\\".join(part.strip(" \x00") for part in text.split("\\"))
    return _text(value)


def _binary_text(ds: Dataset, keyword: str) -> str:
    tag = TAG_NUMBERS[keyword]
    return _text(ds[tag].value) if tag in ds else ""


def read_dataset(
    path: str | Path, with_pixels: bool = False
) -> tuple[dict[str, str], Dataset] | None:
    """The ``TAGS`` of one file as strings and its pydicom dataset (pixel data included when
    ``with_pixels``), or None when it is not a DICOM file. A multi-frame file's row also gets
    its geometry from the functional groups and ``multiframe.COLUMNS`` (empty otherwise)."""
    path = str(path)
    try:
        with open(path, "rb") as fh:
            fh.seek(DICOM_MAGIC_OFFSET)
            preamble = fh.read(len(DICOM_MAGIC)) == DICOM_MAGIC
            fh.seek(0)
            ds: Dataset = pydicom.dcmread(fh, stop_before_pixels=not with_pixels, force=True)
            row = {
                tag: _binary_text(ds, tag) if tag in BINARY_TAGS else _raw_text(ds, tag)
                for tag in TAGS
            }
            row.update(dict.fromkeys(multiframe.COLUMNS, ""))
            if multiframe.is_multiframe(ds):
                row = multiframe.header_values(ds, row)
    except Exception as exc:  # noqa: BLE001  any parse failure means "not DICOM" here
        logger.debug("%s: skipped, not readable as DICOM (%s)", path, exc)
        return None
    if not preamble and not any(row[t] for t in EVIDENCE_TAGS):
        logger.debug("%s: skipped, no DICOM preamble and no DICOM tags", path)
        return None
    meta = getattr(ds, "file_meta", None)
    row[TRANSFER_SYNTAX] = _text(meta.get(TRANSFER_SYNTAX)) if meta is not None else ""
    return row, ds


def read_header(path: str | Path) -> dict[str, str] | None:
    """The ``TAGS`` of one file as strings, or None when it is not a DICOM file."""
    found = read_dataset(path)
    return None if found is None else found[0]


def _clean(value: str) -> str:
    """Tabs and newlines would break the TSV cache; DICOM strings never need them."""
    return value.replace("\t", " ").replace("\n", " ").replace("\r", " ")


def read_headers(
    root: Path,
    cache: Path | None = None,
    map_id: Callable[[str], str] | None = None,
    workers: int = 1,
) -> pd.DataFrame:
    """One row per DICOM file under ``root`` (columns ``COLUMNS``; size and mtime_ns as int).

    Headers are read with ``stop_before_pixels``; non-DICOM files are skipped (logged at debug).
    With ``cache`` (a TSV), files whose path, size and mtime are unchanged are not read again;
    rows read go to the cache's journal as they come (:mod:`serialct.dicom.header_cache`), so a
    killed index resumes where it stopped, and the cache is rewritten at the end when something
    changed. Keep it outside ``root`` or give it a name starting with ``.`` so that it does not
    change the tree's fingerprint. ``map_id`` (a pseudonymiser) replaces PatientID as each
    header is read, before anything is cached, so that a cache holds pseudonyms only; use one
    cache per key. ``workers`` > 1 reads headers in that many processes. Progress (files read,
    rate, time left) is logged every PROGRESS_SECONDS.
    """
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise InputError(f"{root}: DICOM folder not found (expected a directory to search)")
    start = time.perf_counter()
    columns = [*COLUMNS, IS_DICOM]
    cached = header_cache.load(Path(cache), columns) if cache is not None else {}
    files = list(iter_files(root))
    rows: list[dict[str, str] | None] = []
    todo: list[tuple[int, str, str, str]] = []
    for path, st in files:
        size, mtime = str(st.st_size), str(st.st_mtime_ns)
        old = cached.get(path)
        if old is not None and old["size"] == size and old["mtime_ns"] == mtime:
            rows.append(old)
        else:
            todo.append((len(rows), path, size, mtime))
            rows.append(None)
    if todo:
        logger.info("%s: %d files, %d headers to read (%d cached)", root, len(files), len(todo),
                    len(files) - len(todo))  # fmt: skip
    journal = header_cache.Journal(Path(cache), columns) if cache is not None and todo else None
    progress = _Progress(root, len(todo))
    try:
        for (slot, path, size, mtime), header in zip(
            todo, _read_all([t[1] for t in todo], workers), strict=True
        ):
            if header is not None and map_id is not None:
                header["PatientID"] = map_id(header["PatientID"])
            row = {"path": path, "size": size, "mtime_ns": mtime, IS_DICOM: "1" if header else "0"}
            row.update({k: _clean(v) for k, v in (header or {}).items()})
            rows[slot] = {c: row.get(c, "") for c in columns}
            if journal is not None:
                journal.add(rows[slot])
            progress.tick()
    finally:
        if journal is not None:
            journal.close()
    done = [r for r in rows if r is not None]
    if cache is not None and (todo or len(cached) != len(done)):
        header_cache.save(Path(cache), done, columns)
    table = pd.DataFrame(done, columns=columns)
    table = table[table[IS_DICOM] == "1"].drop(columns=IS_DICOM).reset_index(drop=True)
    table = table.astype({"size": "int64", "mtime_ns": "int64"})
    logger.info(
        "%s: %d DICOM files of %d (%d headers read, %d from cache) in %.2f s",
        root,
        len(table),
        len(done),
        len(todo),
        len(done) - len(todo),
        time.perf_counter() - start,
    )
    return table


PROGRESS_SECONDS: Final = 10.0  # a progress line at most this often
PARALLEL_MIN_FILES: Final = 200  # fewer headers to read: one process (start-up costs more)
CHUNK_FILES: Final = 64  # headers per task sent to a worker process


def _read_all(paths: list[str], workers: int) -> Iterator[dict[str, str] | None]:
    """Headers of ``paths`` in order: in ``workers`` processes when there are enough."""
    if workers <= 1 or len(paths) < PARALLEL_MIN_FILES:
        yield from map(read_header, paths)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(read_header, paths, chunksize=CHUNK_FILES)


class _Progress:
    """Counts headers read and logs a progress line every PROGRESS_SECONDS."""

    def __init__(self, root: Path, total: int) -> None:
        self.root, self.total, self.done = root, total, 0
        self.start = self.last = time.perf_counter()

    def tick(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if now - self.last < PROGRESS_SECONDS:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        logger.info(
            "%s: %d of %d headers read (%.0f files/s, about %.0f s left)",
            self.root, self.done, self.total, rate, (self.total - self.done) / rate,
        )  # fmt: skip
