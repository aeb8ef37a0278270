"""serialct's lung mask on real chest CT against independent reference masks (issue 17, point 2).

Every real chest series in ``../shared/data/real`` (Lung-PET-CT-Dx: two patients, two kernels
each; CIP: GE 4 mm on a 64x64 grid), plus a PARTIAL case (Lung_Dx-A0001's lung-kernel series
cut to its lower half in z: a scan that starts mid-chest), is converted with
``convert_dicom_dir`` and masked with ``serialct.lung.segment_lungs`` (default config, timed).
Each is compared with a reference built here without any serialct.lung code, following
lungmask's convention (parenchyma with its intrapulmonary vessels and bronchi; no trachea, main
bronchi, hilar vessels, heart, aorta, oesophagus or mediastinal fat):

1. air: HU < REFERENCE_HU; outside air is every 3D air component touching the in-plane image
   border (the lungs touch only the z ends, in a cut scan);
2. trachea and main bronchi: seeded in the top slice (small, central air components), followed
   slice by slice downwards through air components (less one pixel at their edge, so that a
   thin partial-volume bridge to the lung does not join them) that overlap the previous
   slice's airway (grown by AIRWAY_STEP_MM) and stay smaller than AIRWAY_MAX_AREA_MM2 (a bigger
   one is lung the bronchus has entered; above the carina, where the whole airway meets the
   lung in-plane, it goes on for up to AIRWAY_COAST_MM as the darkest air right under the
   previous slice's airway, of the same area), down to
   AIRWAY_BELOW_CARINA_MM below the carina (the first slice where the followed airway has more
   branches than the slice above: components at least CARINA_BRANCH_SHARE as big as its
   largest); removed with one pixel around it in-plane;
3. the two largest 3D components (face connectivity) are the lungs; the side is the x of each;
4. per side and slice, from the bottom up: a closing with a disk of CLOSING_MM (not into the
   other lung), then holes filled (vessels ringed by lung) where they lie on lung in the slice
   below (HOLE_ON_LUNG): the top of the diaphragm's dome or of the heart, ringed by the lung
   base in one slice, stays out.

CIP also has an expert whole-lung mask (``wholeLung-64.nrrd``; left/right from ``lm-64.nrrd``'s
region codes) on the CT's own grid: serialct and the reference are both scored against it.

For each case: a montage of axial slices and a coronal/sagittal figure (lung window; reference
outline green, serialct outline red, serialct-only voxels filled red, reference-only filled
blue, the CIP expert outline yellow), a table row, where serialct's extra voxels lie (trachea
and main bronchi, slices without reference lung, inside the hull of both reference lungs =
mediastinum / hilum / diaphragm dome, outside it = chest wall; each near the reference edge
or deeper, and their HU), and the lung area at the scan's and the lung's ends.

    .venv/bin/python benchmarks/real_lung_masks.py [--out DIR]      # ~75 s on 2 cores
"""

from __future__ import annotations

import argparse
import hashlib
import math
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pydicom  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.path import Path as Polygon  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402
from scipy.spatial import ConvexHull, QhullError  # noqa: E402

import serialct.lung  # noqa: E402
from serialct.config import defaults  # noqa: E402
from serialct.constants import LUNG_LEFT, LUNG_RIGHT, MM3_PER_CM3  # noqa: E402
from serialct.dicom.convert import convert_dicom_dir  # noqa: E402
from serialct.lung import segment_lungs  # noqa: E402

ROOT: Final = Path(__file__).resolve().parents[1]
REAL: Final = ROOT.parent / "shared" / "data" / "real"
LUNG_PET_CT_DX: Final = REAL / "lung-pet-ct-dx"
CIP: Final = REAL / "cip-ct64-lung-mask"
DEFAULT_OUT: Final = Path("/tmp/real_lung_masks")
WORK_ORIENTATION: Final = "LPS"  # arrays (z, y, x) = (inferior->superior, ant->post, R->L)

