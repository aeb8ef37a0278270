"""Keyed pseudonyms for PatientIDs: ``PREFIX`` + the first 12 hex digits of HMAC-SHA256.

The key lives in a file the user keeps outside the repository and the results; the mapping
(real id -> pseudonym) is written only to a path the user chooses, outside the results. Clinical
and readings sheets must be keyed by the pseudonym: map their ``patient_id`` column with
``pseudonymise_id``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from pathlib import Path
from typing import Any, Final

import pandas as pd

from serialct.errors import InputError

logger = logging.getLogger("serialct")

DEFAULT_PREFIX: Final = "S-"
DIGEST_CHARS: Final = 12
MAPPING_COLUMNS: Final = ("patient_id", "pseudonym")


def read_key(key_file: Path) -> bytes:
    """The secret key: the file's bytes, surrounding whitespace stripped; InputError if empty."""
    path = Path(key_file)
    if not path.is_file():
        raise InputError(
            f"{path}: pseudonymisation key file not found (config pseudonymise.key_file)"
        )
    key = path.read_bytes().strip()
    if not key:
        raise InputError(
            f"{path}: pseudonymisation key file is empty; put a long random secret in it"
        )
    return key


def pseudonymise_id(patient_id: str, key: bytes | str, prefix: str = DEFAULT_PREFIX) -> str:
    """``prefix`` + first 12 hex digits of HMAC-SHA256(key, patient_id) (stripped id)."""
    raw = key.encode() if isinstance(key, str) else key
    digest = hmac.new(raw, patient_id.strip().encode(), hashlib.sha256).hexdigest()
    return f"{prefix}{digest[:DIGEST_CHARS]}"


def check_outside(path: Path, results: Path) -> None:
    """InputError when ``path`` lies inside ``results`` (the mapping must never be shared)."""
    inside = Path(os.path.abspath(path)).is_relative_to(Path(os.path.abspath(results)))
    if inside:
        raise InputError(
            f"{path}: pseudonymisation mapping must be written outside the results folder "
            f"{results} (config pseudonymise.mapping)"
        )


class Pseudonymiser:
    """Maps PatientIDs with a key and remembers the pairs for the mapping table."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.key = read_key(Path(cfg["key_file"]))
        self.prefix = str(cfg.get("prefix", DEFAULT_PREFIX))
        self.mapping_path = Path(cfg["mapping"])
        self.pairs: dict[str, str] = {}

    def __call__(self, patient_id: str) -> str:
        if not patient_id.strip():
            return patient_id  # blank stays blank: reported as unusable, never hashed
        pseudonym = pseudonymise_id(patient_id, self.key, self.prefix)
        self.pairs[patient_id.strip()] = pseudonym
        return pseudonym

    def write_mapping(self) -> None:
        """Merge the pairs seen into the mapping TSV (kept rows are never dropped)."""
        path = self.mapping_path
        old = (
            pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
            if path.is_file()
            else pd.DataFrame(columns=list(MAPPING_COLUMNS))
        )
        new = pd.DataFrame(sorted(self.pairs.items()), columns=list(MAPPING_COLUMNS))
        table = pd.concat([old, new]).drop_duplicates().sort_values(list(MAPPING_COLUMNS))
        if path.is_file() and len(table) == len(old):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        table.to_csv(tmp, sep="\t", index=False)
        os.replace(tmp, path)
        logger.info("pseudonym mapping of %d patients -> %s", len(table), path)


def pseudonymise_sheet(
    sheet: Path, key_file: Path, out: Path, prefix: str = DEFAULT_PREFIX
) -> pd.DataFrame:
    """Copy a clinical or readings sheet (TSV, or CSV by suffix) with ``patient_id`` mapped.

    The output has the input's format; everything but ``patient_id`` is kept as text, as is.
    """
    sheet, out = Path(sheet), Path(out)
    sep = "," if sheet.suffix.lower() == ".csv" else "\t"
    try:
        table = pd.read_csv(sheet, sep=sep, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{sheet}: cannot read the sheet ({exc})") from None
    if "patient_id" not in table.columns:
        raise InputError(f"{sheet}: no column patient_id (expected one row per patient or scan)")
    key = read_key(Path(key_file))
    table["patient_id"] = [pseudonymise_id(p, key, prefix) for p in table["patient_id"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, sep="," if out.suffix.lower() == ".csv" else "\t", index=False)
    return table
