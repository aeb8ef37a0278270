"""The opt-in ``train_model`` rule: config -> ``serialct train`` flags, Snakemake wiring."""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from serialct.config import defaults
from serialct.lesion import train_cli
from serialct.lesion.train_args import TRAIN_SHAPE, add_train_arguments

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
MEDSEG = ROOT.parent / "shared" / "data" / "real" / "medseg-covid-2d-train"


def test_train_from_config_maps_every_flag(monkeypatch, tmp_path: Path) -> None:
    seen: list[argparse.Namespace] = []
    monkeypatch.setattr(train_cli, "run_train", lambda args: seen.append(args) or {"metrics": {}})
    config = copy.deepcopy(defaults())
    config["lesion"]["slice_window"] = [-400, 1500]
    config["train"].update(real_slices=["a/b"], volumes=[["ct.nii.gz", "lab.nii.gz"]], kfold=5)
    config["train"].update(epochs=3, lr=0.0005, init="m.pt", real_fraction=0.25)
    config["train"]["shape"] = [96, 256, 256]
    train_cli.train_from_config(config, tmp_path / "m.pt", threads=1)
    (args,) = seen
    reference = argparse.ArgumentParser()
    add_train_arguments(reference)
    flags = vars(reference.parse_args([]))
    assert set(vars(args)) == set(flags)  # every CLI flag is set from the config
    assert args.out == str(tmp_path / "m.pt")
    assert (args.epochs, args.lr, args.kfold, args.init) == (3, 0.0005, 5, "m.pt")
    assert (args.window_center, args.window_width) == (-400.0, 1500.0)
    assert args.real_slices == ["a/b"] and args.volume == [["ct.nii.gz", "lab.nii.gz"]]
    assert args.slice_pixel_spacing == "native" and args.real_fraction == 0.25
    assert args.steps_per_epoch == defaults()["train"]["steps_per_epoch"]
    assert args.shape == (96, 256, 256)
    assert tuple(defaults()["train"]["shape"]) == flags["shape"] == TRAIN_SHAPE  # one default
    with pytest.raises(SystemExit):
        reference.parse_args(["--shape", "96x256x256"])  # Z,Y,X with commas, as synth --shape


def test_auto_slice_window(monkeypatch, tmp_path: Path) -> None:
    """lesion.slice_window auto: one window from the slice sets' pooled histogram, unless both
    flags give one; volume pairs alone read no window."""
    import numpy as np
    from PIL import Image

    from serialct.errors import InputError
    from serialct.lesion.window import MEDSEG_WINDOW, estimate_window, pixel_histogram

    sets = []
    for k in range(2):
        (tmp_path / f"s{k}" / "Imgs").mkdir(parents=True)
        sets.append(str(tmp_path / f"s{k}"))
        for i in range(2):
            px = np.full((40, 40), 200 - 10 * k, np.uint8)
            px[5:35, 5:18] = px[5:35, 22:35] = 30 + 5 * i  # two "lungs"
            Image.fromarray(px).save(tmp_path / f"s{k}" / "Imgs" / f"{i}.png")
    pooled = sum(
        pixel_histogram(np.asarray(Image.open(p))) for p in sorted(tmp_path.glob("s*/Imgs/*.png"))
    )
    assert train_cli.resolve_window("auto", None, None, sets) == estimate_window(pooled)
    assert train_cli.resolve_window("auto", -500.0, 1400.0, sets) == (-500.0, 1400.0)
    assert train_cli.resolve_window("auto", None, None, []) == MEDSEG_WINDOW
    assert train_cli.resolve_window([-600, 1500], None, 1400.0, sets) == (-600.0, 1400.0)
    with pytest.raises(InputError, match="both"):
        train_cli.resolve_window("auto", -500.0, None, sets)

    seen: list[argparse.Namespace] = []
    monkeypatch.setattr(train_cli, "run_train", lambda args: seen.append(args) or {"metrics": {}})
    config = copy.deepcopy(defaults())
    assert config["lesion"]["slice_window"] == "auto"
    train_cli.train_from_config(config, tmp_path / "m.pt")  # phantoms only: no window
    config["train"]["real_slices"] = sets
    train_cli.train_from_config(config, tmp_path / "m.pt")
    assert (seen[0].window_center, seen[0].window_width) == (None, None)
    assert (seen[1].window_center, seen[1].window_width) == estimate_window(pooled)


def _dry_run(config: dict, tmp_path: Path, *targets: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    run = subprocess.run(
        [str(SNAKEMAKE), *targets, "--cores", "1", "--dry-run", "--configfile", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout + run.stderr


@pytest.mark.skipif(not MEDSEG.is_dir(), reason="MedSeg slices not in ../shared")
def test_train_model_rule_is_opt_in(tmp_path: Path) -> None:
    from serialct.cli import main as serialct

    cohort = tmp_path / "cohort"
    assert serialct(["synth", str(cohort), "--patients", "1", "--seed", "3"]) == 0
    config = yaml.safe_load((cohort / "config.yaml").read_text())
    config["results"] = str(tmp_path / "results")
    config["train"] = {"real_slices": [str(MEDSEG)], "epochs": 1}
    default_plan = _dry_run(config, tmp_path)
    assert "checkpoint index:" in default_plan
    assert "rule train_model:" not in default_plan  # not part of the default target
    plan = _dry_run(config, tmp_path, "train_model")
    assert "rule train_model:" in plan
    assert "checkpoint index:" not in plan
    assert f"{tmp_path}/results/models/covid_lesion_net.pt" in plan
    assert f"{MEDSEG}/GT" in plan  # the labelled data are inputs: new labels retrain


def test_speed_benchmark_sweep_runs_on_cpu() -> None:
    """benchmarks/lesion_speed.py --sweep: a tiny CPU smoke run prints every cell of the grid."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "lesion_speed.py"), "--sweep", "--size", "16",
         "--batches", "1,2", "--reps", "1", "--threads", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [line.split() for line in run.stdout.splitlines() if line[:5].strip().isdigit()]
    assert len(rows) == 2 * (3 * 2 + 1)  # batches x (precisions x layouts + fp32 no_grad)
    assert {r[1] for r in rows} == {"fp32", "bf16", "fp16"}
    assert all(float(r[4]) > 0 for r in rows if r[4] != "unsupported")


def test_train_input_files() -> None:
    from serialct.lesion.train_args import train_input_files

    tc = {"real_slices": ["s"], "volumes": [["a.nii.gz", "b.nii.gz"]], "init": "m.pt"}
    assert train_input_files(tc) == ["s/Imgs", "s/GT", "a.nii.gz", "b.nii.gz", "m.pt"]
    assert train_input_files({**defaults()["train"]}) == []
