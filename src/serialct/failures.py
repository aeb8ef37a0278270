"""One line per failure: any exception a ``serialct`` command raises, as one line for stderr.

:func:`describe` gives the line the CLI prints after ``serialct COMMAND:`` and the exit status;
the traceback is logged only with ``serialct --verbose``. Covered kinds, the file named first:

Exit 2, bad input:

- ``InputError`` as raised. The readers raise it naming the file: images that are missing, empty,
  a folder, truncated (gzip stream or NIfTI data shorter than its header says) or unreadable
  (:mod:`serialct.readers`); JSON with a syntax error or not an object; empty, malformed or
  schema-violating TSV/CSV sheets, missing columns (:mod:`serialct.sheets`); a CT and a mask on
  different grids (both files named); bad config keys (:mod:`serialct.config`); DICOM folders
  without CT series; slice images and model checkpoints that do not load.
- ``FileNotFoundError``, ``IsADirectoryError`` (a folder where a file is expected),
  ``NotADirectoryError`` (a file in the way of a folder path), ``PermissionError``,
  ``FileExistsError``: the file from the exception.
- SimpleITK's ``RuntimeError``: the file quoted in its message, "unreadable image".
- A truncated or corrupt gzip stream (``gzip.BadGzipFile``, ``zlib.error``, ``EOFError``), a JSON
  syntax error, pandas ``EmptyDataError``/``ParserError``, pydicom ``InvalidDicomError``, a
  ``UnicodeDecodeError``: these carry no file name, so the line says what broke and how to get
  the traceback that shows where.

Exit 1, the machine or the program:

- ``OSError`` with errno ENOSPC ("disk full (no space left on device)") or EDQUOT, and any other
  ``OSError`` (its file and strerror); ``MemoryError``; a SimpleITK failure not about a file.
- Anything else: the exception type and the first line of its message, then
  "(run with --verbose for the traceback)".

Exit 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import errno
import json
import re
import zlib
from dataclasses import dataclass
from typing import Final

from serialct.atomic import TMP_PREFIX
from serialct.errors import InputError

EXIT_ERROR: Final = 1
EXIT_INPUT: Final = 2
EXIT_INTERRUPTED: Final = 130
UNREADABLE_IMAGE: Final = "unreadable image (not a NIfTI/NRRD/MHA image, or truncated/corrupt)"
VERBOSE_HINT: Final = "(run with --verbose for the traceback)"
SITK_MARK: Final = "sitk::ERROR"
SITK_QUOTED: Final = re.compile(r'"([^"]+)"')
TMP_NAME: Final = re.compile(re.escape(TMP_PREFIX) + r"[0-9a-f]{12}-")  # serialct.atomic's names


@dataclass(frozen=True)
class Failure:
    """What the CLI prints (after ``serialct COMMAND:``) and the exit status."""

    message: str
    exit_code: int


def one_line(text: str) -> str:
    """``text`` with its lines joined by "; " (blank lines dropped)."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


def _named(exc: BaseException, module: str, name: str) -> bool:
    """True if ``exc`` is an instance of ``module.name`` (checked by name: no import needed)."""
    return any(c.__module__.startswith(module) and c.__name__ == name for c in type(exc).__mro__)


def _unnamed(what: str, exc: BaseException, code: int = EXIT_INPUT) -> Failure:
    """A failure whose exception names no file."""
    return Failure(f"{what} ({type(exc).__name__}: {_first_line(exc)}) {VERBOSE_HINT}", code)


def _os_error(exc: OSError) -> Failure:
    where = f"{exc.filename}: " if exc.filename else ""
    if exc.filename2:
        where = f"{exc.filename} -> {exc.filename2}: "
    reason = exc.strerror or _first_line(exc)
    if exc.errno == errno.ENOSPC:
        return Failure(f"{where}disk full (no space left on device)", EXIT_ERROR)
    if exc.errno == errno.EDQUOT:
        return Failure(f"{where}disk quota exceeded", EXIT_ERROR)
    kinds: list[tuple[type[OSError], str]] = [
        (FileNotFoundError, "not found"),
        (IsADirectoryError, "is a folder, expected a file"),
        (NotADirectoryError, "not a folder (a file is in the way of this path)"),
        (PermissionError, "permission denied"),
        (FileExistsError, "already exists"),
    ]
    for kind, text in kinds:
        if isinstance(exc, kind):
            return Failure(f"{where}{text}", EXIT_INPUT)
    if not where:
        return _unnamed("input/output error", exc, EXIT_ERROR)
    return Failure(f"{where}{reason}", EXIT_ERROR)


def _simpleitk(exc: BaseException) -> Failure | None:
    text = str(exc)
    if SITK_MARK not in text:
        return None
    detail = one_line(text[text.index(SITK_MARK) + len(SITK_MARK) :].lstrip(": "))
    quoted = SITK_QUOTED.search(detail)
    if quoted is None:
        return Failure(f"SimpleITK: {detail} {VERBOSE_HINT}", EXIT_ERROR)
    path = TMP_NAME.sub("", quoted.group(1))
    if "does not exist" in detail:
        return Failure(f"{path}: not found", EXIT_INPUT)
    if "Writer" in text or "writing" in detail:
        return Failure(f"{path}: cannot write the image ({detail})", EXIT_ERROR)
    return Failure(f"{path}: {UNREADABLE_IMAGE}", EXIT_INPUT)


def _known(exc: BaseException) -> Failure | None:
    """The failure for a kind this module knows, or None."""
    if isinstance(exc, InputError):
        return Failure(one_line(str(exc)), EXIT_INPUT)
    if isinstance(exc, KeyboardInterrupt):
        return Failure("interrupted", EXIT_INTERRUPTED)
    if isinstance(exc, MemoryError):
        return Failure(
            "out of memory (MemoryError): use a machine or job with more memory", EXIT_ERROR
        )
    if _named(exc, "gzip", "BadGzipFile") or isinstance(exc, zlib.error | EOFError):
        return _unnamed("truncated or corrupt gzip data", exc)
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, RuntimeError):
        return _simpleitk(exc)
    if isinstance(exc, json.JSONDecodeError):
        return _unnamed(f"not valid JSON (line {exc.lineno}, column {exc.colno})", exc)
    if _named(exc, "pandas", "EmptyDataError"):
        return _unnamed("empty table (no columns)", exc)
    if _named(exc, "pandas", "ParserError"):
        return _unnamed("malformed table", exc)
    if _named(exc, "pydicom", "InvalidDicomError"):
        return _unnamed("not a DICOM file", exc)
    if isinstance(exc, UnicodeDecodeError):
        return _unnamed("not UTF-8 text", exc)
    return None


def describe(exc: BaseException) -> Failure:
    """The one-line message and exit status for ``exc``."""
    known = _known(exc)
    if known is not None:
        return known
    return Failure(f"{type(exc).__name__}: {_first_line(exc)} {VERBOSE_HINT}", EXIT_ERROR)
