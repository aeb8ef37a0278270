"""The paper's figures (Figs. 2-4) and the per-scan QC overlay, as PNG files.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no global
style changes), so they are safe on a headless cluster node.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from serialct.constants import LESION_CONSOLIDATION, LESION_GGO, LESION_OTHER, LOBE_LABELS

log = logging.getLogger("serialct")

LUNG_WINDOW_LEVEL = -600
LUNG_WINDOW_WIDTH = 1500
DPI = 120
GROUP_COLORS = {"moderate": "tab:blue", "severe": "tab:red"}
LESION_COLORS = {LESION_GGO: "#1f77ff", LESION_CONSOLIDATION: "#ff8c00", LESION_OTHER: "#d4d400"}
LESION_ALPHA = 0.55
LOBE_COLORS = {"rul": "tab:purple", "rml": "tab:green", "rll": "tab:red", "lul": "tab:cyan",
               "lll": "tab:olive"}  # fmt: skip
LOBE_NAMES_COLOURED = tuple(f"{n.upper()} {c.removeprefix('tab:')}" for n, c in LOBE_COLORS.items())
LUNG_OUTLINE = "lime"
QC_FRACTIONS = (0.25, 0.5, 0.75)
FIG3_PANELS = (
    ("A", "ct_score", "CT score"),
    ("B", "lesion_percent", "Percent of pulmonary lesions (%)"),
    ("C", "ggo_percent", "Percent of GGO lesions (%)"),
    ("D", "consolidation_percent", "Percent of consolidation lesions (%)"),
)
CURVE_POINTS = 200
LEGEND_HEADROOM = 0.45  # fraction of the y range added above the data for the legend


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_png: Path | str) -> None:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=DPI, bbox_inches="tight")


def _fit_row(fits: pd.DataFrame, **where: Any) -> pd.Series | None:
    mask = pd.Series(True, index=fits.index)
    for key, value in where.items():
        column = fits[key]
        if key == "constant":
            column = column.astype(str).str.lower().isin(("true", "1"))
        mask &= column == value
    rows = fits[mask]
    if rows.empty or pd.isna(rows.iloc[0]["r2"]):
        return None
    return rows.iloc[0]


def _coefs(row: pd.Series) -> list[float]:
    return [0.0 if pd.isna(row.get(f"b{i}")) else float(row[f"b{i}"]) for i in range(4)]


def equation(row: pd.Series) -> str:
    """'y = b0 + b1x + b2x^2 ...' with the terms the model has, e.g. for a legend."""
    terms = []
    for i in range(4):
        value = row.get(f"b{i}")
        if value is None or pd.isna(value):
            continue
        power = "" if i == 0 else ("x" if i == 1 else f"x$^{i}$")
        terms.append((float(value), power))
    text = ""
    for j, (value, power) in enumerate(terms):
        number = f"{abs(value):.3g}"
        sign = ("-" if value < 0 else "") if j == 0 else (" - " if value < 0 else " + ")
        text += f"{sign}{number}{power}"
    return f"y = {text}"


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def _no_data(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")


def figure2(scans: pd.DataFrame, fits: pd.DataFrame, out_png: Path | str) -> None:
    """CT score vs percent lesion, with the linear and quadratic fits (equations and r²)."""
    fig = _new_figure(6.0, 4.5)
    ax = fig.add_subplot()
    x, y = _numeric(scans, "ct_score"), _numeric(scans, "lesion_percent")
    keep = np.isfinite(x) & np.isfinite(y)
    ax.scatter(x[keep], y[keep], s=12, color="0.35", alpha=0.6, label=f"scans (n={keep.sum()})")
    if keep.any():
        grid = np.linspace(0.0, float(x[keep].max()), CURVE_POINTS)
        for model, style in (("linear", "--"), ("quadratic", "-")):
            row = _fit_row(
                fits, x="ct_score", y="lesion_percent", group="all", model=model, constant=True
            )
            if row is None:
                continue
            curve = np.polynomial.Polynomial(_coefs(row))(grid)
            ax.plot(
                grid,
                curve,
                style,
                lw=1.8,
                label=f"{model}: {equation(row)}, r$^2$ = {row['r2']:.3f}",
            )
    else:
        _no_data(ax, "no scans with a CT score")
    ax.set_xlabel("CT score (radiologists)")
    ax.set_ylabel("Percent of pulmonary lesions (%)")
    ax.set_title("CT score vs deep-learning percent lesion")
    ax.legend(fontsize=8, loc="upper left")
    _save(fig, out_png)


def figure3(scans: pd.DataFrame, fits: pd.DataFrame, out_png: Path | str) -> None:
    """Four panels (A-D): each measure vs days since onset, per group, cubic fits through 0."""
    fig = _new_figure(11.0, 8.5)
    axes = fig.subplots(2, 2).ravel()
    days = _numeric(scans, "days_since_onset")
    severity = scans["severity"].astype(str).to_numpy() if "severity" in scans else np.array([])
    for ax, (letter, column, label) in zip(axes, FIG3_PANELS, strict=True):
        values = _numeric(scans, column)
        drawn = False
        for group, color in GROUP_COLORS.items():
            keep = (severity == group) & np.isfinite(days) & np.isfinite(values)
            if not keep.any():
                continue
            drawn = True
            ax.scatter(
                days[keep],
                values[keep],
                s=10,
                color=color,
                alpha=0.45,
                label=f"{group} (n={keep.sum()})",
            )
            row = _fit_row(
                fits, x="days_since_onset", y=column, group=group, model="cubic", constant=False
            )
            if row is None:
                continue
            grid = np.linspace(0.0, float(days[keep].max()), CURVE_POINTS)
            peak = row.get("peak_x")
            has_peak = peak is not None and not pd.isna(peak)
            peak_text = f", peak day {float(peak):.1f}" if has_peak else ""
            ax.plot(
                grid,
                np.polynomial.Polynomial(_coefs(row))(grid),
                color=color,
                lw=2,
                label=f"{equation(row)}, r$^2$ = {row['r2']:.3f}{peak_text}",
            )
            if has_peak:
                ax.axvline(float(peak), color=color, ls=":", lw=1)
        if not drawn:
            _no_data(ax, f"no {column} values")
        ax.set_title(f"({letter}) {label}", loc="left", fontsize=10)
        ax.set_xlabel("Time from symptom onset (d)")
        ax.set_ylabel(label)
        if ax.get_legend_handles_labels()[0]:
            low, high = ax.get_ylim()
            ax.set_ylim(low, high + LEGEND_HEADROOM * (high - low))  # room for the legend
            ax.legend(fontsize=7, loc="upper left", framealpha=0.85)
    fig.tight_layout()
    _save(fig, out_png)


def _read(source: Path | str | sitk.Image) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Array (z, y, x) and spacing (z, y, x) in mm of an image or an image file."""
    image = source if isinstance(source, sitk.Image) else sitk.ReadImage(str(source))
    return sitk.GetArrayFromImage(image), tuple(reversed(image.GetSpacing()))  # type: ignore[return-value]