# Reference threshold: aerated lung measures -800..-920 HU on these series (median of the
# reference masks, printed by this script) and soft tissue about +40, so the half-way edge is
# near -400. -320 sits a little towards soft tissue so that the partial-volumed lung edge of
# 4-8 mm slices stays lung; it is the textbook lung mask's threshold (benchmarks/stage_worker.py
# BASELINE_AIR_HU; Hu, Hoffman & Reinhardt, IEEE TMI 2001, pick theirs per scan, starting
# from -500) and close to serialct's -300, so that differences say where the mask goes rather
# than where its edge sits. The reference at -400 is printed too (REFERENCE_ALT_HU).
REFERENCE_HU: Final = -320.0
REFERENCE_ALT_HU: Final = -400.0
SOFT_TISSUE_HU: Final = -100.0  # fat is -100..-50 and muscle/blood 40: above this, not lung
# Airway: the trachea measured 140-350 mm2 at -320 HU in the top slices of these scans
# (A0001, A0002, CIP); main bronchi are smaller; a lung cross-section is thousands of mm2
AIRWAY_MIN_AREA_MM2: Final = 20.0
AIRWAY_MAX_AREA_MM2: Final = 700.0
# above the carina, an airway that meets the lung in-plane is followed through its darkest air
# for up to this far: A0001's trachea touches the lung over 2 slices (10 mm) in the smooth
# kernel (B). Not longer: on CIP's 4 mm pixels the trachea joins the right lung from 20 mm
# below the top of the lungs to the carina, and darkest-air coasting that far drifts into lung
AIRWAY_COAST_MM: Final = 12.0
AIRWAY_SEED_OFFSET: Final = 0.25  # seed centroid at most this share of body width off centre
AIRWAY_STEP_MM: Final = 5.0  # an airway may move this much in-plane between slices
AIRWAY_BELOW_CARINA_MM: Final = 40.0  # main bronchi: 2-5 cm long (Gray's Anatomy)
# main bronchi measured 40-55 % of the trachea's area just below the carina (A0002); an air
# bubble in the oesophagus beside the trachea 5 % (A0001)
CARINA_BRANCH_SHARE: Final = 0.25
CLOSING_MM: Final = 3.0
HOLE_ON_LUNG: Final = 0.5  # a slice's hole is filled if this share of it has lung just below
SECOND_LUNG_FRACTION: Final = 0.1  # a second component smaller than this is not a lung
MAX_SPLIT_EROSIONS: Final = 20  # in-plane erosions tried to part lungs that touch
EDGE_MM: Final = 3.0  # extra voxels this close (in-plane) to the reference: edge placement
PIECES: Final = 6  # largest serialct-only / reference-only 3D pieces listed per case
END_SLICES: Final = 3  # lung slices listed at each end of the lung
CUT_AREA_CM2: Final = 1.0  # an end slice with more reference lung than this is a cut edge
MONTAGE_PANELS: Final = 16
LUNG_WINDOW: Final = (-1350.0, 150.0)  # level -600, width 1500
FACE: Final = ndi.generate_binary_structure(3, 1)


@dataclass
class Case:
    name: str
    series: Path
    lower_half: bool = False  # keep the inferior half of the slices only (starts mid-chest)
    expert: Path | None = None
    expert_labels: Path | None = None


@dataclass
class Reference:
    labels: np.ndarray  # uint8: 0, LUNG_RIGHT, LUNG_LEFT
    airway: np.ndarray  # bool: trachea and main bronchi as followed
    split: bool  # the lungs touched and were parted by erosion
    seconds: float


@dataclass
class Result:
    case: Case
    hu: np.ndarray
    spacing: tuple[float, float, float]
    ours: np.ndarray
    ref: Reference
    seconds: float
    expert: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def cases() -> list[Case]:
    """The 4 Lung-PET-CT-Dx series, CIP, and A0001's lung-kernel series cut to its lower half."""
    out = []
    for first in sorted(LUNG_PET_CT_DX.glob("*/*/*/1-01.dcm")):
        header = pydicom.dcmread(first, stop_before_pixels=True)
        name = f"{header.PatientID} {header.ConvolutionKernel} {float(header.SliceThickness):g} mm"
        out.append(Case(name, first.parent))
    cip = Case(
        "CIP GE 4 mm",
        CIP / "dicom",
        expert=CIP / "wholeLung-64.nrrd",
        expert_labels=CIP / "lm-64.nrrd",
    )
    lung_kernel = next(c for c in out if c.name.startswith("Lung_Dx-A0001 L"))
    partial = Case(f"{lung_kernel.name}, lower half", lung_kernel.series, lower_half=True)
    return [*out, cip, partial]


