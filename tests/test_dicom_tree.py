import logging
import os

import pytest
from dicom_factory import ramp_volume, write_series

from serialct.config import defaults
from serialct.dicom.index import read_headers, tree_fingerprint
from serialct.dicom.tree import NO_INDEX, fingerprint_path, index_fingerprint
from serialct.errors import InputError
from serialct.steps import index_center


def test_fingerprint_changes_only_when_the_tree_changes(tmp_path):
    root = tmp_path / "dicom"
    write_series(root / "a", ramp_volume((3, 4, 4)))
    first = tree_fingerprint(root)
    assert len(first) == 40 and int(first, 16) >= 0
    assert tree_fingerprint(root) == first
    read_headers(root, cache=tmp_path / "cache.tsv")  # reading headers changes nothing
    assert tree_fingerprint(root) == first

    (root / "b").mkdir()
    (root / "b" / "new.dcm").write_bytes(b"x")
    second = tree_fingerprint(root)
    assert second != first

    os.utime(root / "b" / "new.dcm", ns=(1, 1))
    assert tree_fingerprint(root) != second


def test_fingerprint_ignores_hidden_cache_and_depends_on_content_not_location(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        root.mkdir()
        (root / "x.dcm").write_bytes(b"1234")
        os.utime(root / "x.dcm", ns=(10**18, 10**18))
    assert tree_fingerprint(a) == tree_fingerprint(b)
    (a / ".headers.tsv").write_text("cache")
    assert tree_fingerprint(a) == tree_fingerprint(b)


def test_index_fingerprint_falls_back_to_the_recorded_one_when_the_root_is_unmounted(
    tmp_path, caplog
):
    root, index = tmp_path / "dicom", tmp_path / "results" / "index" / "C1.tsv"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.dcm").write_bytes(b"1234")
    assert fingerprint_path(index) == index.with_name("C1.fingerprint")
    assert index_fingerprint(root, index) == tree_fingerprint(root)  # mounted: the tree's own

    missing = tmp_path / "unmounted"
    assert index_fingerprint(missing, index) == NO_INDEX  # never indexed: the index job runs
    fingerprint_path(index).parent.mkdir(parents=True)
    fingerprint_path(index).write_text("abc123\n")
    with caplog.at_level(logging.WARNING, logger="serialct"):
        assert index_fingerprint(missing, index) == "abc123"
    assert f"DICOM root {missing} not found: using the index of " in caplog.text


def test_index_center_records_its_fingerprint_and_names_a_missing_root(tmp_path):
    root, results = tmp_path / "dicom", tmp_path / "results"
    write_series(root / "a", ramp_volume((3, 4, 4)))
    config = defaults() | {"results": str(results)}
    index_center(root, "C1", results / "C1.tsv", results / "C1", config)
    assert (results / "C1.fingerprint").read_text() == tree_fingerprint(root) + "\n"
    index_center(root, "C1", results / "C1.tsv", results / "C1", config, fingerprint="planned")
    assert (results / "C1.fingerprint").read_text() == "planned\n"

    with pytest.raises(InputError, match=r"unmounted: DICOM folder of centre C1 not found"):
        index_center(tmp_path / "unmounted", "C1", results / "C1.tsv", results / "C1", config)
    assert (results / "C1.fingerprint").read_text() == "planned\n"  # the old record is kept
