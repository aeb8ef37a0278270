"""Read the input sheets (clinical, readings, patients) and per-scan tables, validated row by row.

Each sheet is read as text (``dtype=str``), every row is checked against its JSON schema in
``serialct/schemas`` (numbers parsed first so that ranges can be checked), then the frame is
typed: dates become pandas Timestamps, numbers floats. Any problem raises ``InputError`` with one
line naming the file, the data row (1-based; the spreadsheet line is row + 1) and the column.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pandas as pd

from serialct.config import load_schema
from serialct.constants import LOBES
from serialct.errors import InputError

log = logging.getLogger("serialct")

MISSING_TEXT = frozenset({"", "na", "n/a", "nan", "null", "none"})
SNIFF_BYTES = 4096
NUMBER_TYPES = ("number", "integer")


def _delimiter(path: Path) -> str:
    """Tab for .tsv, comma for .csv, otherwise sniffed from the first bytes."""
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return "\t"
    if suffix == ".csv":
        return ","
    with path.open(newline="", encoding="utf-8-sig") as handle:
        sample = handle.read(SNIFF_BYTES)
    try:
        return csv.Sniffer().sniff(sample, delimiters="\t,;").delimiter
    except csv.Error as exc:
        raise InputError(
            f"{path}: cannot tell the column separator; save it as .tsv (tabs) or .csv (commas)"
        ) from exc


def _read_text(path: Path) -> pd.DataFrame:
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a TSV/CSV sheet")
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        frame = pd.read_csv(
            path,
            sep=_delimiter(path),
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
            skip_blank_lines=True,
        )
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path}: empty file, expected a header line and rows") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable TSV/CSV table: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _types(subschema: dict[str, Any]) -> set[str]:
    kind = subschema.get("type", "string")
    return set(kind) if isinstance(kind, list) else {kind}


def _parse_cell(text: str, subschema: dict[str, Any]) -> Any:
    """Parse one cell for validation: numbers for numeric columns, else the stripped text.

    A cell that does not parse is returned as text so that the schema reports a type error.
    """
    kinds = _types(subschema)
    if not kinds & set(NUMBER_TYPES):
        return text
    try:
        value = float(text)
    except ValueError:
        return text
    if "integer" in kinds and value.is_integer():
        return int(value)
    return value


def _message(error: jsonschema.ValidationError, schema: dict[str, Any]) -> tuple[str, str]:
    """(column, human message) for a schema error."""
    if error.validator == "required":
        column = str(error.message).split("'")[1] if "'" in error.message else "?"
        return column, f"{column} is empty; a value is required"
    column = str(error.path[0]) if error.path else "?"
    value = error.instance
    rule = error.validator_value
    if error.validator == "enum":
        return column, f"{column} must be {' or '.join(map(str, rule))}, got {value!r}"
    if error.validator == "type":
        kinds = rule if isinstance(rule, list) else [rule]
        wanted = "a whole number" if kinds == ["integer"] else f"a {' or '.join(kinds)}"
        return column, f"{column} must be {wanted}, got {value!r}"
    if error.validator in ("minimum", "maximum"):
        sub = schema.get("properties", {}).get(column, {})
        lo, hi = sub.get("minimum"), sub.get("maximum")
        if lo is not None and hi is not None:
            return column, f"{column} must be between {lo:g} and {hi:g}, got {value:g}"
        return column, f"{column}: {error.message}"
    if error.validator in ("format", "pattern") and "date" in str(
        schema.get("properties", {}).get(column, {}).get("format", "")
    ):
        return column, f"{column} must be a valid date YYYY-MM-DD, got {value!r}"
    if error.validator == "pattern":
        return column, f"{column} {value!r} must match {rule} (letters, digits, . _ -)"
    return column, f"{column}: {error.message}"


def _where(path: Path, row: int, column: str) -> str:
    return f"{path}: row {row} (line {row + 1}), column {column}"


def _validate(frame: pd.DataFrame, schema: dict[str, Any], path: Path) -> pd.DataFrame:
    """Check every row against ``schema``; return the typed frame (numbers float, dates)."""
    required_columns = schema.get("x-required-columns", schema.get("required", []))
    missing = [c for c in required_columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: missing required column {', '.join(missing)} "
            f"(found: {', '.join(frame.columns) or 'none'})"
        )
    duplicated = frame.columns[frame.columns.duplicated()].tolist()
    if duplicated:
        raise InputError(f"{path}: column {duplicated[0]} appears more than once in the header")
    properties = schema.get("properties", {})
    extra_schema = schema.get("additionalProperties", {})
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    records: list[dict[str, Any]] = []
    for index, raw in enumerate(frame.to_dict("records"), start=1):
        row: dict[str, Any] = {}
        for column, cell in raw.items():
            text = str(cell).strip()
            if text.lower() in MISSING_TEXT:
                continue
            sub = properties.get(column, extra_schema if isinstance(extra_schema, dict) else {})
            row[column] = _parse_cell(text, sub)
        errors = sorted(validator.iter_errors(row), key=lambda e: list(e.path))
        if errors:
            column, text = _message(errors[0], schema)
            raise InputError(f"{_where(path, index, column)}: {text}")
        records.append(row)
    typed = pd.DataFrame.from_records(records, columns=list(frame.columns))
    for column in typed.columns:
        sub = properties.get(column)
        if sub is None:
            continue
        if sub.get("format") == "date":
            typed[column] = pd.to_datetime(typed[column], format="%Y-%m-%d")
        elif _types(sub) & set(NUMBER_TYPES):
            typed[column] = pd.to_numeric(typed[column]).astype(float)
    return typed


def _duplicates(frame: pd.DataFrame, keys: list[str], path: Path) -> None:
    dup = frame.duplicated(subset=keys, keep="first")
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0]) + 1
        first = frame.iloc[row - 1]
        values = ", ".join(
            f"{k}={first[k].date() if isinstance(first[k], pd.Timestamp) else first[k]}"
            for k in keys
        )
        raise InputError(
            f"{_where(path, row, keys[-1])}: duplicate {' and '.join(keys)} ({values}); "
            "each must appear once"
        )


def _type_extra_columns(frame: pd.DataFrame, known: set[str]) -> pd.DataFrame:
    """Extra columns whose every filled cell is a number become float; others stay text."""
    for column in frame.columns:
        if column in known:
            continue
        filled = frame[column].dropna()
        numbers = pd.to_numeric(filled, errors="coerce")
        if len(filled) and numbers.notna().all():
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def read_clinical(path: str | Path) -> pd.DataFrame:
    """The clinical sheet: one row per patient; further columns kept for Table 1."""
    path = Path(path)
    schema = load_schema("clinical")
    frame = _validate(_read_text(path), schema, path)
    _duplicates(frame, ["patient_id"], path)
    early = frame["admission_date"] < frame["onset_date"]
    if early.any():
        row = int(np.flatnonzero(early.to_numpy())[0]) + 1
        raise InputError(
            f"{_where(path, row, 'admission_date')}: admission_date is before onset_date"
        )
    if "discharge_date" in frame.columns:
        late = frame["discharge_date"] < frame["admission_date"]
        if late.any():
            row = int(np.flatnonzero(late.to_numpy())[0]) + 1
            raise InputError(
                f"{_where(path, row, 'discharge_date')}: discharge_date is before admission_date"
            )
    return _type_extra_columns(frame, set(schema["properties"]))


def read_readings(path: str | Path) -> pd.DataFrame:
    """The radiologists' readings: one row per scan (patient_id, study_date), ct_score 0-25."""
    path = Path(path)
    schema = load_schema("readings")
    frame = _validate(_read_text(path), schema, path)
    _duplicates(frame, ["patient_id", "study_date"], path)
    lobe_columns = [f"score_{lobe}" for lobe in LOBES]
    if all(c in frame.columns for c in lobe_columns):
        scores = frame[lobe_columns]
        total = scores.sum(axis=1, min_count=len(LOBES))
        off = total.notna() & (total != frame["ct_score"])
        if off.any():
            row = int(np.flatnonzero(off.to_numpy())[0]) + 1
            log.warning(
                "%s: ct_score differs from the sum of the per-lobe scores",
                _where(path, row, "ct_score"),
            )
        counted = (scores > 0).sum(axis=1).astype(float).where(scores.notna().all(axis=1))
        if "involved_lobes" in frame.columns:
            frame["involved_lobes"] = frame["involved_lobes"].fillna(counted)
        else:
            frame["involved_lobes"] = counted
    return frame


def read_patients(path: str | Path, key_columns: tuple[str, ...]) -> tuple[pd.DataFrame, str]:
    """A centre's patients sheet (``schemas/patients.schema.yaml``): the frame and its one key
    column of ``key_columns``; every key cell filled, no key listed twice."""
    path = Path(path)
    frame = _validate(_read_text(path), load_schema("patients"), path)
    keys = [c for c in key_columns if c in frame.columns]
    if len(keys) != 1:
        raise InputError(
            f"{path}: a patients sheet needs exactly one key column of {', '.join(key_columns)}; "
            f"found {', '.join(keys) or 'none'}"
        )
    blank = frame[keys[0]].isna()
    if blank.any():
        row = int(np.flatnonzero(blank.to_numpy())[0]) + 1
        raise InputError(f"{_where(path, row, keys[0])}: {keys[0]} is blank")
    _duplicates(frame, keys, path)
    return frame, keys[0]


def read_scans_table(path: str | Path) -> pd.DataFrame:
    """A per-scan table (``tables/scans.tsv``, possibly from another center)."""
    path = Path(path)
    frame = _validate(_read_text(path), load_schema("scans"), path)
    _duplicates(frame, ["center", "patient_id", "scan_id"], path)
    if "ct_score" not in frame.columns:  # no readings in it: they may come beside it
        frame["ct_score"] = np.nan
    return frame


def attach_readings(scans: pd.DataFrame, readings: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``scans`` with ct_score (and reader_involved_lobes) from the readings.

    Scans are matched on patient_id and study date; a reading fills ct_score (``cohort_stats``
    refuses one that differs from a score the scans table already holds).
    Readings without a scan are logged.
    """
    out = scans.copy()
    key_scans = pd.MultiIndex.from_arrays(
        [out["patient_id"], pd.to_datetime(out["study_date"]).dt.normalize()]
    )
    indexed = readings.set_index(["patient_id", readings["study_date"].dt.normalize()])
    matched = key_scans.isin(indexed.index)
    out["ct_score"] = np.where(
        matched, indexed["ct_score"].reindex(key_scans).to_numpy(), out.get("ct_score", np.nan)
    ).astype(float)
    if "involved_lobes" in readings.columns:
        out["reader_involved_lobes"] = (
            indexed["involved_lobes"].reindex(key_scans).to_numpy().astype(float)
        )
    unused = ~indexed.index.isin(key_scans)
    if unused.any():
        log.warning("%d readings match no scan (patient_id and study_date)", int(unused.sum()))
    return out
