"""A synthetic chest CT for the lung and lobe tests, with its ground truth.

Body ellipse (muscle with a fat rim, a spine), two lung ellipsoids at -850 HU with noise, a
trachea from the top splitting into two bronchi, vessels (+40 HU) inside the lungs, two dense
subpleural consolidations (HU ~ 0, against the chest wall) and one inside the left lung.
Coordinates are LPS in mm: +x patient's left, +y posterior, +z superior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

SHAPE = (48, 128, 128)  # (z, y, x)
SPACING = (5.0, 2.5, 2.5)  # mm, (z, y, x)
BODY_SEMI = (150.0, 110.0)  # x, y
FAT_MM = 10.0
LUNG_SEMI = (55.0, 75.0, 90.0)  # x, y, z
LUNG_CENTRE_X = 75.0
LUNG_CENTRE_Z = 110.0
TRACHEA_XY = (0.0, -20.0)
TRACHEA_RADIUS = 9.0
CARINA_Z = 160.0
BRONCHUS_RADIUS = 6.0
BRONCHUS_END = (60.0, -10.0, 130.0)  # right one mirrored in x
VESSEL_RADIUS = 3.0
LESION_RADIUS = 10.0


@dataclass
class Phantom:
    image: sitk.Image  # identity direction, array z from inferior to superior
    lung: np.ndarray  # truth: 0, 1 right, 2 left (lesions and vessels included)
    airway: np.ndarray  # trachea and bronchi outside the lungs
    lesions: np.ndarray  # consolidation voxels (all inside the lungs)
    subpleural: np.ndarray  # the consolidations against the chest wall


def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float, float]]:
    origin = (
        -(SHAPE[2] - 1) * SPACING[2] / 2,
        -(SHAPE[1] - 1) * SPACING[1] / 2,
        0.0,
    )
    z = origin[2] + SPACING[0] * np.arange(SHAPE[0])[:, None, None]
    y = origin[1] + SPACING[1] * np.arange(SHAPE[1])[None, :, None]
    x = origin[0] + SPACING[2] * np.arange(SHAPE[2])[None, None, :]
    return z, y, x, origin


def _tube(z, y, x, start, end, radius) -> np.ndarray:
    """Voxels within ``radius`` of the segment start-end (points as (x, y, z))."""
    p = np.stack(np.broadcast_arrays(x, y, z), axis=-1)
    a, b = np.asarray(start, float), np.asarray(end, float)
    t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0.0, 1.0)
    closest = a + t[..., None] * (b - a)
    return np.linalg.norm(p - closest, axis=-1) <= radius


def _ball(z, y, x, centre, radius) -> np.ndarray:
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= radius**2


def make_chest(centre_x: float = LUNG_CENTRE_X, seed: int = 0) -> Phantom:
    """The phantom; ``centre_x`` below LUNG_SEMI[0] makes the lungs touch at the midline."""
    rng = np.random.default_rng(seed)
    z, y, x, origin = _grid()
    hu = np.full(SHAPE, -1000.0) + rng.normal(0, 10, SHAPE)
    body_r = (x / BODY_SEMI[0]) ** 2 + (y / BODY_SEMI[1]) ** 2
    inner_r = (x / (BODY_SEMI[0] - FAT_MM)) ** 2 + (y / (BODY_SEMI[1] - FAT_MM)) ** 2
    body = np.broadcast_to(body_r <= 1, SHAPE)
    hu[body] = -100.0
    hu[np.broadcast_to(inner_r <= 1, SHAPE)] = 40.0
    hu[np.broadcast_to((x**2 + (y - 80.0) ** 2) <= 15.0**2, SHAPE)] = 700.0  # spine

    lung = np.zeros(SHAPE, dtype=np.uint8)
    for side, sign in ((1, -1.0), (2, 1.0)):
        r = (
            ((x - sign * centre_x) / LUNG_SEMI[0]) ** 2
            + (y / LUNG_SEMI[1]) ** 2
            + ((z - LUNG_CENTRE_Z) / LUNG_SEMI[2]) ** 2
        )
        lung[(r <= 1) & (lung == 0)] = side
    inside = lung > 0
    hu[inside] = -850.0 + rng.normal(0, 30, int(inside.sum()))

    for sign in (-1.0, 1.0):  # vessels from the hilum outwards
        hilum = (sign * (centre_x - 35.0), 0.0, 120.0)
        for end in (
            (sign * (centre_x + 30), -50.0, 170.0),
            (sign * (centre_x + 25), 40.0, 50.0),
            (sign * centre_x, -40.0, 60.0),
        ):
            hu[_tube(z, y, x, hilum, end, VESSEL_RADIUS) & inside] = 40.0

    airway = np.zeros(SHAPE, dtype=bool)
    top = (TRACHEA_XY[0], TRACHEA_XY[1], float(z.max()) + SPACING[0])
    carina = (TRACHEA_XY[0], TRACHEA_XY[1], CARINA_Z)
    airway |= _tube(z, y, x, top, carina, TRACHEA_RADIUS)
    for sign in (-1.0, 1.0):
        end = (sign * BRONCHUS_END[0], BRONCHUS_END[1], BRONCHUS_END[2])
        airway |= _tube(z, y, x, carina, end, BRONCHUS_RADIUS)
    hu[airway] = -1000.0 + rng.normal(0, 15, int(airway.sum()))
    airway &= ~inside

    lesions = np.zeros(SHAPE, dtype=bool)
    subpleural = np.zeros(SHAPE, dtype=bool)
    depth = LESION_RADIUS / 2  # centre this far inside the pleura: a broad base on the wall
    z_lat = 100.0
    x_lat = -(centre_x + LUNG_SEMI[0] * np.sqrt(1 - ((z_lat - LUNG_CENTRE_Z) / LUNG_SEMI[2]) ** 2))
    subpleural |= _ball(z, y, x, (x_lat + depth, 0.0, z_lat), LESION_RADIUS)  # right, lateral
    z_post = 80.0
    y_post = LUNG_SEMI[1] * np.sqrt(1 - ((z_post - LUNG_CENTRE_Z) / LUNG_SEMI[2]) ** 2)
    subpleural |= _ball(z, y, x, (centre_x, y_post - depth, z_post), LESION_RADIUS)  # left, back
    subpleural &= inside
    lesions |= subpleural
    lesions |= _ball(z, y, x, (centre_x, -20.0, 130.0), 12.0) & inside  # left, inner
    hu[lesions] = rng.normal(0, 20, int(lesions.sum()))

    image = sitk.GetImageFromArray(np.round(hu).astype(np.int16))
    image.SetSpacing(SPACING[::-1])
    image.SetOrigin(origin)
    return Phantom(image, lung, airway, lesions, subpleural)


def flipped(image: sitk.Image, axes: tuple[int, ...]) -> sitk.Image:
    """The same patient stored with the array reversed along numpy ``axes`` (0 z, 1 y, 2 x):
    direction and origin change so every voxel keeps its physical position."""
    array = sitk.GetArrayFromImage(image)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    origin = np.array(image.GetOrigin())
    for axis in axes:
        itk_axis = 2 - axis
        array = np.flip(array, axis=axis)
        index = [0.0, 0.0, 0.0]
        index[itk_axis] = image.GetSize()[itk_axis] - 1
        origin = origin + direction @ (np.array(index) * np.array(image.GetSpacing()))
        direction[:, itk_axis] *= -1
    out = sitk.GetImageFromArray(np.ascontiguousarray(array))
    out.SetSpacing(image.GetSpacing())
    out.SetOrigin(tuple(origin))
    out.SetDirection(tuple(direction.ravel()))
    return out
