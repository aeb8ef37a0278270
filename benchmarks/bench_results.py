"""Benchmark results: summaries, goals, the BENCHMARKS.md writer and the regression check.

Pure functions on the result dict that ``benchmarks/run.py`` writes as JSON (no measuring
here, so the unit tests feed them fabricated results). A result is::

    {"date": ISO, "machine": str, "load": {...}, "options": {...},
     "stages": [{"name", "group", "per", "wall_s": [...], "cpu_s": [...], "peak_mb": [...],
                 "inner_s": [...], "ratio": float | None, "ratio_note": str, "note": str,
                 "status": "ok" | "not available: ..." | "failed: ..."}],
     "goals": [{"goal", "value", "limit", "unit", "met": bool | None, "detail"}],
     "profiles": {stage name: top-10 text}, "extra": {...}}
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any, Final

REGRESSION_FRACTION: Final = 0.20  # a stage regressed if it got more than 20 % slower / bigger
MIN_REGRESSION_SECONDS: Final = 0.05  # ... and by more than this (timer noise on tiny stages)
MIN_REGRESSION_MB: Final = 20.0  # ... or for peak memory, by more than this


def median(values: Iterable[float]) -> float | None:
    vals = [float(v) for v in values]
    return statistics.median(vals) if vals else None


def stage_key(stage: dict[str, Any]) -> str:
    """Identity of a stage across runs: group (which input, which shape) and name."""
    return f"{stage['group']} | {stage['name']}"


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.{digits}f}"


def _range(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{_fmt(min(values))}–{_fmt(max(values))}"


def render_markdown(result: dict[str, Any]) -> str:
    """BENCHMARKS.md: the stage table, the goals met/missed, profiles and notes."""
    machine, date = result.get("machine_short", result["machine"]), result["date"]
    opts = result.get("options", {})
    load = result.get("load", {})
    lines = [
        "# Benchmarks",
        "",
        "Written by `benchmarks/run.py` (do not edit by hand). Reproduce with:",
        "",
        f"    {opts.get('command', '.venv/bin/python benchmarks/run.py')}",
        "",
        f"- machine: {result['machine']}",
        f"- date: {date}",
        f"- load average (1 min) at start {_fmt(load.get('start'), 2)}, "
        f"at end {_fmt(load.get('end'), 2)}"
        + (" — **measured under load: not final numbers**" if load.get("busy") else ""),
        f"- repeats per stage: {opts.get('repeats', '?')}; times are wall seconds of a fresh "
        "process per stage (interpreter start and imports included, as in a workflow job); "
        "`inner` is the step call alone (its own imports included, interpreter start-up "
        "not); CPU = user + system of the process and its children; peak = the process's peak "
        "resident memory (VmHWM; for external commands the largest child's ru_maxrss). "
        "`ratio`: this row's median over the anchor's (dcm2niix on the same folder; the "
        "threshold baseline on the same phantom).",
        "",
        "| stage | per | median (s) | min–max (s) | inner median (s) | CPU median (s) "
        "| peak (MB) | ratio | machine | date | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    day = str(date)[:10]
    for stage in result["stages"]:
        name = f"{stage['group']}: {stage['name']}"
        if stage["status"] != "ok":
            lines.append(
                f"| {name} | {stage.get('per', '')} | — | — | — | — | — | — | {machine} | {day} "
                f"| {stage['status']} {stage.get('note', '')} |".replace("  |", " |")
            )
            continue
        ratio = stage.get("ratio")
        ratio_text = "—" if ratio is None else f"{ratio:.2f} {stage.get('ratio_note', '')}"
        peak = median(stage.get("peak_mb", []))
        lines.append(
            f"| {name} | {stage.get('per', '')} | {_fmt(median(stage['wall_s']))} "
            f"| {_range(stage['wall_s'])} | {_fmt(median(stage.get('inner_s', [])))} "
            f"| {_fmt(median(stage.get('cpu_s', [])))} "
            f"| {'—' if peak is None else f'{peak:.0f}'} | {ratio_text.strip()} | {machine} "
            f"| {day} | {stage.get('note', '')} |"
        )
    lines += ["", "## Goals", "", "| goal | value | limit | met |", "|---|---|---|---|"]
    for goal in result.get("goals", []):
        met = {True: "met", False: "**missed**", None: "not measured"}[goal["met"]]
        value = "—" if goal["value"] is None else f"{_fmt(goal['value'])} {goal['unit']}"
        detail = f" ({goal['detail']})" if goal.get("detail") else ""
        lines.append(
            f"| {goal['goal']} | {value} | {goal['limit']} {goal['unit']} | {met}{detail} |"
        )
    for title, text in result.get("sections", {}).items():
        lines += ["", f"## {title}", "", text.rstrip()]
    profiles = result.get("profiles", {})
    if profiles:
        lines += [
            "",
            "## Profiles",
            "",
            "cProfile of one extra run of the stage: the top 10 serialct functions by cumulative "
            "time, then the top 10 of all functions by own time.",
            "",
        ]
        for stage, text in profiles.items():
            lines += [f"### {stage}", "", "```", text.rstrip(), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def compare(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], int]:
    """Regressions of ``new`` against ``old``: stages (same group and name, both "ok", not an
    anchor) whose
    median wall time or median peak memory grew by more than ``REGRESSION_FRACTION`` (and by
    more than the absolute noise floor). Returns (one line per regression, stages compared)."""
    before = {stage_key(s): s for s in old["stages"] if s["status"] == "ok"}
    lines, compared = [], 0
    for stage in new["stages"]:
        prior = before.get(stage_key(stage))
        if prior is None or stage["status"] != "ok" or stage.get("anchor"):
            continue  # anchors (dcm2niix, the baseline) are other tools: not our regressions
        compared += 1
        checks = (
            ("wall", "wall_s", "s", MIN_REGRESSION_SECONDS),
            ("peak memory", "peak_mb", "MB", MIN_REGRESSION_MB),
        )
        for what, field, unit, floor in checks:
            a, b = median(prior.get(field, [])), median(stage.get(field, []))
            if a is None or b is None or a <= 0:
                continue
            if b > a * (1 + REGRESSION_FRACTION) and b - a > floor:
                lines.append(
                    f"REGRESSION {stage_key(stage)}: {what} {a:.3f} -> {b:.3f} {unit} "
                    f"(+{100 * (b / a - 1):.0f} %)"
                )
    return lines, compared


# Stage names that the goals refer to (run.py uses the same constants).
DISCOVER_CONVERT: Final = "discover+convert (one-scan folder)"
INDEX: Final = "discover (workflow index)"
CONVERT: Final = "convert (workflow step)"
MASKS: Final = "lung+lobes"
LESION: Final = "lesion inference (CPU)"
QUANTIFY: Final = "quantify"
DAG: Final = "dry-run DAG build"
GB: Final = 1024.0  # MB per GB in the memory goal (MiB / GiB, as ru_maxrss and VmHWM count)

CONVERSION_RATIO_GOAL: Final = 0.5
CPU_CHAIN_GOAL_S: Final = 15.0
INFERENCE_GOAL_S_PER_SLICE: Final = 0.5
PEAK_MEMORY_GOAL_GB: Final = 3.0
DAG_10K_GOAL_S: Final = 60.0


def _find(stages: list[dict[str, Any]], group: str, name: str) -> dict[str, Any] | None:
    for stage in stages:
        if stage["group"] == group and stage["name"] == name and stage["status"] == "ok":
            return stage
    return None


def _wall_inner(stage: dict[str, Any]) -> tuple[float, float | None]:
    """Median wall and inner seconds of an "ok" stage."""
    return median(stage["wall_s"]) or 0.0, median(stage.get("inner_s", []))


def evaluate_goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The five goals of the benchmark issue against the stages of ``result``.

    ``result["extra"]`` gives ``synthetic_group`` (the 512x512x300 group name), ``slices`` (its
    slice count) and ``index_scans`` (scans the index step covered). Wall times are medians of
    whole processes; a goal whose stages are missing is "not measured" (met None)."""
    stages, extra = result["stages"], result.get("extra", {})
    group = extra.get("synthetic_group", "")

    def goal(name: str, value: float | None, limit: float, unit: str, detail: str = "") -> dict:
        met = None if value is None else value <= limit
        return {"goal": name, "value": value, "limit": limit, "unit": unit, "met": met,
                "detail": detail}  # fmt: skip

    out = []
    conv = _find(stages, group, DISCOVER_CONVERT)
    inner = None if conv is None else conv.get("inner_ratio")
    out.append(goal(
        "conversion vs dcm2niix -z y", None if conv is None else conv.get("ratio"),
        CONVERSION_RATIO_GOAL, "x",
        f"{group}, whole processes incl. Python start"
        + ("" if inner is None else f"; convert_series alone {inner:.2f}x"),
    ))  # fmt: skip
    index, convert = _find(stages, group, INDEX), _find(stages, group, CONVERT)
    masks, quant = _find(stages, group, MASKS), _find(stages, group, QUANTIFY)
    chain, detail = None, f"{group}: index/scans + convert + lung+lobes + quantify"
    n_indexed = extra.get("index_scans")
    if index is not None and convert is not None and masks is not None and quant is not None:
        parts = {s["name"]: _wall_inner(s) for s in (convert, masks, quant)}
        if n_indexed:
            wall, inner = _wall_inner(index)
            parts[INDEX] = (wall / n_indexed, None if inner is None else inner / n_indexed)
            chain = sum(wall for wall, _ in parts.values())
            largest = max(parts, key=lambda name: parts[name][0])
            startup = sum(wall - inner for wall, inner in parts.values() if inner is not None)
            detail += (f"; largest {largest} {parts[largest][0]:.1f} s; process start-up "
                       f"(wall - inner) {startup:.1f} s")  # fmt: skip
    out.append(goal("CPU chain without inference, per scan", chain, CPU_CHAIN_GOAL_S, "s",
                    detail))  # fmt: skip
    lesion = _find(stages, group, LESION)
    per_slice = None
    if lesion is not None and extra.get("slices"):
        per_slice = median(lesion["wall_s"]) / extra["slices"]  # type: ignore[operator]
    out.append(goal("lesion inference on CPU", per_slice, INFERENCE_GOAL_S_PER_SLICE,
                    "s/slice", f"{group}: whole process / slices"))  # fmt: skip
    peaks = [
        (max(s["peak_mb"]), f"{s['group']}: {s['name']}")
        for s in stages
        if s["status"] == "ok" and s.get("peak_mb") and s.get("job", True)
    ]
    worst = max(peaks) if peaks else None
    out.append(goal(
        "peak memory per job", None if worst is None else worst[0] / GB, PEAK_MEMORY_GOAL_GB,
        "GB", "" if worst is None else f"largest: {worst[1]}",
    ))  # fmt: skip
    dag = _find(stages, "workflow", f"{DAG}, 10000 scans")
    out.append(goal("10k-scan dry run", None if dag is None else median(dag["wall_s"]),
                    DAG_10K_GOAL_S, "s"))  # fmt: skip
    return out
