"""The cohort report: one self-contained HTML file (images embedded as base64 PNG).

Sections: cohort summary, Tables 1-5, key numbers beside the paper's, figures, QC overlays and
the settings used. Every piece of text is escaped; missing inputs give a note, not a crash.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from serialct.reference import reference_path
from serialct.shipped import locate
from serialct.stats.describe import format_p
from serialct.timeline import QC_OK, patients_section, qc_by_scan

log = logging.getLogger("serialct")

MAX_QC = 60  # QC thumbnails shown; the rest are counted in a note
QC_THUMB_WIDTH = 600  # px; QC overlays are embedded as downscaled JPEG thumbnails
JPEG_QUALITY = 80
TABLE_TITLES = {
    1: "Table 1. Basic characteristics and clinical outcomes",
    2: "Table 2. Deep learning-based quantification (all scans)",
    3: "Table 3. Spearman correlation between CT scoring and quantification",
    4: "Table 4. Moderate vs severe at each time point (Mann-Whitney U)",
    5: "Table 5. Correlation at each time point per group",
}
TABLE_CAPTIONS = {
    1: "Per patient. Numbers: median (IQR, SPSS quartiles) with the Mann-Whitney U test; "
    "categories: n (%) with Pearson's chi-square, or Fisher's exact test for 2x2 tables with an "
    "expected count below 5. Intervals are in days.",
    2: "Per scan, all scans that passed QC. Hellinger distance and IOU compare each scan's lung "
    "HU histogram with the normal-lung reference. Median (IQR); n = scans with a value.",
    3: "Per scan. Spearman's rho with its two-sided p; the partial rho controls for days since "
    "symptom onset (ranks residualised on the ranks of the control). Empty: fewer than 3 (4) "
    "pairs or a constant variable.",
    4: "At each time point the scan nearest day 0 / 7 / 14 after admission within the window "
    "(see Settings). Median (IQR) per group; p from the Mann-Whitney U test.",
    5: "Spearman's rho of CT score vs percent lesion per group at each time point; empty where "
    "a group has fewer than 3 scans there.",
}
FIGURE_CAPTIONS = {
    "figure2": "Figure 2. Percent of pulmonary lesions vs the radiologists' CT score, all scans, "
    "with the linear and quadratic Curve Estimation fits (with constant), equations and R².",
    "figure3": "Figure 3. CT score (A), percent lesions (B), GGO (C) and consolidation (D) vs days "
    "since symptom onset per group, with cubic fits through the origin (uncentered R²), their "
    "equations and the peak of each fitted curve (marker).",
    "figure4": "Figure 4. Serial CT of one patient: a mid-lung axial slice of each scan with the "
    "lesion segmentation (GGO and consolidation).",
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
body{font-family:sans-serif;margin:1em auto;padding:0 1em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}
.scroll{overflow-x:auto;max-width:100%}
th,td{border:1px solid #bbb;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#eee}
img.fig{max-width:100%;height:auto;border:1px solid #ccc}
.gallery{display:flex;flex-wrap:wrap;gap:0.5em}
.qc{flex:0 1 380px;margin:0;font-size:0.75em}
.qc img{width:100%;height:auto;border:1px solid #ccc}
.flag{color:#a00}
svg.timeline{width:100%;max-width:480px;height:auto;display:block;margin:0.3em 0}
svg.timeline text{font-size:9px;fill:#444}
svg.timeline .axis{stroke:#888;stroke-width:1}
svg.timeline polyline{fill:none;stroke:#1f77b4;stroke-width:1.5}
svg.timeline circle{fill:#1f77b4}
.note{color:#666;font-size:0.9em}
.caption{font-size:0.9em;margin:0.2em 0 1.5em;max-width:900px}
h2{border-bottom:1px solid #ccc;margin-top:1.8em}
td:not(:first-child){white-space:nowrap}
"""


