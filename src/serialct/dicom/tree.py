"""Walk a DICOM tree cheaply (``os.scandir``) and fingerprint it without reading any header."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path


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
