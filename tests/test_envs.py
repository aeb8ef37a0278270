"""The per-rule conda envs pin the same versions as requirements.lock (the venv)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_every_env_pin_matches_the_lock():
    lock = _lock()
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert envs, "no envs/*.yaml"
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
        assert pip, f"{env.name}: no pinned pip packages"
        for requirement in pip:
            name, _, version = requirement.partition("==")
            assert version, f"{env.name}: {requirement} is not pinned with =="
            assert lock.get(name.lower()) == version, f"{env.name}: {requirement} vs lock"


def test_every_rule_env_exists():
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for line in smk.read_text().splitlines():
            if line.strip().startswith('"../../envs/'):
                assert (smk.parent / line.strip().strip('"')).resolve().is_file(), line
