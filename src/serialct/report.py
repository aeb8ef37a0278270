"""The cohort report: one self-contained HTML file (images embedded as base64 PNG).

Sections: cohort summary, Tables 1-5, key numbers beside the paper's, figures, QC overlays and
the settings used. Every piece of text is escaped; missing inputs give a note, not a crash.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("serialct")

MAX_QC = 60  # QC thumbnails shown; the rest are counted in a note
QC_OK = "ok"
TABLE_TITLES = {
    1: "Table 1. Basic characteristics and clinical outcomes",
    2: "Table 2. Deep learning-based quantification (all scans)",
    3: "Table 3. Spearman correlation between CT scoring and quantification",
    4: "Table 4. Moderate vs severe at each time point (Mann-Whitney U)",
    5: "Table 5. Correlation at each time point per group",
}
# Pan et al. 2020 (see paper/): values to hold this cohort's results against
PAPER = {
    "spearman": 0.920,
    "scans": 465,
    "r2_linear": 0.850,
    "r2_quadratic": 0.924,
    "peaks": {  # y: {group: (peak day, peak value)}
        "ct_score": {"moderate": (18, None), "severe": (23, None)},
        "lesion_percent": {"moderate": (18, 3.37), "severe": (23, 27.91)},
        "ggo_percent": {"moderate": (18, 2.65), "severe": (23, 23.03)},
        "consolidation_percent": {"moderate": (18, 0.72), "severe": (19, 4.99)},
    },
}
STYLE = """
body{font-family:sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}
th,td{border:1px solid #bbb;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#eee}
img.fig{max-width:100%;border:1px solid #ccc}
.qc{display:inline-block;width:32%;margin:0.3%;font-size:0.75em;vertical-align:top}
.qc img{width:100%}
.note{color:#666;font-size:0.9em}
"""


def _img(path: Path, css: str = "fig") -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="{css}" alt="{escape(path.name)}" src="data:image/png;base64,{data}">'


def _table_html(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _read_tsv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        log.warning("report: %s not found; section left empty", path)
        return None
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def _num(value: Any, digits: int = 3) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if not math.isfinite(number) else f"{number:.{digits}f}"


def _summary_section(stats_dir: Path, tables_dir: Path) -> str:
    info: dict[str, Any] = {}
    if (stats_dir / "summary.json").is_file():
        info = json.loads((stats_dir / "summary.json").read_text())
    scans = _read_tsv(tables_dir / "scans.tsv")
    parts = ["<h2>Cohort summary</h2>"]
    rows = [
        ("Patients (statistics)", info.get("patients", "")),
        ("Scans (statistics)", info.get("scans", "")),
        ("Scans left out (failed QC or no clinical row)", info.get("scans_excluded", "")),
        ("Scans with a radiologists' CT score", info.get("ct_scores", "")),
    ]
    for group, count in info.get("patients_by_severity", {}).items():
        scans_n = info.get("scans_by_severity", {}).get(group, "")
        rows.append((f"{group.capitalize()} group: patients / scans", f"{count} / {scans_n}"))
    for tp, counts in info.get("timepoint_scans", {}).items():
        rows.append(
            (
                f"Scans at time point {tp} (moderate / severe)",
                f"{counts.get('moderate', '')} / {counts.get('severe', '')}",
            )
        )
    parts.append(_table_html(pd.DataFrame(rows, columns=["", "value"])))
    if scans is not None and not scans.empty:
        centers = scans.groupby("center").agg(
            patients=("patient_id", "nunique"), scans=("scan_id", "size")
        )
        parts.append("<h3>Per center (tables/scans.tsv)</h3>")
        parts.append(_table_html(centers.reset_index()))
        if "qc_status" in scans.columns:
            flagged = scans[scans["qc_status"].str.strip().str.lower() != QC_OK]
            parts.append(f"<h3>QC warnings: {len(flagged)} of {len(scans)} scans</h3>")
            if not flagged.empty:
                cols = [
                    c
                    for c in ("center", "patient_id", "scan_id", "study_date", "qc_status")
                    if c in flagged.columns
                ]
                parts.append(_table_html(flagged[cols]))
    elif info.get("centers"):
        frame = pd.DataFrame(info["centers"]).T.reset_index(names="center")
        parts.append("<h3>Per center</h3>" + _table_html(frame))
    return "\n".join(parts)


def _peak_value(row: pd.Series) -> float:
    coefs = [0.0 if row.get(f"b{i}", "") == "" else float(row[f"b{i}"]) for i in range(4)]
    return float(np.polynomial.Polynomial(coefs)(float(row["peak_x"])))


def _paper_section(stats_dir: Path) -> str:
    corr = _read_tsv(stats_dir / "correlations.tsv")
    fits = _read_tsv(stats_dir / "curve_fits.tsv")
    rows: list[tuple[str, str, str]] = []
    if corr is not None:
        hit = corr[
            (corr["x"] == "lesion_percent")
            & (corr["y"] == "ct_score")
            & (corr["group"] == "all")
            & (corr["timepoint"] == "all")
            & (corr["method"] == "spearman")
        ]
        if not hit.empty:
            rows.append(
                (
                    "Spearman rho, CT score vs percent lesion",
                    f"{_num(hit.iloc[0]['rho'])} (n={hit.iloc[0]['n']})",
                    f"{PAPER['spearman']:.3f} (n={PAPER['scans']})",
                )
            )
    if fits is not None:
        fig2 = fits[(fits["x"] == "ct_score") & (fits["constant"] == "true")].set_index("model")
        for model in ("linear", "quadratic"):
            if model in fig2.index:
                rows.append(
                    (
                        f"Fig. 2 {model} fit r2 (CT score vs percent lesion)",
                        _num(fig2.loc[model, "r2"]),
                        f"{PAPER[f'r2_{model}']:.3f}",
                    )
                )
        cubic = fits[
            (fits["x"] == "days_since_onset")
            & (fits["model"] == "cubic")
            & (fits["constant"] == "false")
        ]
        for y, groups in PAPER["peaks"].items():
            for group, (day, value) in groups.items():
                hit = cubic[(cubic["y"] == y) & (cubic["group"] == group)]
                ours = ""
                if not hit.empty and hit.iloc[0]["peak_x"] != "":
                    ours = f"day {_num(hit.iloc[0]['peak_x'], 1)}"
                    if value is not None:
                        ours += f", {_peak_value(hit.iloc[0]):.2f} %"
                paper = f"day {day}" + (f", {value:.2f} %" if value is not None else "")
                rows.append((f"Fig. 3 peak of {y}, {group} (cubic through origin)", ours, paper))
    frame = pd.DataFrame(rows, columns=["quantity", "this cohort", "Pan et al. 2020"])
    note = (
        '<p class="note">Empty cells: not computable here (too few scans, no CT scores, or '
        "no maximum inside the observed days).</p>"
    )
    return "<h2>Key numbers vs the paper</h2>" + _table_html(frame) + note


def _settings_section(config: dict[str, Any]) -> str:
    rows = []
    for key, label in (
        ("ggo", "GGO HU range [min, max)"),
        ("consolidation", "Consolidation HU range [min, max)"),
    ):
        rows.append((label, str(config.get("hu", {}).get(key, ""))))
    rows.append(("CT score per-lobe percent bins", str(config.get("ct_score", {}).get("bins", ""))))
    for name, tp in config.get("timepoints", {}).items():
        rows.append(
            (
                f"Time point {name}: target day / window (days since admission)",
                f"{tp.get('target', '')} / {tp.get('window', '')}",
            )
        )
    hist = config.get("histogram", {})
    rows.append(
        (
            "Histogram bins (HU): min, max, width",
            f"{hist.get('min_hu', '')}, {hist.get('max_hu', '')}, {hist.get('bin_width_hu', '')}",
        )
    )
    for key in ("lung", "lesion"):
        for sub, value in config.get(key, {}).items():
            rows.append((f"{key}.{sub}", str(value)))
    return "<h2>Settings used</h2>" + _table_html(pd.DataFrame(rows, columns=["setting", "value"]))


def _qc_section(qc_pngs: list[Path]) -> str:
    parts = [f"<h2>QC overlays ({len(qc_pngs)} scans)</h2>"]
    shown = [Path(p) for p in qc_pngs[:MAX_QC]]
    for path in shown:
        if not path.is_file():
            continue
        caption = "/".join(path.parts[-4:-1]) or path.name
        parts.append(f'<div class="qc">{_img(path, "thumb")}<br>{escape(caption)}</div>')
    if len(qc_pngs) > MAX_QC:
        parts.append(
            f'<p class="note">Only the first {MAX_QC} of {len(qc_pngs)} QC overlays are '
            "shown; the others are next to each scan (qc.png).</p>"
        )
    return "\n".join(parts)


def write_report(
    out_html: Path | str,
    stats_dir: Path | str,
    tables_dir: Path | str,
    figures_dir: Path | str,
    qc_pngs: list[Path],
    config: dict[str, Any],
) -> None:
    """Write the cohort report as one HTML file that can be mailed (no external files)."""
    stats_dir, tables_dir, figures_dir = Path(stats_dir), Path(tables_dir), Path(figures_dir)
    sections = [_summary_section(stats_dir, tables_dir)]
    for i, title in TABLE_TITLES.items():
        frame = _read_tsv(stats_dir / f"table{i}.tsv")
        body = _table_html(frame) if frame is not None else '<p class="note">not available</p>'
        sections.append(f"<h2>{escape(title)}</h2>{body}")
    sections.append(_paper_section(stats_dir))
    figures = sorted(figures_dir.glob("*.png")) if figures_dir.is_dir() else []
    figures_html = "".join(f"<h3>{escape(p.stem)}</h3>{_img(p)}" for p in figures)
    sections.append("<h2>Figures</h2>" + (figures_html or '<p class="note">none</p>'))
    sections.append(_qc_section(list(qc_pngs)))
    sections.append(_settings_section(config))
    html = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>serialct cohort report</title><style>{STYLE}</style></head><body>"
        "<h1>serialct cohort report</h1>" + "\n".join(sections) + "</body></html>\n"
    )
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(html, encoding="utf-8")
    log.info(
        "report written: %s (%d figures, %d QC overlays)",
        out_html,
        len(figures),
        min(len(qc_pngs), MAX_QC),
    )
