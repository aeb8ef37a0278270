import pytest
import yaml

from serialct.config import defaults, load_config
from serialct.errors import InputError


def test_defaults_come_from_the_schema():
    cfg = defaults()
    assert cfg["hu"]["ggo"] == [-750, -300]
    assert cfg["timepoints"]["week1"]["target"] == 7
    assert cfg["results"] == "results"


def _write(tmp_path, payload):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(payload))
    return path


def test_wrong_key_is_named(tmp_path):
    path = _write(tmp_path, {"centers": {"A": {"dicom": "d", "clinical": "c"}}, "resluts": "x"})
    with pytest.raises(InputError, match=r"config.yaml: .*resluts"):
        load_config(path)


def test_bad_center_id_is_named(tmp_path):
    path = _write(tmp_path, {"centers": {"A B": {"dicom": "d", "clinical": "c"}}})
    with pytest.raises(InputError, match="centers"):
        load_config(path)


def test_nested_wrong_type_is_named(tmp_path):
    cfg = {"centers": {"A": {"dicom": "d", "clinical": "c"}}, "hu": {"ggo": [-750]}}
    with pytest.raises(InputError, match="hu/ggo"):
        load_config(_write(tmp_path, cfg))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_every_config_key_of_the_contract_is_accepted(tmp_path):
    """The contract's config block, optional keys included (dicom_export, pooled_tables,
    readings), validates."""
    centers = {"A": {"dicom": "d", "clinical": "c.tsv", "readings": "r.tsv"}}
    payload = {"results": "r", "centers": centers, "pooled_tables": [], "dicom_export": False}
    cfg = load_config(_write(tmp_path, payload))
    assert cfg["dicom_export"] is False and defaults()["dicom_export"] is True