def convert(case: Case, work: Path) -> sitk.Image:
    folder = work / "".join(ch if ch.isalnum() else "_" for ch in case.name)
    folder.mkdir(parents=True, exist_ok=True)
    table = convert_dicom_dir(case.series, folder)
    image = sitk.DICOMOrient(
        sitk.ReadImage(str(folder / Path(table.loc[table["path"] != "", "path"].iloc[0]).name)),
        WORK_ORIENTATION,
    )
    if case.lower_half:
        image = image[:, :, : image.GetSize()[2] // 2]  # LPS: index 0 is the most inferior
    return image


# ---------------------------------------------------------------- the reference


def _disk(radius_px: int) -> np.ndarray:
    r = np.arange(-radius_px, radius_px + 1)
    return r[:, None] ** 2 + r[None, :] ** 2 <= radius_px**2


def _inside_air(hu: np.ndarray, threshold: float) -> np.ndarray:
    air = hu < threshold
    labels, _ = ndi.label(air, FACE)
    border = np.unique(
        np.concatenate([labels[:, [0, -1], :].ravel(), labels[:, :, [0, -1]].ravel()])
    )
    return air & ~np.isin(labels, border[border > 0])


def _cores(air: np.ndarray) -> np.ndarray:
    """A slice's air less one pixel at its edge: a partial-volume bridge one or two pixels wide
    between the airway and the lung (4 mm pixels: CIP) no longer joins them."""
    return ndi.binary_erosion(air, _disk(1))


def _grow(mask: np.ndarray) -> np.ndarray:
    return ndi.binary_dilation(mask, _disk(1))


def _darkest(hu: np.ndarray, region: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` lowest-HU pixels of ``region`` (all of it if it is no bigger)."""
    if np.count_nonzero(region) <= count:
        return region.copy()
    values = hu[region]
    cut = np.partition(values, count - 1)[count - 1]
    return region & (hu <= cut)


def _branches(airway: np.ndarray) -> int:
    """Components of a slice's airway at least CARINA_BRANCH_SHARE as big as its largest (an
    air bubble in the oesophagus beside the trachea is not a branch)."""
    labels, n = ndi.label(airway)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    return int(np.count_nonzero(sizes >= CARINA_BRANCH_SHARE * sizes.max())) if n else 0


def _airway(hu: np.ndarray, inside: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Trachea and main bronchi, followed down from the top slice (module docstring, step 2)
    through the cores of the slices' air components, each then grown back by a pixel."""
    dz, dy, dx = spacing
    px_mm2 = dy * dx
    top = inside.shape[0] - 1
    body = ndi.binary_fill_holes(hu[top] > REFERENCE_HU)
    xs = np.nonzero(body.any(axis=0))[0]
    centre, width = (xs.min() + xs.max()) / 2, xs.max() - xs.min() + 1
    labels, n = ndi.label(_cores(inside[top]))
    areas = ndi.sum_labels(np.ones_like(labels), labels, range(1, n + 1)) * px_mm2
    cx = [np.nonzero(labels == k)[1].mean() for k in range(1, n + 1)]
    seeds = [
        k + 1
        for k in range(n)
        if AIRWAY_MIN_AREA_MM2 <= areas[k] <= AIRWAY_MAX_AREA_MM2
        and abs(cx[k] - centre) <= AIRWAY_SEED_OFFSET * width
    ]
    airway = np.zeros_like(inside)
    airway[top] = ndi.binary_dilation(np.isin(labels, seeds), _disk(1)) & inside[top]
    step = _disk(max(1, round(AIRWAY_STEP_MM / dx)))
    depth = round(AIRWAY_BELOW_CARINA_MM / dz)
    coast, coasted = max(1, round(AIRWAY_COAST_MM / dz)), 0
    # a top slice that holds lung (a scan cut mid-chest) is below the carina already
    stop = top - depth if (areas > AIRWAY_MAX_AREA_MM2).any() else -1
    for z in range(top - 1, -1, -1):
        if z < stop or not airway[z + 1].any():
            break
        reach = ndi.binary_dilation(airway[z + 1], step)
        labels, n = ndi.label(_cores(inside[z]))
        hit = np.unique(labels[reach & (labels > 0)])
        hit_areas = ndi.sum_labels(np.ones_like(labels), labels, hit) * px_mm2
        kept = np.isin(labels, hit[hit_areas <= AIRWAY_MAX_AREA_MM2])
        airway[z] = ndi.binary_dilation(kept, _disk(1)) & inside[z]
        if not kept.any() and stop < 0 and coasted < coast:
            # above the carina the whole airway has met the lung in-plane (a thin wall, or
            # 4 mm pixels): its lumen goes on as the previous slice's area of darkest air
            # right under the previous slice's airway
            airway[z] = _darkest(hu[z], _grow(airway[z + 1]) & inside[z], airway[z + 1].sum())
            coasted += 1
            continue
        coasted = 0
        if stop < 0 and _branches(airway[z]) > _branches(airway[z + 1]):
            stop = z - depth  # the carina: main bronchi from here down
    return airway


def _two_lungs(candidates: np.ndarray) -> tuple[list[np.ndarray], bool]:
    """The two largest components; if the second is tiny the lungs touch: erode in-plane until
    they part, then every voxel of the joined component goes to the nearer part."""
    labels, n = ndi.label(candidates, FACE)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    order = np.argsort(sizes)[::-1]
    if n >= 2 and sizes[order[1]] >= SECOND_LUNG_FRACTION * sizes[order[0]]:
        return [labels == order[0] + 1, labels == order[1] + 1], False
    joined = labels == order[0] + 1
    eroded = joined.copy()
    plane = np.zeros((3, 3, 3), dtype=bool)
    plane[1] = ndi.generate_binary_structure(2, 1)
    for _ in range(MAX_SPLIT_EROSIONS):
        eroded = ndi.binary_erosion(eroded, plane)
        parts, m = ndi.label(eroded, FACE)
        sizes = np.bincount(parts.ravel(), minlength=m + 1)[1:]
        if m >= 2:
            big = np.argsort(sizes)[::-1]
            if sizes[big[1]] >= SECOND_LUNG_FRACTION * sizes[big[0]]:
                seeds = np.where(np.isin(parts, big[:2] + 1), parts, 0)
                idx = ndi.distance_transform_edt(
                    seeds == 0, return_distances=False, return_indices=True
                )
                nearest = seeds[tuple(idx)]
                return [joined & (nearest == big[0] + 1), joined & (nearest == big[1] + 1)], True
    raise RuntimeError("reference: the lungs never parted; raise MAX_SPLIT_EROSIONS")


def _fill_side(mask: np.ndarray, other: np.ndarray, radius_px: int) -> np.ndarray:
    """Slice by slice from the bottom up: a closing with a disk of ``radius_px`` (not into the
    other lung), then the slice's holes that lie on lung: at least HOLE_ON_LUNG of their pixels
    have this lung (as already filled) in the slice below, or it is the bottom slice. A hole
    over soft tissue is the top of the diaphragm's dome or of the heart ringed by the lung base
    in that slice, not a vessel inside the lung."""
    out = np.zeros_like(mask)
    disk = _disk(radius_px) if radius_px >= 1 else None
    pad = radius_px + 1
    for z in range(mask.shape[0]):
        s = mask[z]
        if disk is not None and s.any():
            s = ndi.binary_closing(np.pad(s, pad), disk)[pad:-pad, pad:-pad] & ~other[z]
        holes = ndi.binary_fill_holes(s) & ~s
        if z > 0 and holes.any():
            labels, n = ndi.label(holes)
            on_lung = np.asarray(ndi.mean(out[z - 1], labels, range(1, n + 1))) >= HOLE_ON_LUNG
            holes = np.isin(labels, np.nonzero(on_lung)[0] + 1)
        out[z] = s | holes
    return out


def reference_lungs(
    hu: np.ndarray, spacing: tuple[float, float, float], threshold: float = REFERENCE_HU
) -> Reference:
    start = time.perf_counter()
    inside = _inside_air(hu, threshold)
    airway = _airway(hu, inside, spacing)
    cut = np.stack([ndi.binary_dilation(a, _disk(1)) if a.any() else a for a in airway])
    parts, split = _two_lungs(inside & ~cut)
    x = [np.nonzero(p)[2].mean() for p in parts]
    right, left = (parts[0], parts[1]) if x[0] < x[1] else (parts[1], parts[0])  # LPS: R low x
    radius = int(CLOSING_MM // spacing[2])
    right = _fill_side(right, left, radius)
    left = _fill_side(left, right, radius)
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[right] = LUNG_RIGHT
    labels[left & ~right] = LUNG_LEFT
    return Reference(labels, airway, split, time.perf_counter() - start)


# ---------------------------------------------------------------- comparison


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return float("nan") if total == 0 else 2.0 * int((a & b).sum()) / total


def _hull(mask2d: np.ndarray) -> np.ndarray:
    """Filled convex hull of a slice's pixels (pixel centres)."""
    out = np.zeros_like(mask2d)
    edge = mask2d & ~ndi.binary_erosion(mask2d)
    pts = np.argwhere(edge)
    if len(pts) < 3:
        return mask2d.copy()
    try:
        hull = ConvexHull(pts)
    except QhullError:
        return mask2d.copy()
    (y0, x0), (y1, x1) = pts.min(axis=0), pts.max(axis=0)
    yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    inside = Polygon(pts[hull.vertices]).contains_points(
        np.column_stack([yy.ravel(), xx.ravel()]), radius=0.5
    )
    out[y0 : y1 + 1, x0 : x1 + 1] = inside.reshape(yy.shape)
    return out | mask2d


def zones(r: Result) -> dict[str, np.ndarray]:
    """serialct-only voxels by where they lie (exclusive, in this order)."""
    ref = r.ref.labels > 0
    extra = (r.ours > 0) & ~ref
    near_airway = np.stack(
        [
            ndi.binary_dilation(a, _disk(max(1, round(EDGE_MM / r.spacing[2])))) if a.any() else a
            for a in r.ref.airway
        ]
    )
    no_ref = ~ref.any(axis=(1, 2))
    hull = np.zeros_like(ref)
    dist = np.full(ref.shape, np.inf)
    for z in np.nonzero(extra.any(axis=(1, 2)) & ~no_ref)[0]:
        hull[z] = _hull(ref[z])
        dist[z] = ndi.distance_transform_edt(~ref[z], sampling=r.spacing[1:])
    rest = extra & ~near_airway & ~no_ref[:, None, None]
    near = dist <= max(EDGE_MM, *r.spacing[1:])  # at least one pixel (CIP: 4.2 mm)
    return {
        "airway": extra & near_airway,
        "no_ref_slice": extra & ~near_airway & no_ref[:, None, None],
        "hull_edge": rest & hull & near,
        "hull_deep": rest & hull & ~near,
        "wall_edge": rest & ~hull & near,
        "wall_deep": rest & ~hull & ~near,
    }


def metrics(ours: np.ndarray, truth: np.ndarray, hu: np.ndarray, cm3: float) -> dict[str, float]:
    o, t = ours > 0, truth > 0
    row = {
        "t_R": np.count_nonzero(truth == LUNG_RIGHT) * cm3,
        "t_L": np.count_nonzero(truth == LUNG_LEFT) * cm3,
        "o_R": np.count_nonzero(ours == LUNG_RIGHT) * cm3,
        "o_L": np.count_nonzero(ours == LUNG_LEFT) * cm3,
        "dice": dice(o, t),
        "dice_R": dice(ours == LUNG_RIGHT, truth == LUNG_RIGHT),
        "dice_L": dice(ours == LUNG_LEFT, truth == LUNG_LEFT),
        "extra_soft": np.count_nonzero(o & ~t & (hu > SOFT_TISSUE_HU)) * cm3,
        "extra": np.count_nonzero(o & ~t) * cm3,
        "missed": np.count_nonzero(t & ~o) * cm3,
    }
    total = row["t_R"] + row["t_L"]
    row["vol_pct"] = 100.0 * (row["o_R"] + row["o_L"] - total) / total
    return row


def expert_labels(case: Case, like: sitk.Image) -> np.ndarray:
    """CIP's whole-lung mask on ``like``'s grid (nearest neighbour), sides from lm-64's region
    codes (low byte 9-11 the left thirds, 12-14 the right ones: their x says so)."""
    whole = sitk.ReadImage(str(case.expert))
    regions = sitk.ReadImage(str(case.expert_labels))
    for image in (whole, regions):
        gap = np.abs(np.array(image.GetOrigin()) - np.array(like.GetOrigin())).max()
        if gap > 0.5 * min(like.GetSpacing()) or image.GetSize() != like.GetSize():
            raise ValueError(f"{case.expert}: grid differs from the CT's (origin gap {gap:.2f} mm)")
    on_grid = [
        sitk.GetArrayFromImage(
            sitk.Resample(
                sitk.DICOMOrient(i, WORK_ORIENTATION),
                like,
                sitk.Transform(),
                sitk.sitkNearestNeighbor,
                0,
            )
        )
        for i in (whole, regions)
    ]
    region = on_grid[1] & 0xFF
    labels = np.zeros(region.shape, dtype=np.uint8)
    lung = on_grid[0] > 0
    labels[lung & np.isin(region, (12, 13, 14))] = LUNG_RIGHT
    labels[lung & np.isin(region, (9, 10, 11))] = LUNG_LEFT
    if np.count_nonzero(lung & (labels == 0)):
        raise ValueError(f"{case.expert_labels}: lung voxels without a left/right third code")
    return labels


# ---------------------------------------------------------------- reports


def ends(r: Result) -> list[str]:
    """Lung area (cm2) at the scan's first/last slice and at the lung's lowest/highest slices."""
    px = r.spacing[1] * r.spacing[2] / 100.0
    ref, ours = r.ref.labels > 0, r.ours > 0
    area = lambda m, z: np.count_nonzero(m[z]) * px  # noqa: E731
    n = ref.shape[0]
    lines = []
    for label, z in (("first (most inferior)", 0), ("last (most superior)", n - 1)):
        cut = area(ref, z) > CUT_AREA_CM2
        lines.append(
            f"  scan {label} slice z={z}: reference {area(ref, z):.1f} cm2, serialct "
            f"{area(ours, z):.1f} cm2 -> {'CUT EDGE (lung in it)' if cut else 'no lung'}"
        )
    zr = np.nonzero(ref.any(axis=(1, 2)))[0]
    zo = np.nonzero(ours.any(axis=(1, 2)))[0]
    lines.append(
        f"  lung slices: reference z={zr.min()}..{zr.max()}, serialct z={zo.min()}..{zo.max()}"
    )
    lo, hi = min(zr.min(), zo.min()), max(zr.max(), zo.max())
    rows = sorted(
        {*range(lo, min(lo + END_SLICES, n)), *range(max(hi - END_SLICES + 1, 0), hi + 1)}
    )
    for z in rows:
        lines.append(
            f"    z={z:3d}: reference {area(ref, z):7.1f}  serialct {area(ours, z):7.1f}  "
            f"serialct-only {area(ours & ~ref, z):6.1f}  reference-only "
            f"{area(ref & ~ours, z):6.1f} cm2"
        )
    return lines


def _fmt(v: float, digits: int = 0) -> str:
    return "nan" if v != v else f"{v:.{digits}f}"


def table(results: list[Result]) -> str:
    head = (
        "| series | slices x mm | reference cm3 R / L | serialct cm3 R / L | volume % | Dice | "
        "Dice R / L | serialct-only HU > -100 cm3 | reference-only cm3 | seconds |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in results:
        cm3 = float(np.prod(r.spacing)) / MM3_PER_CM3
        shape = f"{r.hu.shape[0]} x {r.spacing[0]:.2g}"
        rows = [(r.case.name, r.ref.labels, f"{r.seconds:.1f}")]
        if r.expert is not None:
            rows.append((f"{r.case.name}: serialct vs EXPERT", r.expert, ""))
        for name, truth, secs in rows:
            m = metrics(r.ours, truth, r.hu, cm3)
            lines.append(
                f"| {name} | {shape} | {_fmt(m['t_R'])} / {_fmt(m['t_L'])} | {_fmt(m['o_R'])} / "
                f"{_fmt(m['o_L'])} | {m['vol_pct']:+.1f} | {m['dice']:.3f} | {m['dice_R']:.3f} / "
                f"{m['dice_L']:.3f} | {m['extra_soft']:.1f} | {m['missed']:.1f} | {secs} |"
            )
        if r.expert is not None:
            m = metrics(r.ref.labels, r.expert, r.hu, cm3)
            lines.append(
                f"| {r.case.name}: reference vs EXPERT | {shape} | {_fmt(m['t_R'])} / "
                f"{_fmt(m['t_L'])} | (reference) {_fmt(m['o_R'])} / {_fmt(m['o_L'])} | "
                f"{m['vol_pct']:+.1f} | {m['dice']:.3f} | {m['dice_R']:.3f} / {m['dice_L']:.3f} "
                f"| {m['extra_soft']:.1f} | {m['missed']:.1f} | |"
            )
    return "\n".join(lines)


ZONE_TITLES: Final = {
    "airway": "trachea/main bronchi (+ edge)",
    "no_ref_slice": "slices without reference lung",
    "hull_edge": "medial: inside hull, edge",
    "hull_deep": "medial: inside hull, deeper",
    "wall_edge": "lateral: outside hull, edge",
    "wall_deep": "lateral: outside hull, deeper",
}


def zone_table(results: list[Result]) -> str:
    """cm3 of serialct-only voxels per zone, as total / of which HU > SOFT_TISSUE_HU."""
    lines = [
        "| series | " + " | ".join(ZONE_TITLES.values()) + " | mean HU of extra |",
        "|" + "---|" * (len(ZONE_TITLES) + 2),
    ]
    for r in results:
        cm3 = float(np.prod(r.spacing)) / MM3_PER_CM3
        z = zones(r)
        soft = r.hu > SOFT_TISSUE_HU
        cells = [
            f"{np.count_nonzero(m) * cm3:.1f} / {np.count_nonzero(m & soft) * cm3:.1f}"
            for m in z.values()
        ]
        extra = (r.ours > 0) & (r.ref.labels == 0)
        mean = float(r.hu[extra].mean()) if extra.any() else float("nan")
        lines.append(f"| {r.case.name} | " + " | ".join(cells) + f" | {_fmt(mean)} |")
    return "\n".join(lines)


def pieces(r: Result, which: str) -> list[str]:
    """The largest 3D pieces (face connectivity) of serialct-only (``which="extra"``) or
    reference-only voxels: volume, slices, side of the body's midline, centroid, HU."""
    ref, ours = r.ref.labels > 0, r.ours > 0
    diff = ours & ~ref if which == "extra" else ref & ~ours
    labels, n = ndi.label(diff, FACE)
    if n == 0:
        return [f"  {which}: none"]
    cm3 = float(np.prod(r.spacing)) / MM3_PER_CM3
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    xs = np.nonzero((ref | ours).any(axis=(0, 1)))[0]
    midline = (xs.min() + xs.max()) / 2
    out = [f"  largest {which} pieces (slices z, centroid y/x pixel, side of the lungs' midline):"]
    for k in np.argsort(sizes)[::-1][:PIECES]:
        piece = labels == k + 1
        zz, yy, xx = np.nonzero(piece)
        hu = r.hu[piece]
        out.append(
            f"    {sizes[k] * cm3:6.1f} cm3  z={zz.min()}..{zz.max()}  y={yy.mean():.0f} "
            f"x={xx.mean():.0f} ({'R' if xx.mean() < midline else 'L'})  HU median "
            f"{np.median(hu):.0f}, > {SOFT_TISSUE_HU:g}: {100 * np.mean(hu > SOFT_TISSUE_HU):.0f} %"
        )
    return out


def source() -> str:
    """Which serialct.lung ran: its path, a digest of its source and, in a git checkout, the
    commit and whether the lung code differs from it (a rewrite may be under way)."""
    where = Path(serialct.lung.__file__)
    files = sorted(where.parent.glob("*.py")) if where.name == "__init__.py" else [where]
    digest = hashlib.sha1(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]
    git = ["git", "-C", str(where.parent)]
    head = subprocess.run([*git, "log", "-1", "--format=%h"], capture_output=True, text=True)
    if head.returncode != 0:
        return f"serialct.lung from {where} (source digest {digest}; not a git checkout)"
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", *map(str, files)], capture_output=True, text=True
    ).stdout.strip()
    state = "with UNCOMMITTED changes to the lung code" if dirty else "clean"
    commit = head.stdout.strip()
    return f"serialct.lung from {where} (source digest {digest}; commit {commit}, {state})"


# ---------------------------------------------------------------- figures

RED = ListedColormap([(0, 0, 0, 0), (1.0, 0.1, 0.1, 0.45)])
BLUE = ListedColormap([(0, 0, 0, 0), (0.1, 0.5, 1.0, 0.5)])


def _panel(ax, image, ref, ours, expert, aspect: float, title: str) -> None:
    ax.imshow(
        image,
        cmap="gray",
        vmin=LUNG_WINDOW[0],
        vmax=LUNG_WINDOW[1],
        aspect=aspect,
        interpolation="nearest",
    )
    ax.imshow(ours & ~ref, cmap=RED, vmin=0, vmax=1, aspect=aspect, interpolation="nearest")
    ax.imshow(ref & ~ours, cmap=BLUE, vmin=0, vmax=1, aspect=aspect, interpolation="nearest")
    for mask, colour in ((ref, "lime"), (ours, "red"), (expert, "yellow")):
        if mask is not None and mask.any() and not mask.all():
            ax.contour(mask.astype(float), levels=[0.5], colors=colour, linewidths=0.6)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _box(mask: np.ndarray, shape: tuple[int, int], margin: int) -> tuple[slice, slice]:
    if not mask.any():
        return slice(0, shape[0]), slice(0, shape[1])
    ys, xs = np.nonzero(mask)
    return (
        slice(max(ys.min() - margin, 0), min(ys.max() + margin + 1, shape[0])),
        slice(max(xs.min() - margin, 0), min(xs.max() + margin + 1, shape[1])),
    )


def figures(r: Result, out: Path, stem: str) -> list[Path]:
    ref, ours = r.ref.labels > 0, r.ours > 0
    expert = r.expert > 0 if r.expert is not None else None
    both = ref | ours
    dz, dy, dx = r.spacing
    zs = np.nonzero(both.any(axis=(1, 2)))[0]
    step = max(1, math.ceil(len(zs) / MONTAGE_PANELS))
    picks = zs[::step][::-1]  # superior first
    margin = max(2, round(10 / dx))
    by, bx = _box(both.any(axis=0), ref.shape[1:], margin)
    cols = 4
    rows = math.ceil(len(picks) / cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(cols * 4, rows * 4 * (by.stop - by.start) * dy / ((bx.stop - bx.start) * dx)),
    )
    for ax in np.ravel(axes)[len(picks) :]:
        ax.axis("off")
    for ax, z in zip(np.ravel(axes), picks, strict=False):
        e = expert[z, by, bx] if expert is not None else None
        _panel(ax, r.hu[z, by, bx], ref[z, by, bx], ours[z, by, bx], e, dy / dx, f"z={z}")
    fig.suptitle(
        f"{r.case.name}: axial, every {step}th slice (patient right on image left); "
        "green reference, red serialct, red fill serialct only, blue fill reference "
        "only" + (", yellow expert" if expert is not None else ""),
        fontsize=9,
    )
    fig.tight_layout()
    axial = out / f"{stem}_axial.png"
    fig.savefig(axial, dpi=80)
    plt.close(fig)

    # coronal at 3 depths through the lungs, sagittal through each lung's middle and the midline
    ys = np.nonzero(both.any(axis=(0, 2)))[0]
    coronal = [int(np.percentile(ys, q)) for q in (30, 50, 70)]
    sag = []
    for label in (LUNG_RIGHT, LUNG_LEFT):
        xs = np.nonzero((r.ref.labels == label).any(axis=(0, 1)))[0]
        sag.append(int(np.median(xs)) if len(xs) else ref.shape[2] // 2)
    sag.insert(1, (sag[0] + sag[1]) // 2)
    bz = slice(max(zs.min() - 2, 0), min(zs.max() + 3, ref.shape[0]))
    fig, axes = plt.subplots(2, 3, figsize=(15, 10))
    for ax, y in zip(axes[0], coronal, strict=True):
        sl = (slice(None, None, -1), y, bx)
        e = expert[bz][sl] if expert is not None else None
        _panel(ax, r.hu[bz][sl], ref[bz][sl], ours[bz][sl], e, dz / dx, f"coronal y={y}")
    for ax, x, what in zip(axes[1], sag, ("right lung", "midline", "left lung"), strict=True):
        sl = (slice(None, None, -1), by, x)
        e = expert[bz][sl] if expert is not None else None
        _panel(
            ax,
            r.hu[bz][sl],
            ref[bz][sl],
            ours[bz][sl],
            e,
            dz / dy,
            f"sagittal x={x} ({what}; anterior left)",
        )
    fig.suptitle(
        f"{r.case.name}: coronal (patient right on image left, superior up) and sagittal",
        fontsize=9,
    )
    fig.tight_layout()
    views = out / f"{stem}_coronal_sagittal.png"
    fig.savefig(views, dpi=80)
    plt.close(fig)
    return [axial, views]


# ---------------------------------------------------------------- main


def run_case(case: Case, work: Path, lung_cfg: dict) -> Result:
    image = convert(case, work)
    hu = sitk.GetArrayFromImage(image).astype(np.int16)
    spacing = tuple(float(s) for s in image.GetSpacing()[::-1])
    start = time.perf_counter()
    ours_image = segment_lungs(image, lung_cfg)
    seconds = time.perf_counter() - start
    ours = sitk.GetArrayFromImage(ours_image)
    ref = reference_lungs(hu, spacing)
    result = Result(case, hu, spacing, ours, ref, seconds)
    if case.expert is not None:
        result.expert = expert_labels(case, image)
    lung = ref.labels > 0
    alt = reference_lungs(hu, spacing, REFERENCE_ALT_HU)
    cm3 = float(np.prod(spacing)) / MM3_PER_CM3
    airway_slices = int(ref.airway.any(axis=(1, 2)).sum())
    result.notes.append(
        f"  reference: median lung HU {np.median(hu[lung]):.0f}, airway followed on "
        f"{airway_slices} slices ({np.count_nonzero(ref.airway) * cm3:.1f} "
        f"cm3), lungs parted by erosion: {ref.split}, built in {ref.seconds:.1f} s; at "
        f"{REFERENCE_ALT_HU:g} HU the reference is {np.count_nonzero(alt.labels) * cm3:.0f} cm3 "
        f"vs {np.count_nonzero(lung) * cm3:.0f} cm3 (Dice {dice(alt.labels > 0, lung):.3f})"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    lung_cfg = defaults()["lung"]
    results = [run_case(case, out / "work", lung_cfg) for case in cases()]

    full = next(
        r for r in results if r.case.name.startswith("Lung_Dx-A0001 L") and not r.case.lower_half
    )
    part = next(r for r in results if r.case.lower_half)
    n = part.hu.shape[0]
    consistency = (
        f"Partial-scan checks (lower {n} slices of {full.case.name}): the reference built on the "
        f"cut scan vs the full scan's reference cut the same way: Dice "
        f"{dice(part.ref.labels > 0, full.ref.labels[:n] > 0):.4f}; serialct on the cut scan vs "
        f"serialct on the full scan, cut: Dice {dice(part.ours > 0, full.ours[:n] > 0):.4f}, "
        f"{np.count_nonzero(part.ours) * np.prod(part.spacing) / MM3_PER_CM3:.0f} vs "
        f"{np.count_nonzero(full.ours[:n]) * np.prod(part.spacing) / MM3_PER_CM3:.0f} cm3."
    )
    text = [
        f"Measured: {source()}",
        "",
        "## Lung masks against the references",
        "",
        table(results),
        "",
        "## Where serialct's extra voxels lie (cm3: all / of which HU > -100)",
        "",
        f"edge: within {EDGE_MM:g} mm (in-plane, at least one pixel) of the reference lung "
        "or airway; hull: the convex hull of both reference lungs in the slice (mediastinum, "
        "hila, heart, diaphragm dome between the lungs); outside it: chest wall.",
        "",
        zone_table(results),
        "",
        consistency,
        "",
        "## Ends of each scan and lung",
        "",
    ]
    for r in results:
        stem = "".join(ch if ch.isalnum() else "_" for ch in r.case.name)
        pngs = figures(r, out, stem)
        text += [
            f"### {r.case.name}",
            "",
            "```",
            *r.notes,
            *ends(r),
            *pieces(r, "extra"),
            *pieces(r, "missed"),
            "```",
            "",
            "figures: " + ", ".join(p.name for p in pngs),
            "",
        ]
    report = "\n".join(text)
    (out / "real_lung_masks.md").write_text(report + "\n")
    print(report)
    print(f"\nwritten: {out / 'real_lung_masks.md'} and the PNGs beside it")


if __name__ == "__main__":
    main()