def _lung_window() -> tuple[float, float]:
    return LUNG_WINDOW_LEVEL - LUNG_WINDOW_WIDTH / 2, LUNG_WINDOW_LEVEL + LUNG_WINDOW_WIDTH / 2


def _rgba(labels: np.ndarray, colours: dict[int, str]) -> np.ndarray:
    """An RGBA overlay: transparent background, one colour per label."""
    rgba = np.zeros((*labels.shape, 4))
    for value, color in colours.items():
        r, g, b, _ = to_rgba(color)
        rgba[labels == value] = (r, g, b, LESION_ALPHA)
    return rgba


def _lesion_rgba(labels: np.ndarray) -> np.ndarray:
    return _rgba(labels, LESION_COLORS)


def _lobe_rgba(labels: np.ndarray) -> np.ndarray:
    return _rgba(labels, {LOBE_LABELS[name]: colour for name, colour in LOBE_COLORS.items()})


def figure4(scan_dirs: list[Path], titles: list[str], out_png: Path | str) -> None:
    """One patient's serial scans: CT in the lung window (row 1), lesion overlay (row 2).

    The axial slice is the one with the largest lesion area in the middle scan; the other scans
    show the slice at the same fraction of their slice count.
    """
    if not scan_dirs:
        raise ValueError("figure4 needs at least one scan folder")
    volumes = [(_read(Path(d) / "ct.nii.gz"), _read(Path(d) / "lesion.nii.gz")) for d in scan_dirs]
    (_, _), (middle_lesion, _) = volumes[len(volumes) // 2]
    area = (middle_lesion > 0).reshape(middle_lesion.shape[0], -1).sum(axis=1)
    z_mid = int(np.argmax(area)) if area.any() else middle_lesion.shape[0] // 2
    fraction = z_mid / max(middle_lesion.shape[0] - 1, 1)
    vmin, vmax = _lung_window()
    fig = _new_figure(3.2 * len(volumes), 6.6)
    axes = np.asarray(fig.subplots(2, len(volumes), squeeze=False))
    for col, (((ct, spacing), (lesion, _)), title) in enumerate(zip(volumes, titles, strict=True)):
        z = int(round(fraction * (ct.shape[0] - 1)))
        aspect = spacing[1] / spacing[2]
        for row in range(2):
            ax = axes[row, col]
            ax.imshow(ct[z], cmap="gray", vmin=vmin, vmax=vmax, aspect=aspect)
            if row == 1:
                ax.imshow(_lesion_rgba(lesion[z]), aspect=aspect, interpolation="nearest")
            ax.set_axis_off()
        axes[0, col].set_title(title, fontsize=10)
    fig.text(
        0.5,
        0.01,
        "GGO blue, consolidation orange; lung window W1500/L-600",
        ha="center",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _save(fig, out_png)


def qc_overlay(
    ct_image: Path | str | sitk.Image,
    lung_image: Path | str | sitk.Image,
    lesion_image: Path | str | sitk.Image,
    out_png: Path | str,
    lobes_image: Path | str | sitk.Image | None = None,
) -> None:
    """Three axial slices (25/50/75 % of the lung's z extent) and one coronal slice: the lung
    outline and the lesion labels (GGO, consolidation) in colour; with ``lobes_image`` a second
    row shows the same slices with the five lobes in colour. Images or their files."""
    ct, spacing = _read(ct_image)
    lung, _ = _read(lung_image)
    lesion, _ = _read(lesion_image)
    lobes = None if lobes_image is None else _read(lobes_image)[0]
    vmin, vmax = _lung_window()
    zs = np.flatnonzero((lung > 0).reshape(lung.shape[0], -1).any(axis=1))
    if zs.size:
        z0, z1 = int(zs[0]), int(zs[-1])
        ys = np.flatnonzero((lung > 0).any(axis=(0, 2)))
        y_cor = int(round(ys.mean()))
    else:
        log.warning("%s: empty lung mask; QC shows the middle of the volume", out_png)
        z0, z1, y_cor = 0, ct.shape[0] - 1, ct.shape[1] // 2
    slices = [int(round(z0 + f * (z1 - z0))) for f in QC_FRACTIONS]
    rows = 1 if lobes is None else 2
    fig = _new_figure(13.0, 3.6 * rows)
    axes = np.atleast_2d(fig.subplots(rows, len(slices) + 1))

    def views(overlay: np.ndarray) -> list[tuple]:
        axial = [
            (ct[z], lung[z], overlay[z], spacing[1] / spacing[2], f"axial z={z}") for z in slices
        ]
        # coronal: rows are z; flip so that superior is up (+z superior in LPS)
        coronal = (ct[::-1, y_cor], lung[::-1, y_cor], overlay[::-1, y_cor],
                   spacing[0] / spacing[2], f"coronal y={y_cor}")  # fmt: skip
        return [*axial, coronal]

    layers = [(lesion, _lesion_rgba, "lesions: GGO blue, consolidation orange")]
    if lobes is not None:
        layers.append((lobes, _lobe_rgba, "lobes: " + ", ".join(LOBE_NAMES_COLOURED)))
    for row, (overlay, to_rgba_layer, legend) in zip(axes, layers, strict=True):
        for ax, (image, lung_2d, overlay_2d, aspect, title) in zip(
            row, views(overlay), strict=True
        ):
            ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, aspect=aspect)
            if (lung_2d > 0).any() and not (lung_2d > 0).all():
                ax.contour(lung_2d > 0, levels=[0.5], colors=LUNG_OUTLINE, linewidths=0.8)
            ax.imshow(to_rgba_layer(overlay_2d), aspect=aspect, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.set_axis_off()
        row[0].text(0, -0.08, legend, transform=row[0].transAxes, fontsize=8, va="top")
    fig.tight_layout()
    _save(fig, out_png)
