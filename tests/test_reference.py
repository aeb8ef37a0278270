"""The normal-lung reference: which file a run uses, rebinning onto the config's bins, and a
reference built from a DICOM folder of normal scans (a real chest from ../shared/data/real)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from serialct.config import defaults
from serialct.errors import InputError
from serialct.histogram import histogram_edges, read_reference
from serialct.reference import (
    build_from_dicom,
    on_bins,
    reference_edges,
    reference_path,
)
from serialct.shipped import SHIPPED_REFERENCE

ROOT = Path(__file__).resolve().parents[1]
CIP = ROOT.parent / "shared" / "data" / "real" / "cip-ct64-lung-mask" / "dicom"


def test_on_bins_sums_fine_bins_and_renormalises() -> None:
    edges = np.arange(-10.0, 11.0, 1.0)  # 20 bins of 1 HU
    density = np.arange(20, dtype=float)
    density /= density.sum()
    target = np.array([-8.0, -4.0, 0.0, 4.0])
    out = on_bins((edges, density), target, Path("ref.tsv"))
    expected = np.array([density[2:6].sum(), density[6:10].sum(), density[10:14].sum()])
    assert out == pytest.approx(expected / expected.sum())
    assert on_bins((edges, density), edges, Path("ref.tsv")) is density


@pytest.mark.parametrize("target", [[-8.5, -4.0, 0.0], [-20.0, 0.0], [0.0, 20.0]])
def test_on_bins_refuses_edges_off_the_reference(target) -> None:
    edges = np.arange(-10.0, 11.0, 1.0)
    with pytest.raises(InputError, match="ref.tsv: config histogram bins"):
        on_bins((edges, np.full(20, 0.05)), np.array(target), Path("ref.tsv"))


def test_shipped_reference_serves_the_default_bins() -> None:
    """The shipped file exists, is on the reference bins and reads onto the default config's
    histogram with a normal lung's peak (aerated lung, about -900 to -800 HU)."""
    edges, density = read_reference(SHIPPED_REFERENCE)
    assert np.allclose(edges, reference_edges())
    cfg = defaults()
    target = histogram_edges(cfg["histogram"])
    out = on_bins((edges, density), target, SHIPPED_REFERENCE)
    peak = target[np.argmax(out)]
    assert -950 <= peak <= -750
    summary = json.loads(SHIPPED_REFERENCE.with_suffix(".json").read_text())["summary"]
    assert "normal scan" in summary


def test_reference_path(tmp_path, monkeypatch) -> None:
    cfg = defaults()
    monkeypatch.chdir(tmp_path)  # the default is relative: found from the repository
    assert reference_path(cfg) == SHIPPED_REFERENCE
    own = tmp_path / "own.tsv"
    own.write_text("x")
    assert reference_path(dict(cfg, reference_histogram=str(own))) == own
    built = dict(cfg, results=str(tmp_path / "res"), normal_scans=str(tmp_path))
    assert reference_path(built) == tmp_path / "res" / "reference" / "normal_lung_histogram.tsv"


def test_build_from_dicom_on_a_real_chest(tmp_path) -> None:
    if not CIP.is_dir():
        pytest.skip(f"{CIP} not present")
    out = tmp_path / "ref.tsv"
    table = build_from_dicom([CIP], out, tmp_path / "ref.scans.tsv", defaults(), fingerprint="f")
    assert table["used"].tolist() == [True]
    assert 3000 < table["lung_volume_cm3"].iloc[0] < 6500
    edges, density = read_reference(out)
    assert np.allclose(edges, reference_edges()) and density.sum() == pytest.approx(1.0)
    assert -950 <= edges[np.argmax(density)] <= -750
    assert pd.read_csv(tmp_path / "ref.scans.tsv", sep="\t")["scan"].size == 1
    assert "1 normal scan" in json.loads(out.with_suffix(".json").read_text())["summary"]
    assert out.with_suffix(".fingerprint").read_text().strip() == "f"


def test_build_from_dicom_names_a_missing_folder(tmp_path) -> None:
    with pytest.raises(InputError, match="nowhere: folder of normal scans not found"):
        build_from_dicom([tmp_path / "nowhere"], tmp_path / "r.tsv", tmp_path / "s.tsv", defaults())
    with pytest.raises(InputError, match="normal_scans: no folder"):
        build_from_dicom([], tmp_path / "r.tsv", tmp_path / "s.tsv", defaults())


@pytest.mark.integration
def test_reference_rule_builds_a_sites_reference(tmp_path) -> None:
    """Config normal_scans: ``snakemake reference`` builds the site's reference from the real
    CIP chest; with the folder then unmounted the DAG still builds and nothing reruns."""
    if not CIP.is_dir():
        pytest.skip(f"{CIP} not present")
    normals = tmp_path / "normal scans"
    shutil.copytree(CIP, normals)
    config = tmp_path / "config.yaml"
    results = tmp_path / "results"
    config.write_text(
        yaml.safe_dump(
            {
                "results": str(results),
                "centers": {"A": {"dicom": str(tmp_path / "none"), "clinical": "x.tsv"}},
                "normal_scans": str(normals),
            }
        )
    )
    snakemake = [str(Path(sys.executable).with_name("snakemake")), "--cores", "1"]
    run = subprocess.run(
        [*snakemake, "reference", "--configfile", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    built = results / "reference" / "normal_lung_histogram.tsv"
    edges, density = read_reference(built)
    assert -950 <= edges[np.argmax(density)] <= -750
    scans = pd.read_csv(built.with_suffix(".scans.tsv"), sep="\t")
    assert scans["used"].tolist() == [True]
    shutil.rmtree(normals)
    again = subprocess.run(
        [*snakemake, "reference", "--configfile", str(config), "--dry-run"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr
