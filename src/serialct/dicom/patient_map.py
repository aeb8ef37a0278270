"""Naming patients of anonymised exports: a centre's ``patients`` sheet.

Anonymisers often blank PatientID, or replace it with a code that is not the clinical sheet's
id. Config ``centers.NAME.patients`` names a sheet (TSV or CSV) that says whose each study is:
a ``patient_id`` column (the clinical sheet's id), one key column, and optionally ``study_date``
(YYYY-MM-DD or YYYYMMDD; fills a blank or missing StudyDate, which the scan id is made of).
The key column is one of :data:`KEY_COLUMNS`:

- ``folder``: a folder under the centre's DICOM root (relative to it); every file below it
  belongs to that patient (the usual layout of an export, and the only key left when an
  anonymiser blanks the UIDs too);
- ``StudyInstanceUID``: the study's DICOM tag;
- ``PatientID``: the DICOM PatientID as stored (an anonymiser's code).

AccessionNumber is not offered: it identifies a patient's examination in the hospital's systems,
and the index never reads it (so that no output or cache holds it).

A file the sheet matches takes the sheet's patient id (and date), whatever its tags say; other
files keep their tags. With config ``pseudonymise`` the sheet's ids are pseudonymised like
PatientIDs read from the files, and a ``PatientID`` key is matched after pseudonymising it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pandas as pd

from serialct.sheets import read_patients

KEY_COLUMNS: Final = ("folder", "StudyInstanceUID", "PatientID")


@dataclass(frozen=True)
class PatientMap:
    """A validated ``patients`` sheet: ``key`` (one of KEY_COLUMNS) value -> (patient id,
    YYYYMMDD study date or "")."""

    path: Path
    key: str
    rows: dict[str, tuple[str, str]]


def read_patient_map(path: str | Path) -> PatientMap:
    """Read and check a ``patients`` sheet (schemas/patients.schema.yaml); InputError naming
    the file, the row and the problem."""
    frame, key = read_patients(path, KEY_COLUMNS)
    dates = frame["study_date"] if "study_date" in frame.columns else pd.Series(pd.NaT, frame.index)
    rows = {}
    for value, patient, date in zip(frame[key], frame["patient_id"], dates, strict=True):
        value = os.path.normpath(str(value)).strip("/") if key == "folder" else str(value)
        rows[value] = (str(patient), "" if pd.isna(date) else date.strftime("%Y%m%d"))
    return PatientMap(Path(path), key, rows)


def apply_patient_map(
    headers: pd.DataFrame,
    root: Path,
    patients: PatientMap,
    map_id: Callable[[str], str] | None = None,
) -> pd.DataFrame:
    """``headers`` (one row per file, serialct.dicom.headers) with PatientID, and a blank
    StudyDate, taken from ``patients`` where a file matches; ``map_id`` pseudonymises."""
    out = headers.copy()
    if out.empty:
        return out
    if patients.key == "folder":
        root = Path(os.path.abspath(root))
        relative = [os.path.relpath(p, root) for p in out["path"]]
        found = [_folder_match(r, patients.rows) for r in relative]
    else:
        lookup = patients.rows
        if patients.key == "PatientID" and map_id is not None:
            lookup = {map_id(k): v for k, v in lookup.items()}
        found = [lookup.get(str(v).strip()) for v in out[patients.key]]
    matched = pd.Series([f is not None for f in found], index=out.index)
    ids = [f[0] for f in found if f is not None]
    out.loc[matched, "PatientID"] = [map_id(i) for i in ids] if map_id is not None else ids
    dates = pd.Series([f[1] if f is not None else "" for f in found], index=out.index)
    fill = matched & (dates != "") & (out["StudyDate"].astype(str).str.strip() == "")
    out.loc[fill, "StudyDate"] = dates[fill]
    return out


def _folder_match(relative: str, rows: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    """The entry of the deepest listed folder that contains the file at ``relative``."""
    parts = Path(relative).parts[:-1]
    for depth in range(len(parts), 0, -1):
        hit = rows.get("/".join(parts[:depth]))
        if hit is not None:
            return hit
    return None
