"""A centre's patients sheet names the patients of anonymised exports (issue 19, point 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from dicom_factory import REAL_DATA, REAL_MISSING, ramp_volume, write_series

from serialct.config import validate_config
from serialct.dicom.index import write_index
from serialct.dicom.patient_map import read_patient_map
from serialct.errors import InputError
from serialct.steps import convert_scan, index_center


def _sheet(path: Path, rows: list[dict[str, str]]) -> Path:
    pd.DataFrame(rows).to_csv(path, sep="," if path.suffix == ".csv" else "\t", index=False)
    return path


def _export(root: Path) -> None:
    """Two anonymised studies: PatientID blank in one, an anonymiser's code in the other; the
    second also lacks its StudyDate."""
    write_series(root / "export" / "case 1", ramp_volume((4, 4, 4)), patient_id="",
                 study_uid="1.2.3.1", series_uid="1.2.3.1.1")  # fmt: skip
    write_series(root / "export" / "case 2", ramp_volume((4, 4, 4)), patient_id="ANON-77",
                 study_uid="1.2.3.2", series_uid="1.2.3.2.1", study_date="")  # fmt: skip


def _scans(root: Path, tmp: Path, sheet: Path | None, **kw: object) -> pd.DataFrame:
    return write_index(root, "C1", tmp / "idx" / "C1.tsv", tmp / "idx" / "C1", patients=sheet,
                       **kw)  # fmt: skip


@pytest.mark.parametrize(
    ("key", "values"),
    [
        ("folder", ["export/case 1", "export/case 2"]),
        ("StudyInstanceUID", ["1.2.3.1", "1.2.3.2"]),
    ],
)
def test_studies_take_the_sheets_patient_and_date(tmp_path: Path, key: str, values) -> None:
    root = tmp_path / "dicom"
    _export(root)
    assert _scans(root, tmp_path / "none", None).empty  # without the sheet: nothing usable
    rows = [{"patient_id": "P1", key: values[0]},
            {"patient_id": "P2", key: values[1], "study_date": "2020-03-04"}]  # fmt: skip
    sheet = _sheet(tmp_path / "patients.tsv", rows)
    config = validate_config({"results": str(tmp_path / "results"), "centers": {
        "C1": {"dicom": str(root), "clinical": "c.tsv", "patients": str(sheet)}}})  # fmt: skip
    index = tmp_path / "results" / "index" / "C1.tsv"
    index_center(root, "C1", index, index.with_suffix(""), config)  # the config key's path
    scans = pd.read_csv(index, sep="\t", dtype=str)
    assert sorted(zip(scans["patient_id"], scans["scan_id"], strict=True)) == [
        ("P1", "20200201"),  # its own StudyDate
        ("P2", "20200304"),  # the sheet's date, the tag being blank
    ]


def test_patient_id_key_and_pseudonyms(tmp_path: Path) -> None:
    root = tmp_path / "dicom"
    _export(root)
    sheet = _sheet(tmp_path / "p.csv", [{"patient_id": "P2", "PatientID": "ANON-77",
                                         "study_date": "2020-03-04"}])  # fmt: skip
    scans = _scans(root, tmp_path, sheet)
    assert scans["patient_id"].tolist() == ["P2"]  # the blank-id study stays unnamed
    key = tmp_path / "key.txt"
    key.write_text("a secret key of enough length 0123456789\n")
    pseudo = {"key_file": str(key), "mapping": str(tmp_path / "map.tsv"), "prefix": "S-"}
    scans = _scans(root, tmp_path / "p", sheet, pseudonymise=pseudo)
    assert len(scans) == 1 and scans["patient_id"].iloc[0].startswith("S-")
    mapping = pd.read_csv(tmp_path / "map.tsv", sep="\t", dtype=str)
    pseudonyms = dict(zip(mapping.iloc[:, 0], mapping.iloc[:, 1], strict=True))
    assert scans["patient_id"].iloc[0] == pseudonyms["P2"]  # the sheet's id, pseudonymised


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"patient_id": "P1"}], "exactly one key column"),
        ([{"patient_id": "P1", "folder": "a", "PatientID": "1"}], "exactly one key column"),
        ([{"patient_id": "P1", "folder": ""}], "folder is blank"),
        ([{"patient_id": "P1", "folder": "a"}, {"patient_id": "P2", "folder": "a"}], "duplicate"),
        ([{"patient_id": "Jane Doe", "folder": "a"}], "row 1 (line 2), column patient_id"),
        ([{"patient_id": "P1", "folder": "a", "study_date": "4/3/2020"}], "column study_date"),
        ([{"folder": "a"}], "missing required column patient_id"),
    ],
)
def test_bad_sheets_are_refused_in_one_line(tmp_path: Path, rows, message: str) -> None:
    sheet = _sheet(tmp_path / "patients.tsv", rows)
    with pytest.raises(InputError, match="patients.tsv") as info:
        read_patient_map(sheet)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=REAL_MISSING)
def test_real_exports_with_blank_patient_id_convert_when_mapped(tmp_path: Path) -> None:
    """The real samples whose PatientID is blank (Siemens JPEG2000 export, its UIDs blank too;
    lungmask's slices, StudyDate missing as well), named by folder."""
    root = tmp_path / "dicom"
    for name in ("siemens-j2k-abdomen", "lungmask-chest-slices"):
        shutil.copytree(REAL_DATA / name, root / name, ignore=shutil.ignore_patterns("*.nii*"))
    assert _scans(root, tmp_path / "none", None).empty
    sheet = _sheet(tmp_path / "patients.tsv", [
        {"patient_id": "ABD1", "folder": "siemens-j2k-abdomen"},
        {"patient_id": "CHEST1", "folder": "lungmask-chest-slices", "study_date": "2019-05-06"},
    ])  # fmt: skip
    scans = _scans(root, tmp_path, sheet)
    assert sorted(scans["patient_id"]) == ["ABD1", "CHEST1"]
    for manifest in sorted((tmp_path / "idx" / "C1").glob("*/*.json")):
        out = tmp_path / "nifti" / manifest.parent.name
        out.mkdir(parents=True)
        convert_scan(manifest, out / "ct.nii.gz", out / "ct.json")
        sidecar = json.loads((out / "ct.json").read_text())
        assert sidecar["patient_id"] == manifest.parent.name
        assert (out / "ct.nii.gz").stat().st_size > 0


@pytest.mark.integration
@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=REAL_MISSING)
def test_mapped_real_exports_reach_the_scans_table(tmp_path: Path) -> None:
    """The same two real exports through the workflow with the sheet as config
    ``centers.NAME.patients``: both studies are rows of tables/scans.tsv under the sheet's ids
    (with a failed lung QC: an abdomen and a two-slice chest are not whole lungs)."""
    from test_workflow import snakemake

    root = tmp_path / "dicom"
    for name in ("siemens-j2k-abdomen", "lungmask-chest-slices"):
        shutil.copytree(REAL_DATA / name, root / name, ignore=shutil.ignore_patterns("*.nii*"))
    sheet = _sheet(tmp_path / "patients.tsv", [
        {"patient_id": "ABD1", "folder": "siemens-j2k-abdomen"},
        {"patient_id": "CHEST1", "folder": "lungmask-chest-slices", "study_date": "2019-05-06"},
    ])  # fmt: skip
    clinical = _sheet(tmp_path / "clinical.tsv", [
        {"patient_id": p, "severity": "moderate", "onset_date": "2019-01-01",
         "admission_date": "2019-01-02"} for p in ("ABD1", "CHEST1")
    ])  # fmt: skip
    config = tmp_path / "config.yaml"
    center = {"dicom": str(root), "clinical": str(clinical), "patients": str(sheet)}
    config.write_text(json.dumps({"results": str(tmp_path / "results"), "centers": {"A": center}}))
    run = snakemake("--configfile", str(config))
    assert run.returncode == 0, run.stderr[-5000:]
    scans = pd.read_csv(tmp_path / "results" / "tables" / "scans.tsv", sep="\t", dtype=str)
    assert sorted(zip(scans["patient_id"], scans["study_date"], strict=True)) == [
        ("ABD1", "2022-12-08"), ("CHEST1", "2019-05-06")]  # fmt: skip
