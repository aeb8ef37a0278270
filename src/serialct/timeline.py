"""The report's per-patient section: a timeline of lesion percent against days since onset (an
inline SVG of a few hundred bytes, scaled to the screen) and the patient's QC overlays in scan
order, each a thumbnail that links to the full-size ``qc.png`` beside the scan's results."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from html import escape
from pathlib import Path
from typing import Final

import pandas as pd

SVG_SIZE: Final = (320, 110)  # viewBox width, height
SVG_MARGIN: Final = (34, 8, 18, 8)  # left, right, bottom, top
QC_OK: Final = "ok"
KEY: Final = ("center", "patient_id", "scan_id")


def _float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def svg_timeline(days: list[float], percents: list[float], labels: list[str]) -> str:
    """Lesion percent (y, from 0) against days since onset (x), points joined in day order."""
    width, height = SVG_SIZE
    left, right, bottom, top = SVG_MARGIN
    if not days:
        return '<p class="note">no scan with both days since onset and lesion percent</p>'
    x0, x1 = min(days), max(days)
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = max(max(percents), 1.0)

    def xy(day: float, percent: float) -> tuple[float, float]:
        x = left + (day - x0) / (x1 - x0) * (width - left - right)
        y = height - bottom - percent / y1 * (height - bottom - top)
        return round(x, 1), round(y, 1)

    points = [xy(d, p) for d, p in zip(days, percents, strict=True)]
    line = " ".join(f"{x},{y}" for x, y in points)
    dots = "".join(
        f'<circle cx="{x}" cy="{y}" r="3"><title>{escape(label)}</title></circle>'
        for (x, y), label in zip(points, labels, strict=True)
    )
    axis_y = height - bottom
    return (
        f'<svg class="timeline" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="lesion percent against days since onset">'
        f'<line x1="{left}" y1="{axis_y}" x2="{width - right}" y2="{axis_y}" class="axis"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{axis_y}" class="axis"/>'
        f'<text x="{left - 3}" y="{top + 8}" text-anchor="end">{y1:.3g} %</text>'
        f'<text x="{left - 3}" y="{axis_y}" text-anchor="end">0</text>'
        f'<text x="{left}" y="{height - 4}">day {x0:g}</text>'
        f'<text x="{width - right}" y="{height - 4}" text-anchor="end">day {x1:g}</text>'
        f'<polyline points="{line}"/>{dots}</svg>'
    )


def _caption(row: pd.Series) -> str:
    day = _float(row.get("days_since_onset"))
    percent = _float(row.get("lesion_percent"))
    parts = [str(row["scan_id"])]
    parts.append(f"day {day:g}" if day is not None else "day ?")
    parts.append(f"lesion {percent:.2f} %" if percent is not None else "not measured")
    score = _float(row.get("ai_ct_score"))
    if score is not None:
        parts.append(f"AI CT score {score:g}")
    status = str(row.get("qc_status") or "")
    text = escape(", ".join(parts))
    if status and status.strip().lower() != QC_OK:
        text += f'<br><span class="flag">{escape(status)}</span>'
    return text


def patients_section(
    scans: pd.DataFrame | None,
    qc_pngs: Mapping[tuple[str, str, str], Path],
    report_dir: Path,
    thumbnail: Callable[[Path], str],
    max_thumbnails: int,
) -> str:
    """One block per patient: timeline, then QC thumbnails (at most ``max_thumbnails`` in all;
    beyond that the timelines go on and a note says so). ``thumbnail(path)`` gives an <img>."""
    if scans is None or scans.empty:
        return ""
    parts = [
        f"<h2>Patients: timeline and QC ({scans['patient_id'].nunique()} patients, "
        f"{len(scans)} scans)</h2>",
        '<p class="caption">Per patient: lesion percent against days since onset (hover a point '
        "for its scan), then each scan's QC overlay in scan order: three axial slices and one "
        "coronal slice with the lung outline and GGO (blue) / consolidation (orange), and below "
        "them the five lobes. Tap a thumbnail to open the full-size picture (qc.png beside the "
        "scan's results; the link works where the results folder is).</p>",
    ]
    shown = 0
    order = scans.assign(
        _day=pd.to_numeric(scans.get("days_since_onset"), errors="coerce"),
        _pct=pd.to_numeric(scans.get("lesion_percent"), errors="coerce"),
    )
    for (center, patient), rows in order.groupby(["center", "patient_id"], sort=True):
        rows = rows.sort_values(["_day", "scan_id"], na_position="last")
        timed = rows.dropna(subset=["_day", "_pct"])
        svg = svg_timeline(
            [float(d) for d in timed["_day"]],
            [float(p) for p in timed["_pct"]],
            [f"{s}: {p:.2f} %" for s, p in zip(timed["scan_id"], timed["_pct"], strict=True)],
        )
        cells = []
        for _, row in rows.iterrows():
            qc = qc_pngs.get((str(center), str(patient), str(row["scan_id"])))
            if qc is None or not qc.is_file() or shown >= max_thumbnails:
                continue
            shown += 1
            link = escape(Path(os.path.relpath(qc, report_dir)).as_posix())
            cells.append(
                f'<figure class="qc"><a href="{link}" target="_blank">{thumbnail(qc)}</a>'
                f"<figcaption>{_caption(row)}</figcaption></figure>"
            )
        parts.append(
            f'<section class="patient"><h3>{escape(str(patient))} '
            f'<span class="note">({escape(str(center))})</span></h3>{svg}'
            f'<div class="gallery">{"".join(cells)}</div></section>'
        )
    total = sum(1 for key in qc_pngs if qc_pngs[key].is_file())
    if total > shown:
        parts.append(
            f'<p class="note">QC thumbnails shown for the first {shown} of {total} scans; every '
            "scan's qc.png lies beside its results.</p>"
        )
    return "\n".join(parts)


def qc_by_scan(qc_pngs: list[Path]) -> dict[tuple[str, str, str], Path]:
    """``scans/CENTER/PATIENT/SCAN/qc.png`` paths by (centre, patient, scan)."""
    return {tuple(Path(p).parts[-4:-1]): Path(p) for p in qc_pngs}  # type: ignore[misc]
