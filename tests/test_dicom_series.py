import numpy as np
import pytest
from dicom_factory import (
    CORONAL,
    REAL_DATA,
    REAL_MISSING,
    ramp_volume,
    write_series,
)

from serialct.dicom.headers import read_headers
from serialct.dicom.series import iso_date, list_series, parse_numbers, slice_normal


def test_grouping_by_tags_with_shuffled_names_in_mixed_folders(tmp_path):
    rng = np.random.default_rng(3)
    folders = ["a", "b/c", "d"]

    def names(n):
        return [f"{folders[rng.integers(3)]}/{rng.integers(1 << 40):x}" for _ in range(n)]

    one = write_series(
        tmp_path, ramp_volume((6, 4, 4)), names=names(6), series_uid="1.9.1", series_number="3"
    )
    two = write_series(
        tmp_path,
        ramp_volume((4, 4, 4)),
        names=names(4),
        series_uid="1.9.2",
        series_number="4",
        thickness=5.0,
        step=5.0,
    )
    series = list_series(read_headers(tmp_path)).set_index("series_uid")
    assert len(series) == 2
    assert series.loc["1.9.1", "files"] == sorted(str(p) for p in one)
    assert series.loc["1.9.2", "files"] == sorted(str(p) for p in two)
    assert series.loc["1.9.2", "slice_thickness"] == pytest.approx(5.0)
    assert series["skip_reason"].tolist() == ["", ""]
    assert series["is_axial"].all()


def test_localizers_and_non_ct_are_flagged(tmp_path):
    write_series(tmp_path / "ct", ramp_volume((5, 4, 4)), series_uid="1.9.1")
    write_series(
        tmp_path / "loc",
        ramp_volume((1, 4, 4)),
        series_uid="1.9.2",
        image_type="ORIGINAL\\PRIMARY\\LOCALIZER",
        orientation=CORONAL,
    )
    write_series(
        tmp_path / "scout2",
        ramp_volume((2, 4, 4)),
        series_uid="1.9.3",
        image_type="ORIGINAL\\PRIMARY",
        orientation=CORONAL,
    )
    write_series(tmp_path / "mr", ramp_volume((5, 4, 4)), series_uid="1.9.4", modality="MR")
    write_series(
        tmp_path / "sc",
        ramp_volume((1, 4, 4)),
        series_uid="1.9.5",
        sop_class="1.2.840.10008.5.1.4.1.1.7",
    )
    reasons = list_series(read_headers(tmp_path)).set_index("series_uid")["skip_reason"]
    assert reasons["1.9.1"] == ""
    assert "LOCALIZER" in reasons["1.9.2"]
    assert reasons["1.9.3"].startswith("localizer (2 slices of another orientation")
    assert "MR is not CT" in reasons["1.9.4"]
    assert reasons["1.9.5"] == "secondary capture"


def test_blank_series_uid_falls_back_to_other_tags(tmp_path):
    write_series(tmp_path / "x", ramp_volume((4, 4, 4)), series_uid="", series_number="2")
    write_series(tmp_path / "y", ramp_volume((3, 4, 4)), series_uid="", series_number="3")
    series = list_series(read_headers(tmp_path))
    assert sorted(series["n_files"]) == [3, 4]
    assert series["series_key"].nunique() == 2


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=REAL_MISSING)
def test_real_siemens_blank_uids_form_one_series():
    headers = read_headers(REAL_DATA / "siemens-j2k-abdomen")
    assert (headers["SeriesInstanceUID"] == "").all() and (headers["SOPClassUID"] == "").all()
    series = list_series(headers)
    assert len(series) == 1
    row = series.iloc[0]
    assert row["n_files"] == 20 and row["skip_reason"] == "" and row["series_uid"] == ""
    assert row["series_description"] == "CT Body 3.0"


def test_small_helpers():
    assert parse_numbers("1\\-2.5\\3") == (1.0, -2.5, 3.0)
    assert parse_numbers("") == ()
    assert np.allclose(slice_normal((1, 0, 0, 0, 1, 0)), (0, 0, 1))
    assert np.allclose(slice_normal(CORONAL), (0, 1, 0))
    assert iso_date("20200229") == "2020-02-29"
    with pytest.raises(ValueError):
        iso_date("20200230")
