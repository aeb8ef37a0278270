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


@pytest.fixture
def big_tree(tmp_path):
    root = tmp_path / "dicom"
    for k in range(6):
        write_series(root / f"p{k}", ramp_volume((20, 4, 4)), patient_id=f"P{k}",
                     series_uid=f"1.2.3.{k}")  # fmt: skip
    return root  # 120 files


def test_a_killed_index_resumes_from_its_journal(big_tree, tmp_path, monkeypatch):
    """Rows read before a kill are in the journal; the next index reads only the rest."""
    import serialct.dicom.header_cache as cache_mod

    monkeypatch.setattr(cache_mod, "FLUSH_SECONDS", 0.0)
    cache = tmp_path / "cache" / "headers.tsv"
    real = headers_mod.read_header
    calls: list[str] = []

    def killed_after_50(path):  # noqa: ANN001, ANN202
        if len(calls) == 50:
            raise KeyboardInterrupt  # the job is killed
        calls.append(path)
        return real(path)

    monkeypatch.setattr(headers_mod, "read_header", killed_after_50)
    with pytest.raises(KeyboardInterrupt):
        read_headers(big_tree, cache)
    assert not cache.is_file() and cache_mod.journal_path(cache).is_file()
    calls.clear()
    monkeypatch.setattr(headers_mod, "read_header", lambda p: calls.append(p) or real(p))
    table = read_headers(big_tree, cache)
    assert len(calls) == 70 and len(table) == 120  # the 50 read before the kill are kept
    assert cache.is_file() and not cache_mod.journal_path(cache).exists()
    assert table.equals(read_headers(big_tree))


def test_parallel_reading_and_progress(big_tree, monkeypatch, caplog):
    monkeypatch.setattr(headers_mod, "PARALLEL_MIN_FILES", 10)
    monkeypatch.setattr(headers_mod, "PROGRESS_SECONDS", 0.0)
    with caplog.at_level("INFO", logger="serialct"):
        parallel = read_headers(big_tree, workers=2)
    assert parallel.equals(read_headers(big_tree))
    assert "of 120 headers read (" in caplog.text and "s left)" in caplog.text
