"""Input sheets: typed on success, one-line InputError naming file, row and column on failure."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from cohort_factory import make_cohort, write_sheets

from serialct.errors import InputError
from serialct.sheets import attach_readings, read_clinical, read_readings, read_scans_table

CLINICAL = (
    "patient_id\tseverity\tonset_date\tadmission_date\tage\tsex\tfever\n"
    "P1\tmoderate\t2020-02-01\t2020-02-05\t45\tmale\tyes\n"
    "P2\tsevere\t2020-02-03\t2020-02-10\t61\tfemale\tno\n"
)
READINGS = (
    "patient_id,study_date,ct_score,score_rul,score_rml,score_rll,score_lul,score_lll\n"
    "P1,2020-02-05,3,1,0,1,0,1\n"
    "P1,2020-02-12,6,2,1,1,1,1\n"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_clinical_types_and_extra_columns(tmp_path: Path) -> None:
    frame = read_clinical(write(tmp_path, "clinical.tsv", CLINICAL))
    assert list(frame["patient_id"]) == ["P1", "P2"]
    assert frame["onset_date"].iloc[1] == pd.Timestamp("2020-02-03")
    assert frame["age"].dtype == float and frame["age"].tolist() == [45.0, 61.0]
    assert frame["sex"].tolist() == ["male", "female"]  # extra text column kept


def test_csv_and_sniffed_separator(tmp_path: Path) -> None:
    csv_text = CLINICAL.replace("\t", ",")
    assert len(read_clinical(write(tmp_path, "c.csv", csv_text))) == 2
    assert len(read_clinical(write(tmp_path, "c.txt", CLINICAL.replace("\t", ";")))) == 2


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "\tmoderate\t",
            "\tmild\t",
            "row 1 (line 2), column severity: severity must be moderate or severe",
        ),
        (
            "2020-02-10",
            "2020-02-30",
            "row 2 (line 3), column admission_date: admission_date must be a valid date",
        ),
        ("P2\t", "P1\t", "row 2 (line 3), column patient_id: duplicate patient_id"),
        (
            "2020-02-05",
            "2020-01-20",
            "row 1 (line 2), column admission_date: admission_date is before onset_date",
        ),
        ("P1\t", "P 1\t", "row 1 (line 2), column patient_id"),
        ("onset_date", "onset", "missing required column onset_date"),
    ],
)
def test_clinical_errors(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = write(tmp_path, "clinical.tsv", CLINICAL.replace(old, new, 1))
    with pytest.raises(InputError) as info:
        read_clinical(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert expected in message


def test_read_readings_counts_involved_lobes(tmp_path: Path) -> None:
    frame = read_readings(write(tmp_path, "readings.csv", READINGS))
    assert frame["ct_score"].tolist() == [3.0, 6.0]
    assert frame["involved_lobes"].tolist() == [3.0, 5.0]
    assert frame["study_date"].iloc[0] == pd.Timestamp("2020-02-05")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            ",3,1,",
            ",26,1,",
            "row 1 (line 2), column ct_score: ct_score must be between 0 and 25, got 26",
        ),
        (",6,2,", ",6,7,", "row 2 (line 3), column score_rul: score_rul must be between 0 and 5"),
        (
            "2020-02-12",
            "2020-02-05",
            "row 2 (line 3), column study_date: duplicate patient_id and study_date",
        ),
        (",3,1,", ",x,1,", "column ct_score: ct_score must be a number, got 'x'"),
        (",3,1,", ",,1,", "column ct_score: ct_score is empty"),
    ],
)
def test_readings_errors(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = write(tmp_path, "readings.csv", READINGS.replace(old, new, 1))
    with pytest.raises(InputError, match=re.escape(expected)):
        read_readings(path)


def test_scans_table_round_trip_and_attach(tmp_path: Path) -> None:
    scans, clinical = make_cohort(4, seed=1)
    scans_path, clinical_path = write_sheets(
        scans.drop(columns="ct_score").assign(ct_score=""), clinical, tmp_path
    )
    table = read_scans_table(scans_path)
    assert len(table) == len(scans)
    assert table["ct_score"].isna().all()
    assert table["lesion_percent"].to_numpy() == pytest.approx(scans["lesion_percent"].to_numpy())
    first = scans.iloc[0]
    readings = pd.DataFrame(
        {
            "patient_id": [first["patient_id"]],
            "study_date": [pd.Timestamp(first["study_date"])],
            "ct_score": [7.0],
            "involved_lobes": [2.0],
        }
    )
    merged = attach_readings(table, readings)
    assert merged["ct_score"].iloc[0] == 7.0
    assert merged["reader_involved_lobes"].iloc[0] == 2.0
    assert merged["ct_score"].iloc[1:].isna().all()
    assert len(read_clinical(clinical_path)) == 4


def test_scans_table_errors(tmp_path: Path) -> None:
    scans, clinical = make_cohort(2, seed=1)
    path, _ = write_sheets(scans.drop(columns="iou"), clinical, tmp_path)
    with pytest.raises(InputError, match="missing required column iou"):
        read_scans_table(path)
    bad = scans.copy()
    bad.loc[3, "lesion_percent"] = 120.0
    path, _ = write_sheets(bad, clinical, tmp_path)
    with pytest.raises(InputError, match=r"row 4 \(line 5\), column lesion_percent"):
        read_scans_table(path)
