"""Bad input: every command exits 2 with one line naming the file and the problem."""

import pytest

from serialct.cli import main


def _clinical(tmp_path, severity="moderate", admission="2020-01-05"):
    path = tmp_path / "clinical.tsv"
    path.write_text(
        "patient_id\tseverity\tonset_date\tadmission_date\n"
        f"P1\t{severity}\t2020-01-01\t{admission}\n"
    )
    return path


def _scans(tmp_path):
    path = tmp_path / "scans.tsv"
    path.write_text("center\tpatient_id\tscan_id\tstudy_date\nA\tP1\t20200105\t2020-01-05\n")
    return path


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"severity": "mild"}, ["clinical.tsv", "severity", "moderate or severe"]),
        ({"admission": "2020-13-45"}, ["clinical.tsv", "admission_date"]),
    ],
)
def test_stats_names_file_row_and_column(tmp_path, capsys, kwargs, words):
    clinical = _clinical(tmp_path, **kwargs)
    code = main(["stats", "--scans", str(_scans(tmp_path)), "--clinical", str(clinical), "out"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    for word in words:
        assert word in err


def test_convert_missing_folder(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert "nope" in capsys.readouterr().err


def test_quantify_missing_images(tmp_path, capsys):
    assert main(["quantify", str(tmp_path)]) == 2
    assert "ct.nii.gz: image not found" in capsys.readouterr().err


def test_synth_rejects_tiny_shape(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", str(tmp_path), "--patients", "1", "--shape", "4,4,4"])
    assert exit_info.value.code == 2


def test_stats_names_missing_scans_columns(tmp_path, capsys):
    clinical = _clinical(tmp_path)
    code = main(["stats", "--scans", str(_scans(tmp_path)), "--clinical", str(clinical), "out"])
    assert code == 2
    assert "scans.tsv: missing required column" in capsys.readouterr().err


def test_pseudonymise_sheet(tmp_path):
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef")
    out = tmp_path / "clinical.tsv"
    assert main(["pseudonymise-sheet", str(_clinical(tmp_path)), str(out), "--key", str(key)]) == 0
    text = out.read_text()
    assert "P1" not in text and "\nS-" in text
