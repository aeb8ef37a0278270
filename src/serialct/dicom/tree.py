"""Walk a DICOM tree cheaply (``os.scandir``) and fingerprint it without reading any header."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger("serialct")

FINGERPRINT_SUFFIX = ".fingerprint"
NO_INDEX = "no-dicom-no-index"  # root absent and never indexed: the index job reruns and fails


def iter_files(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Yield ``(path, stat)`` of every regular file under ``root``, sorted by path.

    Names starting with ``.`` (hidden files and folders, e.g. a header cache) are skipped.
    """
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from iter_files(Path(entry.path))
        elif entry.is_file():
            yield entry.path, entry.stat()


def tree_fingerprint(root: Path) -> str:
    """SHA-1 (hex) of the relative names, sizes and mtimes of every file under ``root``.

    No header is read: it changes when a file is added, removed, resized or touched, and only then.
    """
    root = Path(root)
    digest = hashlib.sha1()
    for path, st in iter_files(root):
        rel = os.path.relpath(path, root)
        digest.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def fingerprint_path(index_tsv: Path) -> Path:
    """``index/C1.tsv`` -> ``index/C1.fingerprint``: the tree fingerprint that index was built
    from, written by the index step once the index is complete."""
    index_tsv = Path(index_tsv)
    return index_tsv.with_name(index_tsv.name.removesuffix(".tsv") + FINGERPRINT_SUFFIX)


def index_fingerprint(root: Path, index_tsv: Path) -> str:
    """The fingerprint the index of ``root`` must match: the tree's own when ``root`` exists (new
    files rerun the index), else the one recorded beside ``index_tsv`` (an unmounted DICOM root
    reruns nothing; a warning says which index is used), else ``NO_INDEX`` (the index job then
    runs and stops on the missing folder).
    """
    root = Path(root)
    if root.is_dir():
        return tree_fingerprint(root)
    recorded = fingerprint_path(index_tsv)
    if not recorded.is_file():
        return NO_INDEX
    indexed = time.strftime("%Y-%m-%d %H:%M", time.localtime(recorded.stat().st_mtime))
    logger.warning("DICOM root %s not found: using the index of %s", root, indexed)
    return recorded.read_text().strip()
