import os

import numpy as np
import pytest
from dicom_factory import ramp_volume, write_series

import serialct.dicom.headers as headers_mod
from serialct.dicom.headers import COLUMNS, read_headers
from serialct.errors import InputError


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "dicom"
    write_series(root / "s1", ramp_volume((4, 4, 4)), patient_id="P7")
    (root / "notes.txt").write_text("not a dicom file\n")
    (root / "s1" / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    (root / "empty.dcm").write_bytes(b"")
    return root


def test_one_row_per_dicom_file_and_no_identifying_tags(tree):
    table = read_headers(tree)
    assert len(table) == 4
    assert list(table.columns) == list(COLUMNS)
    assert "PatientName" not in table.columns and "PatientBirthDate" not in table.columns
    assert set(table["PatientID"]) == {"P7"}
    assert table["ImageType"].iloc[0] == "ORIGINAL\\PRIMARY\\AXIAL"
    assert table["TransferSyntaxUID"].iloc[0] == "1.2.840.10008.1.2.1"
    assert all(os.path.isabs(p) for p in table["path"])
    assert table["size"].dtype == np.int64


def test_cache_rereads_only_changed_files(tree, tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "headers.tsv"
    first = read_headers(tree, cache)
    assert cache.is_file()

    calls = []
    real = headers_mod.read_header
    monkeypatch.setattr(headers_mod, "read_header", lambda p: calls.append(p) or real(p))
    second = read_headers(tree, cache)
    assert calls == []  # nothing re-read, non-DICOM files included
    assert second.equals(first)

    changed = sorted(tree.glob("s1/*.dcm"))[0]
    os.utime(changed, ns=(10**18, 10**18))
    third = read_headers(tree, cache)
    assert calls == [str(changed)]
    assert len(third) == 4


def test_missing_root_is_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_headers(tmp_path / "nope")
