"""benchmarks/run.py: the regression check, the goals, the markdown writer (fabricated
results, no measuring), the lung baseline, and one quick smoke run on a tiny shape."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_results as br  # noqa: E402
import run as bench_run  # noqa: E402
import stage_worker  # noqa: E402
from stage_worker import BASELINE_AIR_HU, baseline_lung  # noqa: E402

GROUP = "synthetic 300x512x512"


def stage(name: str, wall: list[float], group: str = GROUP, **fields) -> dict:
    return {"group": group, "name": name, "per": "scan", "status": "ok", "note": "",
            "wall_s": wall, "cpu_s": [w * 0.9 for w in wall], "peak_mb": [500.0] * len(wall),
            "inner_s": [w * 0.5 for w in wall], "ratio": None, "ratio_note": "", "job": True,
            **fields}  # fmt: skip


def result(stages: list[dict], **extra) -> dict:
    return {
        "date": "2026-11-27 20:00 UTC", "machine": "Test CPU, 2 cores", "machine_short": "2-core",
        "load": {"start": 0.1, "end": 1.0, "busy": False},
        "options": {"repeats": 3, "command": ".venv/bin/python benchmarks/run.py"},
        "stages": stages, "extra": {"synthetic_group": GROUP, "slices": 300, "index_scans": 4,
                                    **extra},
        "profiles": {},
    }  # fmt: skip


def test_compare_flags_only_real_regressions() -> None:
    old = result([
        stage("convert", [1.0, 1.1, 0.9]),
        stage("masks", [2.0, 2.0, 2.0]),
        stage("tiny", [0.010, 0.010, 0.010]),
        stage("memory", [1.0]),
        stage("gone", [1.0]),
        stage("failed before", [1.0], status="failed: x"),
    ])  # fmt: skip
    grown = stage("memory", [1.0])
    grown["peak_mb"] = [700.0]  # +40 % and +200 MB
    new = result([
        stage("convert", [1.3, 1.25, 1.4]),  # median 1.0 -> 1.3: +30 %
        stage("masks", [2.2, 2.3, 2.1]),  # +10 %: within 20 %
        stage("tiny", [0.030, 0.030, 0.030]),  # +200 % but only 0.02 s: timer noise
        grown,
        stage("failed before", [9.0]),  # nothing to compare with
        stage("new stage", [5.0]),
        stage("gone", [9.0], anchor=True),  # dcm2niix / the baseline: not our regression
    ])  # fmt: skip
    lines, compared = br.compare(old, new)
    assert compared == 4
    assert len(lines) == 2
    assert lines[0].startswith(f"REGRESSION {GROUP} | convert: wall 1.000 -> 1.300 s (+30 %)")
    assert "memory: peak memory 500.000 -> 700.000 MB (+40 %)" in lines[1]


def test_compare_other_shape_has_nothing_in_common() -> None:
    old = result([stage("convert", [1.0])])
    new = result([stage("convert", [9.0], group="synthetic 48x128x128")])
    assert br.compare(old, new) == ([], 0)


def test_goals_from_stages() -> None:
    conv = stage(br.DISCOVER_CONVERT, [1.0], ratio=0.4, inner_ratio=0.2)
    stages = [
        conv,
        stage(br.INDEX, [8.0, 8.0]),  # 4 scans: 2 s per scan
        stage(br.CONVERT, [1.0, 3.0, 2.0]),
        stage(br.MASKS, [4.0]),
        stage(br.QUANTIFY, [3.0]),
        stage(br.LESION, [300.0]),  # 300 slices: 1 s/slice
        stage(f"{br.DAG}, 10000 scans", [45.0], group="workflow"),
    ]
    stages[3]["peak_mb"] = [3500.0]
    goals = {g["goal"]: g for g in br.evaluate_goals(result(stages))}
    assert goals["conversion vs dcm2niix -z y"]["value"] == 0.4
    assert goals["conversion vs dcm2niix -z y"]["met"] is True
    assert "convert_series alone 0.20x" in goals["conversion vs dcm2niix -z y"]["detail"]
    assert goals["CPU chain without inference, per scan"]["value"] == pytest.approx(11.0)
    assert goals["CPU chain without inference, per scan"]["met"] is True
    # inner = wall / 2 in these fabricated stages: start-up = 11 / 2
    assert goals["CPU chain without inference, per scan"]["detail"].endswith(
        f"largest {br.MASKS} 4.0 s; process start-up (wall - inner) 5.5 s"
    )
    assert goals["lesion inference on CPU"]["value"] == pytest.approx(1.0)
    assert goals["lesion inference on CPU"]["met"] is False
    memory = goals["peak memory per job"]
    assert memory["value"] == pytest.approx(3500 / 1024)
    assert memory["met"] is False
    assert memory["detail"] == f"largest: {GROUP}: {br.MASKS}"
    assert goals["10k-scan dry run"]["met"] is True


def test_goals_not_measured_when_stages_missing_or_failed() -> None:
    stages = [stage(br.LESION, [1.0], status="failed: boom")]
    goals = br.evaluate_goals(result(stages))
    assert [g["met"] for g in goals] == [None, None, None, None, None]


def test_markdown_table_and_goals() -> None:
    stages = [
        stage(br.CONVERT, [1.2, 0.9, 1.0]),
        stage(br.DISCOVER_CONVERT, [1.5], ratio=0.42, ratio_note="x dcm2niix"),
        stage("lungmask (R231)", [], status="not available: no weights offline"),
    ]
    res = result(stages)
    res["goals"] = br.evaluate_goals(res)
    res["sections"] = {"GPU inference script": "never run on a GPU"}
    res["profiles"] = {f"{GROUP}: {br.CONVERT}": "  ncalls  tottime\n"}
    text = br.render_markdown(res)
    rows = [line for line in text.splitlines() if line.startswith(f"| {GROUP}: ")]
    assert rows[0].startswith(
        f"| {GROUP}: {br.CONVERT} | scan | 1.000 | 0.900–1.200 | 0.500 | 0.900 | 500 | — "
        "| 2-core | 2026-11-27 |"
    )
    assert "| 0.42 x dcm2niix | 2-core | 2026-11-27 |" in rows[1]
    assert "not available: no weights offline" in rows[2]
    assert "| conversion vs dcm2niix -z y | 0.420 x | 0.5 x | met" in text
    assert "| 10k-scan dry run | — | 60.0 s | not measured |" in text
    assert "## GPU inference script\n\nnever run on a GPU" in text
    assert f"### {GROUP}: {br.CONVERT}" in text
    assert "under load" not in text
    res["load"]["busy"] = True
    assert "measured under load" in br.render_markdown(res)


def test_main_compare_exit_status(tmp_path: Path) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(result([stage("convert", [1.0])])))
    md = tmp_path / "B.md"
    new.write_text(json.dumps(result([stage("convert", [1.5])])))
    args = ["--from-json", str(new), "--markdown", str(md), "--compare", str(old)]
    assert bench_run.main(args) == 1
    assert md.read_text().startswith("# Benchmarks")
    new.write_text(json.dumps(result([stage("convert", [1.1])])))
    assert bench_run.main(args) == 0
    new.write_text(json.dumps(result([stage("other", [1.1])])))
    assert bench_run.main(args) == 2


def test_dag_stage_calls_measure_or_says_why_not(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def fake_measure(n_scans: int, workdir: Path) -> float:
        calls.append((n_scans, workdir))
        return 12.5

    monkeypatch.setitem(sys.modules, "dag_scale", types.SimpleNamespace(measure=fake_measure))
    measured = stage_worker.step_dag(465, str(tmp_path))
    assert measured["measured_s"] == 12.5
    assert measured["dry_run_cpu_s"] == 0.0  # the fake started no child process
    assert calls == [(465, tmp_path)]
    monkeypatch.setattr(bench_run, "HERE", tmp_path)  # no dag_scale.py there
    bench = bench_run.Bench(1, [], tmp_path)
    bench_run.bench_dag(bench, (465, 10_000))
    assert [s["name"] for s in bench.stages] == [f"{br.DAG}, 465 scans", f"{br.DAG}, 10000 scans"]
    assert all(s["status"].startswith("not available: ") for s in bench.stages)
    goals = br.evaluate_goals({"stages": bench.stages, "extra": {}})
    assert goals[-1]["met"] is None


def test_gpu_section_lists_saved_outputs(tmp_path: Path) -> None:
    assert bench_run.gpu_section(tmp_path) == bench_run.GPU_SCRIPT_NOTE
    (tmp_path / "lesion_speed-h100.txt").write_text("GPU NVIDIA H100, 5000 slices/s\n")
    text = bench_run.gpu_section(tmp_path)
    assert text.startswith(bench_run.GPU_SCRIPT_NOTE)
    assert "GPU NVIDIA H100, 5000 slices/s" in text


def test_baseline_lung_keeps_the_two_lungs_only() -> None:
    hu = np.full((6, 40, 40), BASELINE_AIR_HU - 700, np.int16)  # outside air
    hu[:, 4:36, 4:36] = 40  # body
    hu[:, 8:30, 8:18] = BASELINE_AIR_HU - 500  # right lung
    hu[:, 8:28, 22:32] = BASELINE_AIR_HU - 500  # left lung (smaller)
    hu[:, 15, 12] = 40  # a vessel: a hole to fill
    hu[:, 32:34, 10:12] = BASELINE_AIR_HU - 500  # a small bowel gas pocket
    mask = baseline_lung(hu)
    expected = np.zeros(hu.shape, bool)
    expected[:, 8:30, 8:18] = True
    expected[:, 8:28, 22:32] = True
    np.testing.assert_array_equal(mask, expected)


def test_quick_run_smoke(tmp_path: Path) -> None:
    """The script end to end on a tiny shape (synthetic case only, one scan; ~20 s)."""
    out, md = tmp_path / "r.json", tmp_path / "B.md"
    code = bench_run.main([
        "--quick", "--shape", "32,96,96", "--scans", "1", "--skip", "real", "--skip", "dag",
        "--skip", "demo", "--out", str(out), "--markdown", str(md),
        "--workdir", str(tmp_path / "work"),
    ])  # fmt: skip
    assert code == 0
    res = json.loads(out.read_text())
    by_name = {s["name"]: s for s in res["stages"]}
    for name in (br.INDEX, br.CONVERT, br.MASKS, br.LESION, br.QUANTIFY, br.DISCOVER_CONVERT):
        assert by_name[name]["status"] == "ok", by_name[name]["status"]
        assert by_name[name]["wall_s"][0] > by_name[name]["inner_s"][0] > 0
        assert 50 < by_name[name]["peak_mb"][0] < 3000
    ours = by_name["serialct lung mask (segment_lungs)"]
    floor = by_name["baseline: threshold + 2 largest components"]
    assert 0.9 < ours["dice"] <= 1.0
    assert 0.5 < floor["dice"] <= 1.0
    assert by_name["lungmask (R231)"]["status"].startswith("not available")
    assert res["extra"]["index_scans"] >= 3
    assert "| conversion vs dcm2niix -z y |" in md.read_text()