def _img(path: Path, css: str = "fig", max_width: int | None = None) -> str:
    """The image embedded as base64: as is (PNG), or a JPEG thumbnail ``max_width`` px wide."""
    if max_width is None:
        data, mime = path.read_bytes(), "png"
    else:
        with Image.open(path) as image:
            thumb = image.convert("RGB")
        if thumb.width > max_width:
            height = max(1, round(thumb.height * max_width / thumb.width))
            thumb = thumb.resize((max_width, height), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        thumb.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        data, mime = buffer.getvalue(), "jpeg"
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img class="{css}" alt="{escape(path.name)}" src="data:image/{mime};base64,{encoded}">'


def _caption(text: str) -> str:
    return f'<p class="caption">{escape(text)}</p>'


def _cell(value: Any) -> str:
    """Escaped text; leading spaces (the level rows of a categorical variable) stay visible."""
    text = str(value)
    stripped = text.lstrip(" ")
    return "&nbsp;" * 2 * (len(text) - len(stripped)) + escape(stripped)


def _table_html(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


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
    peaks = _read_tsv(stats_dir / "peaks.tsv")
    intervals = {}
    if peaks is not None:
        for row in peaks.itertuples(index=False):
            if row.ci_low != "" and row.ci_high != "":
                intervals[(row.y, row.group)] = f"{_num(row.ci_low, 1)}-{_num(row.ci_high, 1)}"
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
                    ci = intervals.get((y, group))
                    if ci:
                        ours += f" (95 % CI {ci})"
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


def _display(frame: pd.DataFrame, digits: dict[str, int]) -> pd.DataFrame:
    """Numbers rounded for reading, p values as in the tables (empty cells stay empty)."""
    out = frame.copy()
    for column, places in digits.items():
        if column in out.columns:
            out[column] = out[column].map(lambda v, d=places: _num(v, d) if v != "" else "")
    for column in ("p", "spearman_p"):
        if column in out.columns:
            out[column] = out[column].map(lambda v: format_p(float(v)) if v != "" else "")
    return out


def _extra_sections(stats_dir: Path) -> str:
    """Beyond the paper: peak days with bootstrap intervals, the mixed model, per-centre table."""
    parts = []
    peaks = _read_tsv(stats_dir / "peaks.tsv")
    if peaks is not None:
        cols = ["y", "group", "peak_x", "peak_y", "ci_low", "ci_high", "n_valid", "n_boot"]
        cols += ["n_patients", "n", "note"]
        shown = _display(peaks, {"peak_x": 1, "peak_y": 2, "ci_low": 1, "ci_high": 1})[cols]
        n_boot = peaks["n_boot"].iloc[0] if len(peaks) else ""
        parts.append("<h2>Peak days with bootstrap 95 % intervals (beyond the paper)</h2>")
        parts.append(_table_html(shown))
        parts.append(
            _caption(
                "Peak (day since onset, value) of each cubic fit through the origin (Fig. 3); "
                f"95 % interval: 2.5th-97.5th percentile over {n_boot} bootstrap replicates that "
                "resample patients (all their scans) within each group, seeded. n_valid: "
                "replicates whose fitted curve has a maximum inside the observed days."
            )
        )
    mixed = _read_tsv(stats_dir / "mixed_model.tsv")
    if mixed is not None:
        parts.append("<h2>Mixed-effects model of percent lesion (beyond the paper)</h2>")
        parts.append(_table_html(_display(mixed, {"coef": 4, "se": 4})))
        parts.append(
            _caption(
                "Linear mixed-effects model (statsmodels MixedLM, REML): percent lesion on a "
                "cubic in days since onset / 10, severity (severe vs moderate) and their "
                "interactions, with a random intercept per patient; Wald p values. An empty "
                "row with a note: too few patients, or the fit failed or did not converge."
            )
        )
    centers = _read_tsv(stats_dir / "centers.tsv")
    if centers is not None:
        parts.append("<h2>Per-centre summary</h2>")
        parts.append(_table_html(_display(centers, {"spearman_rho": 3})))
        parts.append(
            _caption(
                "Per centre (and all centres pooled): patients by group, scans, median (IQR) of "
                "scans per patient, days since onset, percent lesion and CT score, and the "
                "Spearman correlation of CT score vs percent lesion. Patients are keyed by "
                "centre and patient id, so equal ids at two centres are two patients."
            )
        )
    return "\n".join(parts)


def _sidecar_summary(path: Path, missing: str, no_summary: str) -> str:
    """The ``summary`` of the JSON file beside ``path`` (same stem); ``missing`` when there is
    no readable file, ``no_summary`` when it has no summary."""
    try:
        meta = json.loads(Path(path).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return missing
    return str(meta.get("summary", no_summary)) if isinstance(meta, dict) else no_summary


def reference_line(path: Path) -> str:
    """One line naming the normal-lung reference and what it was built from."""
    summary = _sidecar_summary(path, "no description beside it", "no description beside it")
    return f"{path}: {summary}"


def model_line(model: str | Path) -> str:
    """One line naming the lesion model and its validation: the ``summary`` of the checkpoint's
    JSON meta beside it (``resources/models/README.md`` has the details)."""
    path = locate(model)
    summary = _sidecar_summary(path, "no metadata beside the weights", "no validation summary")
    return f"{path.name}: {summary}"


def _made_with(config: dict[str, Any]) -> str:
    """The lines under the title: which lesion model and which normal reference made the numbers."""
    lines = []
    if config.get("model"):
        lines.append(f"Lesion model: {model_line(config['model'])}")
    if config.get("reference_histogram"):
        lines.append(f"Normal-lung reference: {reference_line(reference_path(config))}")
    return "".join(f'<p class="note">{escape(line)}</p>' for line in lines)


def _provenance_section(record: dict[str, Any]) -> str:
    """What made these results, from provenance.json at the results root."""
    soft = record.get("software", {})
    commit = soft.get("commit") or "not a git checkout"
    if soft.get("code_changed"):
        commit += " (with uncommitted code changes)"
    libraries = ", ".join(f"{k} {v}" for k, v in soft.get("libraries", {}).items() if v)
    rows = [
        ("serialct", f"{soft.get('serialct', '')}, commit {commit}"),
        ("Python and libraries", f"{soft.get('python', '')}; {libraries}"),
    ]
    for key, label in (("model", "Lesion model"), ("reference_histogram", "Normal reference")):
        item = record.get(key, {})
        rows.append((label, f"{item.get('path', '')} (sha256 {item.get('sha256', '')})"))
    rows.append(("Config", f"sha256 {record.get('config', {}).get('sha256', '')}"))
    rows.append(("Inputs hashed", f"{len(record.get('inputs', []))} files"))
    rows.append(("Made", f"{record.get('time', '')} on {record.get('host', '')}"))
    return (
        "<h2>Provenance</h2>"
        + _table_html(pd.DataFrame(rows, columns=["what", "value"]))
        + _caption(
            "From provenance.json at the results root; every scan's folder has its own "
            "provenance.json (its manifest, model, reference and config)."
        )
    )


def _settings_section(config: dict[str, Any]) -> str:
    rows = [("Lesion model", model_line(config.get("model", "")))] if config.get("model") else []
    if config.get("reference_histogram") or config.get("normal_scans"):
        rows.append(("Normal-lung reference histogram", reference_line(reference_path(config))))
    for key, label in (
        ("ggo", "GGO HU range [min, max)"),
        ("consolidation", "Consolidation HU range [min, max)"),
    ):
        rows.append((label, str(config.get("hu", {}).get(key, ""))))
    score = config.get("ct_score", {})
    rows.append(
        (
            "CT score: whole-percent lower bounds of lobe scores 2-5; least lesion of an "
            "involved lobe (cm3)",
            f"{score.get('bins', '')}; {score.get('min_lesion_cm3', '')}",
        )
    )
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


def _skipped_series_section(series_tables: list[Path]) -> str:
    """DICOM series not used as a scan, each with the index's reason."""
    frames = [f for f in (_read_tsv(Path(p)) for p in series_tables) if f is not None]
    if not frames:
        return ""
    series = pd.concat(frames, ignore_index=True)
    skipped = series[series["chosen"].astype(str).str.lower() != "true"]
    wanted = ("center", "patient_id", "study_date", "series_number", "series_description",
              "n_files", "reason")  # fmt: skip
    columns = [c for c in wanted if c in skipped.columns]
    body = (
        _table_html(skipped[columns])
        if len(skipped)
        else '<p class="note">every series found was used</p>'
    )
    return f"<h2>DICOM series not used ({len(skipped)} of {len(series)})</h2>{body}" + _caption(
        "From index/CENTER.series.tsv: why each series did not become a scan."
    )


def _repeated_section(stats_dir: Path) -> str:
    """stats/repeated_measures.tsv: correlations that count patients, not scans."""
    table = _read_tsv(stats_dir / "repeated_measures.tsv")
    if table is None or table.empty:
        return ""
    return (
        "<h2>CT score vs lesion percent, repeated scans accounted for</h2>"
        + _table_html(table)
        + _caption(
            "spearman_patient_bootstrap: the paper's all-scan Spearman (every scan counted as "
            "independent, so its p is too small) with a 95 % interval from resampling patients; "
            "rm_corr: the repeated-measures correlation (Bakdash & Marusich 2017), the "
            "within-patient association, with df = scans - patients - 1 and its own 95 % interval."
        )
    )


def _excluded_section(stats_dir: Path) -> str:
    """Scans left out of the statistics, each with its reason (stats/excluded.tsv)."""
    excluded = _read_tsv(stats_dir / "excluded.tsv")
    if excluded is None:
        return ""
    body = _table_html(excluded) if len(excluded) else '<p class="note">no scan was left out</p>'
    return f"<h2>Scans left out of the statistics ({len(excluded)})</h2>{body}" + _caption(
        "From stats/excluded.tsv: failed QC (an implausible lung volume, left/right ratio or a "
        "scan that cuts the lungs fails) or no clinical row."
    )


def write_report(
    out_html: Path | str,
    stats_dir: Path | str,
    tables_dir: Path | str,
    figures_dir: Path | str,
    qc_pngs: list[Path],
    config: dict[str, Any],
    series_tables: list[Path] | None = None,
    provenance: dict[str, Any] | None = None,
) -> None:
    """Write the cohort report as one HTML file that can be mailed (no external files).

    ``series_tables`` (``index/{center}.series.tsv``) add the DICOM series that did not become
    scans, with the reason (localizer, tilt, thickness, ...); ``provenance`` (the record of
    ``provenance.json`` at the results root, :mod:`serialct.provenance`) adds its block."""
    stats_dir, tables_dir, figures_dir = Path(stats_dir), Path(tables_dir), Path(figures_dir)
    sections = [_summary_section(stats_dir, tables_dir)]
    for i, title in TABLE_TITLES.items():
        frame = _read_tsv(stats_dir / f"table{i}.tsv")
        body = _table_html(frame) if frame is not None else '<p class="note">not available</p>'
        sections.append(f"<h2>{escape(title)}</h2>{body}{_caption(TABLE_CAPTIONS[i])}")
    sections.append(_paper_section(stats_dir))
    sections.append(_extra_sections(stats_dir))
    figures = sorted(figures_dir.glob("*.png")) if figures_dir.is_dir() else []
    figures_html = "".join(
        f"<h3>{escape(p.stem)}</h3>{_img(p)}"
        + _caption(FIGURE_CAPTIONS.get(p.stem, f"{p.stem} (no caption)"))
        for p in figures
    )
    sections.append("<h2>Figures</h2>" + (figures_html or '<p class="note">none</p>'))
    sections.append(_repeated_section(stats_dir))
    sections.append(_excluded_section(stats_dir))
    sections.append(
        patients_section(
            _read_tsv(tables_dir / "scans.tsv"),
            qc_by_scan(list(qc_pngs)),
            Path(out_html).parent,
            lambda path: _img(path, "thumb", QC_THUMB_WIDTH),
            MAX_QC,
        )
    )
    sections.append(_skipped_series_section(series_tables or []))
    sections.append(_settings_section(config))
    if provenance is not None:
        sections.append(_provenance_section(provenance))
    html = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>serialct cohort report</title><style>{STYLE}</style></head><body>"
        "<h1>serialct cohort report</h1>"
        + _made_with(config)
        + "\n".join(sections)
        + "</body></html>\n"
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
