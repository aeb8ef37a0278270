"""Write-then-rename: an output appears under its final name only once it is complete.

A job killed mid-write (node lost, out of memory, time limit) leaves at most a hidden
``.tmp-*`` file beside the output, never a truncated file under the output's name that a rerun
would take for finished work.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_PREFIX = ".tmp-"


def temp_name(path: Path) -> Path:
    """A unique hidden name beside ``path`` that keeps its full suffix (``.nii.gz`` stays last,
    so writers that choose the format by extension still work)."""
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{path.name}")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` to; on success it is renamed to ``path``
    (atomic on one filesystem), on any error it is removed and ``path`` is left untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """``Path.write_text``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


@contextmanager
def atomic_files(out_dir: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out_dir``; on success every file written into it is
    renamed into ``out_dir`` (each file complete or absent), on any error it is removed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(out_dir)
    tmp.mkdir()
    try:
        yield tmp
        for item in sorted(tmp.iterdir()):
            os.replace(item, out_dir / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
