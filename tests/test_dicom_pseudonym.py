"""No identities out: planted names never reach any output; optional keyed pseudonyms."""

import gzip
import json
import logging

import nibabel as nib
import pandas as pd
import pytest
from dicom_factory import ramp_volume, write_series

from serialct.config import defaults
from serialct.dicom.convert import convert_dicom_dir, convert_series
from serialct.dicom.index import write_index
from serialct.dicom.pseudonym import (
    check_outside,
    pseudonymise_id,
    pseudonymise_sheet,
    read_key,
)
from serialct.errors import InputError
from serialct.steps import index_center

PLANTED = {
    "PatientName": "PLANTED^NAME",
    "PatientBirthDate": "19010203",
    "PatientAddress": "PLANTEDSTREET 9",
    "InstitutionName": "PLANTED HOSPITAL",
    "InstitutionAddress": "PLANTEDTOWN",
    "AccessionNumber": "ACC777111",
    "ReferringPhysicianName": "PLANTED^DOC",
}
NEEDLES = [b"PLANTED", b"19010203", b"ACC777111"]


def _cohort(root):
    # folder names are copied into manifests, cache and logs as paths: keep them neutral
    for k, pid in enumerate(["PA1", "PB2"]):
        write_series(
            root / f"case{k}", ramp_volume((4, 6, 6), seed=k), patient_id=pid, study_uid=f"1.{k}",
            series_uid=f"1.{k}.1", extra=PLANTED,
        )  # fmt: skip


def _all_bytes(root):
    """Every output file's bytes, gzip members decompressed as well."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        yield path, data
        if path.name.endswith(".gz"):
            yield path, gzip.decompress(data)


def _run(tmp_path, caplog, pseudonymise=None):
    dicom, results = tmp_path / "dicom", tmp_path / "results"
    _cohort(dicom)
    with caplog.at_level(logging.DEBUG, logger="serialct"):
        scans = write_index(
            dicom, "C1", results / "index" / "C1.tsv", results / "index" / "C1",
            cache=results / "index" / "C1.headers-cache.tsv", pseudonymise=pseudonymise,
        )  # fmt: skip
        for manifest in sorted((results / "index" / "C1").rglob("*.json")):
            scan = json.loads(manifest.read_text())
            out = results / "scans" / scan["patient_id"] / scan["scan_id"]
            convert_series(scan["files"], out / "ct.nii.gz", out / "ct.json", scan["patient_id"])
        (results / "log.txt").write_text(caplog.text)
        caplog.clear()
        convert_dicom_dir(dicom, results / "convert")
    (results / "convert" / "log.txt").write_text(caplog.text)
    return scans, results


def test_planted_identities_never_reach_any_output(tmp_path, caplog):
    scans, results = _run(tmp_path, caplog)
    assert sorted(scans["patient_id"]) == ["PA1", "PB2"]
    n_files = 0
    for path, data in _all_bytes(results):
        n_files += 1
        for needle in NEEDLES:
            assert needle not in data, f"{needle!r} leaked into {path}"
    assert n_files >= 12  # index, series table, cache, manifests, 4 NIfTI, sidecars, log
    header = nib.load(results / "scans" / "PA1" / "20200201" / "ct.nii.gz").header
    assert header["descrip"].tobytes().rstrip(b"\0") == b"serialct"
    assert header["db_name"].tobytes().strip(b"\0") == b""


def test_pseudonymised_index_keeps_real_ids_out_of_results(tmp_path, caplog):
    key_file = tmp_path / "secret.key"
    key_file.write_text("correct horse battery staple\n")
    mapping = tmp_path / "private" / "mapping.tsv"
    cfg = {"key_file": str(key_file), "mapping": str(mapping), "prefix": "S-"}
    scans, results = _run(tmp_path, caplog, cfg)
    key = read_key(key_file)
    expected = {pseudonymise_id(p, key) for p in ("PA1", "PB2")}
    assert set(scans["patient_id"]) == expected
    assert all(p.startswith("S-") and len(p) == 14 for p in expected)
    index_outputs = [(p, d) for p, d in _all_bytes(results) if "convert" not in p.parts]
    for path, data in index_outputs:  # `serialct convert` is no pseudonymising step
        for needle in [*NEEDLES, b"PA1", b"PB2"]:
            assert needle not in data, f"{needle!r} leaked into {path}"
    table = pd.read_csv(mapping, sep="\t", dtype=str)
    assert dict(zip(table["patient_id"], table["pseudonym"], strict=True)) == {
        "PA1": pseudonymise_id("PA1", key),
        "PB2": pseudonymise_id("PB2", key),
    }
    assert pseudonymise_id("PA1", "other key") != pseudonymise_id("PA1", key)


def test_pseudonymisation_refuses_a_mapping_inside_results_and_a_missing_key(tmp_path):
    with pytest.raises(InputError, match="outside the results folder"):
        check_outside(tmp_path / "results" / "map.tsv", tmp_path / "results")
    check_outside(tmp_path / "map.tsv", tmp_path / "results")
    with pytest.raises(InputError, match="key file not found"):
        read_key(tmp_path / "nope.key")
    config = defaults() | {"results": str(tmp_path / "results")}
    config["pseudonymise"] = {
        "key_file": str(tmp_path / "k"),
        "mapping": str(tmp_path / "results" / "m.tsv"),
    }
    with pytest.raises(InputError, match="pseudonymise.mapping"):
        index_center(tmp_path, "C1", tmp_path / "results" / "i.tsv", tmp_path / "m", config)


def test_sheet_pseudonymised_with_the_same_key(tmp_path):
    key_file = tmp_path / "k.key"
    key_file.write_text("s3cret")
    sheet = tmp_path / "clinical.csv"
    sheet.write_text("patient_id,severity,age\nPA1,severe,61\nPB2,moderate,47\n")
    table = pseudonymise_sheet(sheet, key_file, tmp_path / "out" / "clinical.csv")
    assert table["patient_id"].tolist() == [pseudonymise_id(p, b"s3cret") for p in ("PA1", "PB2")]
    text = (tmp_path / "out" / "clinical.csv").read_text()
    assert "PA1" not in text and text.endswith("moderate,47\n")
    with pytest.raises(InputError, match="no column patient_id"):
        (tmp_path / "bad.tsv").write_text("id\tx\n1\t2\n")
        pseudonymise_sheet(tmp_path / "bad.tsv", key_file, tmp_path / "o.tsv")
