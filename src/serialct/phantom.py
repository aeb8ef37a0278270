"""Synthetic chest-CT phantoms with ground truth: a stand-in for patient data, not patient data.

A phantom is a CT volume in Hounsfield units plus its true lung (1 right, 2 left), lobe
(1 RUL ... 5 LLL) and lesion (1 GGO, 2 consolidation) labels. The anatomy is drawn from simple
analytic shapes in a fixed physical field of view (about 320 mm along z, 360 mm in-plane), so
any array shape gives the same patient at another resolution:

- air outside an elliptic body whose size varies slightly along z; subcutaneous fat, muscle;
- a rib cage (tilted bands on an elliptic shell), a vertebral column, mediastinum and heart;
- a trachea from the top of the volume to the carina and two main bronchi (air, not lung);
- two dome-topped lungs above diaphragm domes, split into five lobes by smooth fissures (thin
  bright sheets where no voxel side exceeds FISSURE_MAX_VOXEL_MM, as thin-section CT shows them);
- branching intrapulmonary vessels that thin towards the periphery;
- lesions: mostly subpleural blobs of ground-glass opacity, some with consolidated cores,
  grown until their volume hits the requested percent of the lung volume.

Arrays are (z, y, x): slice 0 is inferior, row 0 anterior, column 0 the patient's right
(LPS patient coordinates, as SimpleITK reads DICOM). Blur and Gaussian noise come last.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import ndimage

from serialct.constants import (
    HU_AIR,
    HU_BONE,
    HU_FAT,
    HU_MIN_STORED,
    HU_SOFT_TISSUE,
    LESION_CONSOLIDATION,
    LESION_GGO,
    LOBE_LABELS,
    LOBES,
    LUNG_LEFT,
    LUNG_RIGHT,
    MM3_PER_CM3,
)

log = logging.getLogger("serialct")

DEFAULT_SHAPE: Final = (48, 128, 128)
EXTENT_MM: Final = (320.0, 360.0, 360.0)  # (z, y, x) physical size of every phantom volume

# Hounsfield units of the phantom's tissues (before blur and noise).
HU_PARENCHYMA: Final = -850
HU_PARENCHYMA_DEPENDENT_GAIN: Final = 40  # posterior (dependent) lung is denser by up to this
HU_MUSCLE: Final = HU_SOFT_TISSUE
HU_BLOOD: Final = HU_SOFT_TISSUE
HU_VESSEL: Final = HU_SOFT_TISSUE
HU_RIB: Final = HU_BONE
HU_CORTICAL_BONE: Final = 950
HU_CANCELLOUS_BONE: Final = 400
HU_GGO_BASE: Final = (-680.0, -480.0)  # per-blob base HU of ground glass, drawn uniformly
HU_GGO_CENTER_GAIN: Final = 150.0  # blob centres are denser than their rims by up to this
HU_GGO_RANGE: Final = (-700.0, -300.0)
HU_CONSOLIDATION_BASE: Final = (-100.0, 10.0)
HU_CONSOLIDATION_CENTER_GAIN: Final = 40.0
HU_CONSOLIDATION_RANGE: Final = (-100.0, 50.0)
HU_MAX_STORED: Final = 3071

NOISE_SD_HU: Final = 25.0
BLUR_SIGMA_VOXELS: Final = 0.6

# Anatomy in mm; x and y are centred in the field of view, z runs from 0 (inferior) upwards.
BODY_SEMI_AXES_MM: Final = (160.0, 125.0)  # (x, y)
FAT_THICKNESS_MM: Final = 15.0
RIBCAGE_INSET_MM: Final = (20.0, 18.0)  # outer rib surface inside the body outline (x, y)
RIB_THICKNESS_MM: Final = 8.0
RIB_PITCH_MM: Final = 26.0
RIB_WIDTH_MM: Final = 10.0
RIB_TILT: Final = 0.3  # ribs descend anteriorly: band phase shifts by this many mm per mm of y
SPINE_CENTER_Y_INSET_MM: Final = 45.0  # vertebral body centre, from the posterior body outline
SPINE_RADIUS_MM: Final = 18.0
VERTEBRA_PITCH_MM: Final = 30.0
DISC_MM: Final = 5.0
CORTEX_MM: Final = 3.0
LUNG_APEX_Z_MM: Final = 295.0
LUNG_HEIGHT_MM: Final = 230.0
LUNG_CENTER_X_MM: Final = 72.0
LUNG_CENTER_Y_MM: Final = 5.0
LUNG_SEMI_AXES_MM: Final = (56.0, 81.0)  # (x, y) below the apical taper
DIAPHRAGM_DOME_MM: Final = {LUNG_RIGHT: 50.0, LUNG_LEFT: 40.0}
MEDIASTINUM_HALF_WIDTH_MM: Final = 18.0
HEART_CENTER_MM: Final = (55.0, -25.0, 25.0)  # (z above lung base, y, x)
HEART_SEMI_AXES_MM: Final = (60.0, 55.0, 55.0)  # (z, y, x)
TRACHEA_Y_MM: Final = 20.0
TRACHEA_RADIUS_MM: Final = 9.0
# Anatomy that differs from patient to patient, drawn per phantom (uniform in these ranges),
# wider than what the lung and lobe code assume, so tests of that code measure generalisation:
CARINA_BELOW_APEX_MM: Final = (75.0, 105.0)
BRONCHUS_END_MM: Final = ((-50.0, -25.0), 15.0, 42.0)  # (dz range, y, |x|) of a main bronchus end
BRONCHUS_RADIUS_MM: Final = {LUNG_RIGHT: 6.5, LUNG_LEFT: 5.5}
# oblique fissure: how far it rises (fraction of the lung's height) from the front (normalised
# y -1) to the back (+1) of the lung, linear in between: the range of the fissure heights drawn
# before issue 17 (back 0.60-0.80 minus front 0.00-0.14; textbook anatomy: Gray's, Moore). Its
# level, and the level of the right horizontal fissure, give the lower and middle lobes a share
# of their lung from lobe volumes drawn per patient, each uniform over (min - SD, max + SD) of
# LOBE_PERCENT_RANGE: wider than any of the 32 adults measured. The fissures' undulation moves
# the drawn lower-lobe share by up to about 0.02. The lobe split (serialct.lobes) assumes the
# published means, from its own copy of the table.
# lung shape: scale factors of the lungs' height, width (x) and depth (y), the upper fraction of
# the height that narrows to the apex, each diaphragm dome's height and the heart's size
LUNG_HEIGHT_SCALE: Final = (0.88, 1.12)
LUNG_WIDTH_SCALE: Final = (0.88, 1.12)
LUNG_DEPTH_SCALE: Final = (0.90, 1.10)
APEX_TAPER_RANGE: Final = (0.25, 0.45)
DIAPHRAGM_DOME_SCALE: Final = (0.70, 1.30)
HEART_SCALE: Final = (0.90, 1.15)
OBLIQUE_RISE: Final = (0.46, 0.80)
# Lobe volume, percent of both lungs: (min, max, SD) over 32 adults on supine inspiratory CT,
# Yamada Y et al., Respiration 2020;99(7):598 (PMC7490509), Table 3, supine column
LOBE_PERCENT_RANGE: Final = {
    "rul": (11.8, 22.7, 2.4),
    "rml": (6.6, 13.8, 1.6),
    "rll": (22.3, 34.0, 2.6),
    "lul": (18.1, 26.6, 2.1),
    "lll": (19.4, 28.7, 2.4),
}
FISSURE_WAVE: Final = 0.03  # amplitude (height fraction) of the fissures' smooth undulation
# Fissures are visible only on thin-section grids: the visceral pleura (FISSURE_MM of soft
# tissue) is averaged over the voxel's extent across it (a line of about -500..-650 HU at
# 0.7 x 0.7 x 1 mm before blur), drawn when no voxel side exceeds FISSURE_MAX_VOXEL_MM.
FISSURE_MM: Final = 0.5
FISSURE_MAX_VOXEL_MM: Final = 2.0  # (the lobe code searches only up to 1.5 mm)
VESSEL_ROOT_RADIUS_MM: Final = 4.5
VESSEL_MIN_RADIUS_MM: Final = 0.7
VESSEL_RADIUS_RATIO: Final = 0.75
VESSEL_LENGTH_RATIO: Final = 0.72
VESSEL_BRANCH_ANGLE_DEG: Final = (20.0, 40.0)
VESSEL_MAX_DEPTH: Final = 6
VESSEL_FIRST_LENGTH: Final = 0.4  # first segment length as a fraction of the hilum-target distance
SUBPLEURAL_RHO2: Final = 0.7  # lesion seeds lie where the normalised lung radius^2 exceeds this

# Lesion placement.
LOBE_LESION_WEIGHTS: Final = {"rul": 0.18, "rml": 0.12, "rll": 0.27, "lul": 0.18, "lll": 0.25}
BLOB_INSIDE_FRACTION: Final = 0.5  # about half a subpleural blob lies inside the lung
MAX_BLOBS: Final = 3000


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic CT volume (int16 HU, (z, y, x)) with its true lung, lobe and lesion labels."""

    hu: np.ndarray
    spacing: tuple[float, float, float]
    lung: np.ndarray
    lobes: np.ndarray
    lesion: np.ndarray

    @property
    def voxel_cm3(self) -> float:
        return float(np.prod(self.spacing)) / MM3_PER_CM3

    def volumes_cm3(self) -> dict[str, float]:
        """True volumes: lung, lesion, ggo, consolidation (cm3)."""
        v = self.voxel_cm3
        return {
            "lung": int(np.count_nonzero(self.lung)) * v,
            "lesion": int(np.count_nonzero(self.lesion)) * v,
            "ggo": int(np.count_nonzero(self.lesion == LESION_GGO)) * v,
            "consolidation": int(np.count_nonzero(self.lesion == LESION_CONSOLIDATION)) * v,
        }

    def lesion_percent(self) -> float:
        """100 * lesion voxels / lung voxels."""
        return 100.0 * np.count_nonzero(self.lesion) / max(np.count_nonzero(self.lung), 1)

    def lobe_lesion_percent(self) -> dict[str, float]:
        """Per lobe: 100 * lesion voxels in the lobe / lobe voxels."""
        lobe_n = np.bincount(self.lobes.ravel(), minlength=len(LOBES) + 1)
        les_n = np.bincount(self.lobes[self.lesion > 0], minlength=len(LOBES) + 1)
        return {
            name: 100.0 * les_n[lab] / lobe_n[lab] if lobe_n[lab] else 0.0
            for name, lab in LOBE_LABELS.items()
        }


