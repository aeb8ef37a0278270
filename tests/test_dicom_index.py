import json
import logging
import os

import pandas as pd
import pytest
from dicom_factory import CORONAL, REAL_DATA, REAL_MISSING, ramp_volume, write_series

from serialct.dicom.index import rank_series, read_headers, select_scans, write_index


def test_best_series_of_a_study_is_chosen_and_others_logged(tmp_path, caplog):
    write_series(
        tmp_path / "thick",
        ramp_volume((4, 4, 4)),
        series_uid="1.9.5",
        series_number="2",
        thickness=5.0,
        step=5.0,
    )
    write_series(
        tmp_path / "thin",
        ramp_volume((12, 4, 4)),
        series_uid="1.9.1",
        series_number="3",
        thickness=1.0,
        step=1.0,
    )
    write_series(
        tmp_path / "loc",
        ramp_volume((1, 4, 4)),
        series_uid="1.9.9",
        series_number="1",
        image_type="ORIGINAL\\PRIMARY\\LOCALIZER",
        orientation=CORONAL,
    )
    write_series(
        tmp_path / "cor",
        ramp_volume((20, 4, 4)),
        series_uid="1.9.7",
        series_number="5",
        orientation=CORONAL,
        image_type="DERIVED\\SECONDARY",
    )
    with caplog.at_level(logging.INFO, logger="serialct"):
        scans = select_scans(read_headers(tmp_path), "C1")
    assert len(scans) == 1
    scan = scans.iloc[0]
    assert (scan["center"], scan["patient_id"], scan["scan_id"]) == ("C1", "P001", "20200201")
    assert scan["study_date"] == "2020-02-01"
    assert scan["series_uid"] == "1.9.1" and scan["n_files"] == 12
    assert scan["slice_thickness"] == pytest.approx(1.0)
    assert scan["files"] == sorted(scan["files"]) and len(scan["files"]) == 12
    text = caplog.text
    assert "1.9.5" in text and "skipped, " in text  # the thick series, not chosen
    assert "not axial" in text and "LOCALIZER" in text


def test_same_day_studies_get_suffixes_by_study_time(tmp_path):
    write_series(
        tmp_path / "a",
        ramp_volume((3, 4, 4)),
        study_uid="1.5.9",
        series_uid="1.5.9.1",
        study_time="080000",
    )
    write_series(
        tmp_path / "b",
        ramp_volume((3, 4, 4)),
        study_uid="1.5.1",
        series_uid="1.5.1.1",
        study_time="150000",
    )
    write_series(
        tmp_path / "c",
        ramp_volume((3, 4, 4)),
        study_uid="1.6",
        series_uid="1.6.1",
        study_date="20200210",
    )
    scans = select_scans(read_headers(tmp_path), "C1")
    assert scans["scan_id"].tolist() == ["20200201", "20200201-2", "20200210"]
    assert scans["study_uid"].tolist() == ["1.5.9", "1.5.1", "1.6"]


def test_bad_patient_id_is_skipped_with_reason_and_others_continue(tmp_path):
    write_series(tmp_path / "bad", ramp_volume((3, 4, 4)), patient_id="Doe^Jane", study_uid="1.1")
    write_series(tmp_path / "ok", ramp_volume((3, 4, 4)), patient_id="P2", study_uid="1.2")
    scans, table = rank_series(read_headers(tmp_path), "C1")
    assert scans["patient_id"].tolist() == ["P2"]
    bad = table[~table["chosen"]].iloc[0]
    assert bad["patient_id"] == "" and "PatientID is blank or not a usable" in bad["reason"]
    assert "Doe" not in table.to_csv(sep="\t")


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=REAL_MISSING)
def test_real_siemens_blank_patient_id_is_reported_not_raised(tmp_path):
    scans = write_index(REAL_DATA / "siemens-j2k-abdomen", "S", tmp_path / "S.tsv", tmp_path / "S")
    assert scans.empty
    table = pd.read_csv(tmp_path / "S.series.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert table["chosen"].tolist() == ["False"]
    assert table["reason"].iloc[0].startswith("tag PatientID is blank")


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=REAL_MISSING)
def test_real_ge_series_indexed():
    scans = select_scans(read_headers(REAL_DATA / "ge-3slice-lung-bases"), "GE")
    assert scans[["patient_id", "scan_id", "study_date", "n_files"]].values.tolist() == [
        ["99000", "20030417", "2003-04-17", 3]
    ]


def _mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*.json")}


def test_write_index_writes_manifests_only_when_changed(tmp_path):
    dicom, out = tmp_path / "dicom", tmp_path / "results" / "index"
    p1 = write_series(
        dicom / "p1", ramp_volume((3, 4, 4)), patient_id="P1", study_uid="1.1", series_uid="1.1.1"
    )
    write_series(
        dicom / "p2", ramp_volume((3, 4, 4)), patient_id="P2", study_uid="1.2", series_uid="1.2.1"
    )
    tsv, manifests = out / "C1.tsv", out / "C1"
    cache = tmp_path / "cache.tsv"
    write_index(dicom, "C1", tsv, manifests, cache)
    table = pd.read_csv(tsv, sep="\t", dtype=str)
    assert "files" not in table.columns
    assert table[["patient_id", "scan_id", "study_date"]].values.tolist() == [
        ["P1", "20200201", "2020-02-01"],
        ["P2", "20200201", "2020-02-01"],
    ]
    m1 = manifests / "P1" / "20200201.json"
    data = json.loads(m1.read_text())
    assert data["files"] == sorted(str(p) for p in p1) and len(data["sha1"]) == 40
    assert set(data) >= {"center", "patient_id", "scan_id", "study_date", "series_uid", "files"}

    old = 10**18  # mark both manifests with an old mtime: a rewrite would change it
    for path in _mtimes(manifests):
        os.utime(path, ns=(old, old))
    write_series(
        dicom / "p1b",
        ramp_volume((3, 4, 4)),
        patient_id="P1",
        study_uid="1.3",
        series_uid="1.3.1",
        study_date="20200209",
    )
    write_index(dicom, "C1", tsv, manifests, cache)
    after = _mtimes(manifests)
    assert after.pop(manifests / "P1" / "20200209.json") != old  # new scan, new manifest
    assert set(after.values()) == {old}  # untouched

    os.utime(p1[0], ns=(2 * old, 2 * old))  # a changed file of P1's first scan
    write_index(dicom, "C1", tsv, manifests, cache)
    assert m1.stat().st_mtime_ns != old
    assert json.loads(m1.read_text())["sha1"] != data["sha1"]
    assert (manifests / "P2" / "20200201.json").stat().st_mtime_ns == old

    for path in (dicom / "p2").iterdir():
        path.unlink()
    scans = write_index(dicom, "C1", tsv, manifests, cache)
    assert not (manifests / "P2").exists()
    assert sorted(scans["patient_id"]) == ["P1", "P1"]


def test_empty_tree_gives_empty_index(tmp_path):
    (tmp_path / "dicom").mkdir()
    (tmp_path / "dicom" / "notes.txt").write_text("no images here")
    scans = write_index(tmp_path / "dicom", "C1", tmp_path / "C1.tsv", tmp_path / "C1")
    assert scans.empty
    assert pd.read_csv(tmp_path / "C1.tsv", sep="\t").columns[:3].tolist() == [
        "center",
        "patient_id",
        "scan_id",
    ]
