"""Dice of COVID-Lesion Net on the 50 real MedSeg slices (windowed JPG + GT labels).

Usage: python benchmarks/lesion_real_slices.py [--model PT] [--pixel-spacing MM|native]
    [--window-center C --window-width W] [--data DIR]   (no window: estimated per image, as
    segment-slices does by default)

Prints per-slice lesion Dice (lesion = label > 0) mean/median, GGO and consolidation Dice (mean
over slices whose truth has that class) and pooled Dice over all pixels. Uses exactly the
``serialct segment-slices`` path (:func:`serialct.lesion.slices.segment_slice_array`).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch

from serialct.config import defaults
from serialct.lesion.infer import load_model
from serialct.lesion.slices import read_label_slice, read_slice, segment_slice_array

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real" / "medseg-covid-2d-train"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    d = int(a.sum()) + int(b.sum())
    return 1.0 if d == 0 else 2.0 * int((a & b).sum()) / d


def evaluate(
    model_path: Path, data: Path, config: dict, center: float | None, width: float | None
) -> dict:
    """Per-slice and pooled Dice of every Imgs/*.jpg against GT/<stem>.png."""
    torch.set_num_threads(1)
    device = torch.device("cpu")
    model, meta = load_model(model_path, device)
    rows = []
    tot = {k: [0, 0] for k in ("lesion", "ggo", "cons")}
    for img in sorted((data / "Imgs").glob("*.jpg"), key=lambda p: int(p.stem)):
        gt = read_label_slice(data / "GT" / f"{img.stem}.png")
        pred = segment_slice_array(read_slice(img), model, meta, device, config, center, width)
        row = {"stem": img.stem}
        for name, f in (("lesion", lambda a: a > 0), ("ggo", lambda a: a == 1),
                        ("cons", lambda a: a == 2)):  # fmt: skip
            p, t = f(pred), f(gt)
            row[name] = dice(p, t) if t.any() else float("nan")
            tot[name][0] += int((p & t).sum())
            tot[name][1] += int(p.sum()) + int(t.sum())
        rows.append(row)
    out = {}
    for name in ("lesion", "ggo", "cons"):
        v = np.array([r[name] for r in rows])
        out[f"{name}_dice_mean"] = float(np.nanmean(v))
        out[f"{name}_dice_median"] = float(np.nanmedian(v))
        out[f"{name}_dice_pooled"] = 2 * tot[name][0] / max(tot[name][1], 1)
    out["per_slice_lesion_dice"] = [round(r["lesion"], 3) for r in rows]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "resources/models/covid_lesion_net.pt"))
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--pixel-spacing", default=None, help="mm, or 'native' (default: config)")
    ap.add_argument("--window-center", type=float, help="default: estimated per image")
    ap.add_argument("--window-width", type=float, help="default: estimated per image")
    args = ap.parse_args()
    config = copy.deepcopy(defaults())
    config["device"] = "cpu"
    if args.pixel_spacing is not None:
        sp = args.pixel_spacing
        config["lesion"]["slice_pixel_spacing_mm"] = None if sp == "native" else float(sp)
    t0 = time.monotonic()
    res = evaluate(Path(args.model), Path(args.data), config, args.window_center,
                   args.window_width)  # fmt: skip
    print(f"model {args.model}")
    print(f"pixel spacing assumed: {config['lesion'].get('slice_pixel_spacing_mm')} mm (None: the "
          "checkpoint's, else native); "
          f"window C={args.window_center} W={args.window_width}")  # fmt: skip
    for k, v in res.items():
        if k != "per_slice_lesion_dice":
            print(f"{k}: {v:.4f}")
    print("per-slice lesion Dice:", res["per_slice_lesion_dice"])
    print(f"{time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    main()
