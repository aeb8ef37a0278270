"""The header cache of an index: a TSV of rows, plus a journal that grows while headers are read.

A first index of a large archive takes long; a job killed half way must not start over. Rows
read are appended to the journal (``<cache>.journal``) in batches, flushed as they go; loading the
cache merges the journal into it (a later row for a path wins), and a finished index writes the
whole cache again and removes the journal. A killed index loses at most the last FLUSH_SECONDS
of reading.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Final

import pandas as pd

logger = logging.getLogger("serialct")

JOURNAL_SUFFIX: Final = ".journal"
FLUSH_SECONDS: Final = 2.0  # a kill loses at most the rows of this long


def journal_path(cache: Path) -> Path:
    return cache.with_name(cache.name + JOURNAL_SUFFIX)


def load(cache: Path, columns: Sequence[str]) -> dict[str, dict[str, str]]:
    """Rows by path from the cache and its journal; {} when neither is usable (logged)."""
    rows: dict[str, dict[str, str]] = {}
    for path in (cache, journal_path(cache)):
        if not path.is_file() or path.stat().st_size == 0:
            continue
        try:
            table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            logger.warning("%s: header cache unreadable, ignored (%s)", path, exc)
            continue
        if not set(columns) <= set(table.columns):
            logger.info("%s: header cache has other columns (older version), ignored", path)
            continue
        rows.update((row["path"], row) for row in table[list(columns)].to_dict("records"))
    return rows


def save(cache: Path, rows: Iterable[dict[str, str]], columns: Sequence[str]) -> None:
    """Write the whole cache atomically and remove the journal."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.tmp")
    pd.DataFrame(list(rows), columns=list(columns)).to_csv(tmp, sep="\t", index=False)
    os.replace(tmp, cache)
    journal_path(cache).unlink(missing_ok=True)


class Journal:
    """Append-only rows of headers read since the cache was last written."""

    def __init__(self, cache: Path, columns: Sequence[str]) -> None:
        self.path = journal_path(cache)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self._file: IO[str] = self.path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(
            self._file, fieldnames=list(columns), delimiter="\t", lineterminator="\n",
            quoting=csv.QUOTE_MINIMAL,
        )  # fmt: skip
        self._pending: list[dict[str, str]] = []
        self._flushed = time.monotonic()
        if new:
            self._writer.writeheader()
            self.flush()

    def add(self, row: dict[str, str]) -> None:
        """Buffer one row; the buffer is written when FLUSH_SECONDS have passed."""
        self._pending.append(row)
        if time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows and sync them to disk."""
        if self._pending:
            self._writer.writerows(self._pending)
            self._pending.clear()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._flushed = time.monotonic()

    def close(self) -> None:
        self.flush()
        self._file.close()
