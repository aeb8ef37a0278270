import os

from dicom_factory import ramp_volume, write_series

from serialct.dicom.index import read_headers, tree_fingerprint


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