@dataclass(frozen=True, eq=False)
class Anatomy:
    """A lesion-free phantom before blur and noise (one per synthetic patient)."""

    base_hu: np.ndarray  # float32, clean tissue HU
    spacing: tuple[float, float, float]
    lung: np.ndarray
    lobes: np.ndarray
    vessel: np.ndarray  # bool, intrapulmonary vessels (inside lung)
    seeds: np.ndarray  # flat indices of subpleural parenchyma voxels (lesion seeds)


def spacing_for_shape(shape: tuple[int, int, int]) -> tuple[float, float, float]:
    """(z, y, x) voxel size in mm that gives every shape the same physical extent."""
    return tuple(e / n for e, n in zip(EXTENT_MM, shape, strict=True))  # type: ignore[return-value]


def origin_for_shape(shape: tuple[int, int, int]) -> tuple[float, float, float]:
    """(z, y, x) LPS position in mm of the centre of voxel (0, 0, 0)."""
    dz, dy, dx = spacing_for_shape(shape)
    return (0.5 * dz, -0.5 * EXTENT_MM[1] + 0.5 * dy, -0.5 * EXTENT_MM[2] + 0.5 * dx)


def _axes(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-D voxel-centre coordinates (mm) along z, y, x."""
    origin = origin_for_shape(shape)
    spacing = spacing_for_shape(shape)
    return tuple(  # type: ignore[return-value]
        (o + s * np.arange(n)).astype(np.float32)
        for o, s, n in zip(origin, spacing, shape, strict=True)
    )


def _bbox(axes: tuple[np.ndarray, ...], lo: np.ndarray, hi: np.ndarray) -> tuple[slice, ...] | None:
    """Index slices of the voxels whose centres lie in [lo, hi] (mm, per axis)."""
    out = []
    for ax, a, b in zip(axes, lo, hi, strict=True):
        i0, i1 = int(np.searchsorted(ax, a)), int(np.searchsorted(ax, b, side="right"))
        if i1 <= i0:
            return None
        out.append(slice(i0, i1))
    return tuple(out)


def _capsule(axes, p0: np.ndarray, p1: np.ndarray, radius: float):  # type: ignore[no-untyped-def]
    """Voxels within ``radius`` of segment p0-p1 (mm, z/y/x): (bbox slices, bool sub-mask)."""
    box = _bbox(axes, np.minimum(p0, p1) - radius, np.maximum(p0, p1) + radius)
    if box is None:
        return None
    dz = axes[0][box[0]][:, None, None] - p0[0]
    dy = axes[1][box[1]][None, :, None] - p0[1]
    dx = axes[2][box[2]][None, None, :] - p0[2]
    seg = p1 - p0
    length2 = float(seg @ seg) or 1e-6
    t = np.clip((dz * seg[0] + dy * seg[1] + dx * seg[2]) / length2, 0.0, 1.0)
    d2 = (dz - t * seg[0]) ** 2 + (dy - t * seg[1]) ** 2 + (dx - t * seg[2]) ** 2
    return box, d2 <= radius * radius


def _rotate(v: np.ndarray, rng: np.random.Generator, angle: float) -> np.ndarray:
    """Unit vector ``v`` turned by ``angle`` radians about a random perpendicular axis."""
    perp = np.cross(v, rng.normal(size=3))
    perp /= np.linalg.norm(perp) or 1.0
    out = v * math.cos(angle) + perp * math.sin(angle)
    return out / np.linalg.norm(out)


def _vessel_segments(
    rng: np.random.Generator, root: np.ndarray, targets: list[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """A branching tree from ``root`` towards each target: (start, end, radius) segments."""
    segments: list[tuple[np.ndarray, np.ndarray, float]] = []
    lo, hi = np.deg2rad(VESSEL_BRANCH_ANGLE_DEG)
    stack = []
    for target in targets:
        vec = target - root
        dist = float(np.linalg.norm(vec))
        stack.append((root, vec / dist, VESSEL_FIRST_LENGTH * dist, VESSEL_ROOT_RADIUS_MM, 0))
    while stack:
        start, direction, length, radius, depth = stack.pop()
        end = start + direction * length
        segments.append((start, end, radius))
        child_r = radius * VESSEL_RADIUS_RATIO
        if depth >= VESSEL_MAX_DEPTH or child_r < VESSEL_MIN_RADIUS_MM:
            continue
        for _ in range(2):
            new_dir = _rotate(direction, rng, rng.uniform(lo, hi))
            stack.append((end, new_dir, length * VESSEL_LENGTH_RATIO, child_r, depth + 1))
    return segments


def draw_anatomy(
    rng: np.random.Generator, shape: tuple[int, int, int] = DEFAULT_SHAPE, lung_scale: float = 1.0
) -> Anatomy:
    """Draw a lesion-free synthetic chest (no blur/noise); lung volume scales with lung_scale."""
    shape = tuple(int(n) for n in shape)  # type: ignore[assignment]
    spacing = spacing_for_shape(shape)
    axes = _axes(shape)
    z, y, x = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]

    # the whole chest scales with the lungs (volume ~ lung_scale)
    s = math.cbrt(lung_scale) * rng.uniform(0.96, 1.04)

    # body outline, fat, muscle
    body_ax, body_ay = (a * s * rng.uniform(0.97, 1.04) for a in BODY_SEMI_AXES_MM)
    wobble = 1.0 + 0.04 * np.sin(2 * np.pi * z / EXTENT_MM[0] + rng.uniform(0, 2 * np.pi))
    ax_z, ay_z = body_ax * wobble, body_ay * wobble
    fat = FAT_THICKNESS_MM * rng.uniform(0.7, 1.5)
    hu = np.full(shape, HU_AIR, dtype=np.float32)
    hu[(x / ax_z) ** 2 + (y / ay_z) ** 2 <= 1.0] = HU_FAT
    hu[(x / (ax_z - fat)) ** 2 + (y / (ay_z - fat)) ** 2 <= 1.0] = HU_MUSCLE

    # patient-to-patient anatomy from a child generator: the main stream (and so every later
    # draw: vessels, lesions) is the same as without it
    variation = rng.spawn(1)[0]
    carina_below_apex = variation.uniform(*CARINA_BELOW_APEX_MM) * s
    bronchus_dz = variation.uniform(*BRONCHUS_END_MM[0])
    # the lobes from a child generator of their own, and the three draws the fissure heights took
    # before issue 17 kept: every later draw, and so each phantom's lung shape, stays as it was
    lobe_variation = variation.spawn(1)[0]
    variation.random(3)
    half_rise = 0.5 * lobe_variation.uniform(*OBLIQUE_RISE)  # per unit of normalised y
    percent = {name: _drawn_lobe_percent(lobe_variation, name) for name in LOBES}
    right = percent["rul"] + percent["rml"] + percent["rll"]
    lower_share = {
        LUNG_RIGHT: percent["rll"] / right,
        LUNG_LEFT: percent["lll"] / (percent["lul"] + percent["lll"]),
    }
    middle_share = percent["rml"] / right
    height_scale, width_scale, depth_scale, taper_fraction = (
        variation.uniform(*r)
        for r in (LUNG_HEIGHT_SCALE, LUNG_WIDTH_SCALE, LUNG_DEPTH_SCALE, APEX_TAPER_RANGE)
    )
    dome_mm = {
        side: mm * variation.uniform(*DIAPHRAGM_DOME_SCALE)
        for side, mm in DIAPHRAGM_DOME_MM.items()
    }
    heart_scale = variation.uniform(*HEART_SCALE)

    # lung geometry (shared with ribs and vessels)
    height = LUNG_HEIGHT_MM * s * height_scale
    z_apex = LUNG_APEX_Z_MM
    z_base = z_apex - height
    l_ax = LUNG_SEMI_AXES_MM[0] * s * width_scale
    l_ay = LUNG_SEMI_AXES_MM[1] * s * depth_scale

    # rib cage: tilted bands on an elliptic shell, over the lungs' z range
    rx, ry = body_ax - RIBCAGE_INSET_MM[0], body_ay - RIBCAGE_INSET_MM[1]
    rib_r2 = (x / (rx * wobble)) ** 2 + (y / (ry * wobble)) ** 2
    inner = (1.0 - RIB_THICKNESS_MM / min(rx, ry)) ** 2
    band = np.mod(z + RIB_TILT * y + rng.uniform(0, RIB_PITCH_MM), RIB_PITCH_MM) < RIB_WIDTH_MM
    band &= (z > z_base - 2 * RIB_PITCH_MM) & (z < z_apex + RIB_PITCH_MM)
    hu[(rib_r2 <= 1.0) & (rib_r2 > inner) & band] = HU_RIB
    inside_ribs = rib_r2 <= inner
    del rib_r2

    # vertebral column: cancellous bodies with a cortical rim, discs between them
    spine_y = body_ay - SPINE_CENTER_Y_INSET_MM
    sr2 = x**2 + (y - spine_y) ** 2
    vertebra = np.mod(z, VERTEBRA_PITCH_MM) >= DISC_MM
    hu[np.broadcast_to(sr2 <= SPINE_RADIUS_MM**2, shape) & vertebra] = HU_CORTICAL_BONE
    core = sr2 <= (SPINE_RADIUS_MM - CORTEX_MM) ** 2
    hu[np.broadcast_to(core, shape) & vertebra] = HU_CANCELLOUS_BONE

    # lungs: elliptic cross-sections narrowing to a dome at the apex, diaphragm domes below
    taper = np.sqrt(np.clip((z_apex - z) / (taper_fraction * height), 1e-6, 1.0))
    heart_c = np.array(HEART_CENTER_MM) + [z_base, 0.0, 0.0]
    hz, hy, hx = (a * s * heart_scale for a in HEART_SEMI_AXES_MM)
    heart = ((z - heart_c[0]) / hz) ** 2 + ((y - heart_c[1]) / hy) ** 2 + (
        (x - heart_c[2]) / hx
    ) ** 2 <= 1.0
    hu[heart] = HU_BLOOD
    z_carina = z_apex - carina_below_apex
    airway = np.broadcast_to(x**2 + (y - TRACHEA_Y_MM) ** 2 <= TRACHEA_RADIUS_MM**2, shape) & (
        z >= z_carina
    )
    p_carina = np.array([z_carina, TRACHEA_Y_MM, 0.0])
    hila: dict[int, np.ndarray] = {}
    for side, sign in ((LUNG_RIGHT, -1.0), (LUNG_LEFT, 1.0)):
        end = np.array([z_carina + bronchus_dz * s, BRONCHUS_END_MM[1], sign * BRONCHUS_END_MM[2]])
        hila[side] = end
        hit = _capsule(axes, p_carina, end, BRONCHUS_RADIUS_MM[side])
        if hit is not None:
            airway[hit[0]] |= hit[1]
    excluded = heart | airway | ~inside_ribs | (np.abs(x) < MEDIASTINUM_HALF_WIDTH_MM * s)
    del heart, inside_ribs

    lung = np.zeros(shape, dtype=np.uint8)
    lobes = np.zeros(shape, dtype=np.uint8)
    fissures = np.zeros(shape, dtype=np.float32) if max(spacing) <= FISSURE_MAX_VOXEL_MM else None
    subpleural = np.zeros(shape, dtype=bool)
    targets: dict[int, list[np.ndarray]] = {}
    for side, sign in ((LUNG_RIGHT, -1.0), (LUNG_LEFT, 1.0)):
        cx = sign * LUNG_CENTER_X_MM * s
        base_r2 = ((x - cx) / l_ax) ** 2 + ((y - LUNG_CENTER_Y_MM) / l_ay) ** 2  # (1, y, x)
        rho2 = base_r2 / taper**2
        z_floor = z_base + dome_mm[side] * s * (1.0 - np.minimum(base_r2, 1.0))
        region = (rho2 <= 1.0) & (z >= z_floor) & ~excluded
        lung[region] = side
        subpleural |= region & (rho2 > SUBPLEURAL_RHO2)
        del rho2
        # fissures: smooth surfaces as heights above the lung base
        yn = (y - LUNG_CENTER_Y_MM) / l_ay
        wave = FISSURE_WAVE * np.sin(2 * np.pi * x / 150.0 + rng.uniform(0, 2 * np.pi))
        along = (z - z_base) / height - half_rise * yn  # constant on the oblique fissure
        level = _quantile(along, region, lower_share[side])
        z_oblique = z_base + height * (level + half_rise * yn + wave)
        del along
        lower = z < z_oblique
        if fissures is not None:
            _draw_fissure(fissures, z, z_oblique, spacing, region)
        if side == LUNG_RIGHT:
            wave2 = FISSURE_WAVE * np.sin(2 * np.pi * y / 170.0 + rng.uniform(0, 2 * np.pi))
            upper_part = region & ~lower
            share = middle_share * np.count_nonzero(region) / max(np.count_nonzero(upper_part), 1)
            level = _quantile((z - z_base) / height - wave2, upper_part, share)
            z_horizontal = z_base + height * (level + wave2)
            middle = ~lower & (z < z_horizontal)
            if fissures is not None:
                _draw_fissure(
                    fissures,
                    z,
                    np.broadcast_to(z_horizontal, z_oblique.shape),
                    spacing,
                    region & ~lower,
                )
            labels = np.where(
                lower, LOBE_LABELS["rll"], np.where(middle, LOBE_LABELS["rml"], LOBE_LABELS["rul"])
            )
        else:
            labels = np.where(lower, LOBE_LABELS["lll"], LOBE_LABELS["lul"])
        lobes[region] = labels[region]
        del lower, labels, region
        targets[side] = [
            np.array([z_apex - 25.0 * s, 0.0, sign * 75.0]),
            np.array([z_base + 0.7 * height, -50.0 * s, sign * 80.0]),
            np.array([z_base + 0.7 * height, 55.0 * s, sign * 85.0]),
            np.array([z_base + 0.25 * height, -45.0 * s, sign * 70.0]),
            np.array([z_base + 0.2 * height, 55.0 * s, sign * 80.0]),
            np.array([z_base + 0.45 * height, 5.0, sign * 112.0 * s]),
        ]
    hu[airway] = HU_AIR
    del excluded, airway

    in_lung = lung > 0
    gradient = HU_PARENCHYMA_DEPENDENT_GAIN * (y - y.min()) / (y.max() - y.min())
    hu[in_lung] = np.broadcast_to(HU_PARENCHYMA + gradient, shape)[in_lung]
    if fissures is not None:
        hu[in_lung] += fissures[in_lung]
        del fissures

    vessel = np.zeros(shape, dtype=bool)
    for side in (LUNG_RIGHT, LUNG_LEFT):
        for p0, p1, radius in _vessel_segments(rng, hila[side], targets[side]):
            hit = _capsule(axes, p0, p1, radius)
            if hit is not None:
                vessel[hit[0]] |= hit[1]
    vessel &= in_lung
    hu[vessel] = HU_VESSEL
    seeds = np.flatnonzero(subpleural & ~vessel)
    return Anatomy(hu, spacing, lung, lobes, vessel, seeds)


def _drawn_lobe_percent(rng: np.random.Generator, name: str) -> float:
    """A lobe's percent of both lungs, uniform over its published (min, max) widened by one SD."""
    low, high, sd = LOBE_PERCENT_RANGE[name]
    return float(rng.uniform(low - sd, high + sd))


def _quantile(values: np.ndarray, region: np.ndarray, share: float) -> float:
    """The ``share`` quantile of ``values`` (broadcast to ``region``) over ``region``."""
    return float(np.quantile(np.broadcast_to(values, region.shape)[region], min(share, 1.0)))


def _draw_fissure(
    out: np.ndarray,
    z: np.ndarray,
    surface: np.ndarray,
    spacing: tuple[float, float, float],
    region: np.ndarray,
) -> None:
    """Add a fissure (the surface z = ``surface`` (1, y, x), mm) to ``out`` in ``region``: the
    pleura's soft tissue minus parenchyma, times FISSURE_MM over the voxel's extent across the
    surface, falling off linearly to 0 one voxel extent away."""
    gy, gx = np.gradient(surface[0], spacing[1], spacing[2])
    norm = np.sqrt(1.0 + gy**2 + gx**2)
    # the voxel's extent along the surface normal (1, -gy, -gx) / norm
    extent = (spacing[0] + np.abs(gy) * spacing[1] + np.abs(gx) * spacing[2]) / norm
    distance = np.abs(z - surface) / norm[None]  # mm from the surface
    weight = np.clip(1.0 - distance / extent[None], 0.0, None)
    gain = (HU_SOFT_TISSUE - HU_PARENCHYMA) * FISSURE_MM / extent
    hit = region & (weight > 0)
    out[hit] = np.maximum(out[hit], (weight * gain[None])[hit])


def _involved_lobes(rng: np.random.Generator, lesion_percent: float) -> list[int]:
    """More burden, more lobes: about 1-2 lobes at 0.5 %, 3 at 1.6 %, all five from ~10 %."""
    n = int(np.clip(int(1 + 1.3 * math.log2(1 + lesion_percent) + rng.uniform()), 1, len(LOBES)))
    weights = np.array([LOBE_LESION_WEIGHTS[name] for name in LOBES])
    chosen = rng.choice(len(LOBES), size=n, replace=False, p=weights / weights.sum())
    return [LOBE_LABELS[LOBES[i]] for i in chosen]


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _grow_lesions(
    anatomy: Anatomy, rng: np.random.Generator, lesion_percent: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add subpleural blobs until the lesion voxels reach the target exactly.

    Returns flat voxel indices, their normalised blob radius d (0 centre, 1 rim) and the blob's
    base GGO HU, one entry per lesion voxel.
    """
    shape = anatomy.lung.shape
    lung_n = int(np.count_nonzero(anatomy.lung))
    target = int(round(lesion_percent / 100.0 * lung_n))
    empty = (np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32))
    if target == 0:
        return empty
    axes = _axes(shape)
    spacing = np.array(anatomy.spacing)
    free = (anatomy.lung > 0) & ~anatomy.vessel
    free_flat = free.ravel()
    seed_lobes = anatomy.lobes.ravel()[anatomy.seeds]
    lobes = [lab for lab in _involved_lobes(rng, lesion_percent) if np.any(seed_lobes == lab)]
    if not lobes:
        lobes = [int(lab) for lab in np.unique(seed_lobes)]
    n_goal = len(lobes) * int(rng.integers(2, 4))
    voxel_mm3 = float(np.prod(spacing))
    blob_mm3 = target * voxel_mm3 / n_goal / BLOB_INSIDE_FRACTION
    radius = (blob_mm3 / (4.0 / 3.0 * math.pi)) ** (1.0 / 3.0)
    radius = max(radius, 0.75 * float(spacing.max()))
    scale = 1.0
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    remaining = target
    for i in range(MAX_BLOBS):
        if remaining <= 0:
            break
        lab = lobes[i % len(lobes)]
        pool = anatomy.seeds[seed_lobes == lab]
        centre_idx = pool[rng.integers(len(pool))]
        centre = np.array(np.unravel_index(centre_idx, shape)) * spacing + [a[0] for a in axes]
        radii = radius * scale * rng.uniform(0.6, 1.4, size=3)
        reach = 1.3 * float(radii.max())
        box = _bbox(axes, centre - reach, centre + reach)
        if box is None:
            continue
        offs = [
            axes[0][box[0]][:, None, None] - centre[0],
            axes[1][box[1]][None, :, None] - centre[1],
            axes[2][box[2]][None, None, :] - centre[2],
        ]
        rot = _random_rotation(rng)
        d2 = sum(
            ((rot[k, 0] * offs[0] + rot[k, 1] * offs[1] + rot[k, 2] * offs[2]) / radii[k]) ** 2
            for k in range(3)
        )
        wave_k = rng.normal(size=(2, 3)) * (2.0 * math.pi / (2.0 * radius * scale))
        phases = rng.uniform(0, 2 * math.pi, size=2)
        bumps = 1.0 + sum(
            0.12
            * np.sin(
                wave_k[j, 0] * offs[0] + wave_k[j, 1] * offs[1] + wave_k[j, 2] * offs[2] + phases[j]
            )
            for j in range(2)
        )
        d = np.sqrt(d2) * bumps
        cand = free[box] & (d < 1.0)
        local = np.flatnonzero(cand)
        if local.size == 0:
            scale *= 1.1
            continue
        dvals = d[cand]
        sub_idx = np.unravel_index(local, cand.shape)
        flat = np.ravel_multi_index(
            tuple(si + b.start for si, b in zip(sub_idx, box, strict=True)), shape
        )
        if flat.size > remaining:
            keep = np.argpartition(dvals, remaining - 1)[:remaining]
            flat, dvals = flat[keep], dvals[keep]
        expected = 4.0 / 3.0 * math.pi * float(np.prod(radii)) * BLOB_INSIDE_FRACTION / voxel_mm3
        if i >= n_goal and flat.size < 0.3 * expected:
            scale *= 1.1  # the lung near the seeds is filling up: grow later blobs
        free_flat[flat] = False
        base = np.float32(rng.uniform(*HU_GGO_BASE))
        parts.append((flat, dvals.astype(np.float32), np.full(flat.size, base, np.float32)))
        remaining -= flat.size
    if remaining > 0:
        log.warning("phantom: lesion target short by %d of %d voxels", remaining, target)
    if not parts:
        return empty
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def add_lesions(
    anatomy: Anatomy,
    rng: np.random.Generator,
    lesion_percent: float = 0.0,
    consolidation_fraction: float = 0.15,
) -> Phantom:
    """Paint lesions into ``anatomy``, then blur, add noise and round to int16."""
    if not 0.0 <= lesion_percent < 100.0:
        raise ValueError(f"lesion_percent must be in [0, 100), got {lesion_percent}")
    if not 0.0 <= consolidation_fraction <= 1.0:
        raise ValueError(f"consolidation_fraction must be in [0, 1], got {consolidation_fraction}")
    flat, d, base = _grow_lesions(anatomy, rng, lesion_percent)
    hu = anatomy.base_hu.copy()
    lesion = np.zeros(hu.shape, dtype=np.uint8)
    if flat.size:
        n_core = int(round(consolidation_fraction * flat.size))
        is_core = np.zeros(flat.size, dtype=bool)
        if n_core:
            is_core[np.argpartition(d, n_core - 1)[:n_core]] = True
        ggo_hu = np.clip(base + HU_GGO_CENTER_GAIN * (1.0 - d), *HU_GGO_RANGE)
        cons_base = rng.uniform(*HU_CONSOLIDATION_BASE)
        cons_hu = np.clip(
            cons_base + HU_CONSOLIDATION_CENTER_GAIN * (1.0 - d), *HU_CONSOLIDATION_RANGE
        )
        hu.ravel()[flat] = np.where(is_core, cons_hu, ggo_hu)
        lesion.ravel()[flat] = np.where(is_core, LESION_CONSOLIDATION, LESION_GGO)
    ndimage.gaussian_filter(hu, BLUR_SIGMA_VOXELS, output=hu)
    hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(NOISE_SD_HU)
    np.rint(hu, out=hu)
    np.clip(hu, HU_MIN_STORED, HU_MAX_STORED, out=hu)
    return Phantom(hu.astype(np.int16), anatomy.spacing, anatomy.lung, anatomy.lobes, lesion)


def draw_phantom(
    rng: np.random.Generator,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    lesion_percent: float = 0.0,
    consolidation_fraction: float = 0.15,
    lung_scale: float = 1.0,
) -> Phantom:
    """Draw a synthetic chest CT whose true lesion volume is ``lesion_percent`` % of the lung.

    ``consolidation_fraction`` of the lesion voxels become consolidated blob cores; the rest is
    ground glass. ``lesion_percent=0`` gives a normal lung. Synthetic data, not a patient.
    """
    anatomy = draw_anatomy(rng, shape, lung_scale)
    return add_lesions(anatomy, rng, lesion_percent, consolidation_fraction)
