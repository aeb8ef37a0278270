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
