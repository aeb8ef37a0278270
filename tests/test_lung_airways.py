"""serialct.lung.airways on hand-made volumes: trachea seed, soft-kernel lumen, carina."""

from __future__ import annotations

import numpy as np

from serialct.lung.airways import find_airways

SPACING = (2.0, 1.0, 1.0)  # z, y, x mm
SHAPE = (60, 80, 80)
AIRWAY_HU = -950.0


def _chest(lumen_hu: float = -1000.0) -> tuple[np.ndarray, np.ndarray]:
    """Soft tissue with a trachea (8 mm radius) from the top down to z 30 (the carina), two
    main bronchi (4 mm radius) from there down and outwards; HU and body mask."""
    hu = np.full(SHAPE, 40.0)
    z, y, x = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1], 0 : SHAPE[2]]
    trachea = (z >= 30) & ((y - 40) ** 2 + (x - 40) ** 2 <= 8**2)
    drift = (30 - z) * 0.8  # the bronchi part sideways below the carina
    left = (z < 30) & ((y - 40) ** 2 + (x - 40 - 6 - drift) ** 2 <= 4**2)
    right = (z < 30) & ((y - 40) ** 2 + (x - 40 + 6 + drift) ** 2 <= 4**2)
    hu[trachea | left | right] = lumen_hu
    body = np.ones(SHAPE, dtype=bool)
    body[:, :2] = body[:, -2:] = False
    return hu, body


def _find(hu: np.ndarray, body: np.ndarray) -> np.ndarray:
    return find_airways(hu, body & (hu < -300), body, SPACING, AIRWAY_HU)


def test_trachea_and_main_bronchi_found() -> None:
    hu, body = _chest()
    airway = _find(hu, body)
    assert airway[59, 40, 40] and airway[35, 40, 40]
    rows = np.flatnonzero(airway.any(axis=(1, 2)))
    assert rows.min() <= 30 - 40 / SPACING[0] + 1  # down the bronchi, 40 mm past the carina


def test_soft_kernel_lumen_is_found_when_it_is_a_tube() -> None:
    hu, body = _chest(lumen_hu=-920.0)  # above airway_hu: a blurred lumen
    assert _find(hu, body)[55, 40, 40]


def test_a_pocket_of_air_that_is_no_tube_is_no_trachea() -> None:
    """A round, central pocket at -920 HU in the top slices, 6 mm tall (aerated lung at a lung
    base, in a scan of the bases): not the trachea."""
    hu = np.full(SHAPE, 40.0)
    z, y, x = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1], 0 : SHAPE[2]]
    hu[(z >= 57) & ((y - 40) ** 2 + (x - 40) ** 2 <= 8**2)] = -920.0
    body = np.ones(SHAPE, dtype=bool)
    body[:, :2] = body[:, -2:] = False
    assert not _find(hu, body).any()


def test_an_air_bubble_beside_the_trachea_is_no_carina() -> None:
    """Air in the oesophagus touching the trachea's reach for a few slices above the carina
    (a few mm2) does not stop the growth there: the main bronchi are still followed."""
    hu, body = _chest()
    hu[44:47, 51:53, 40:42] = -1000.0  # 4 mm2 of air just behind the trachea's wall
    airway = _find(hu, body)
    rows = np.flatnonzero(airway.any(axis=(1, 2)))
    assert rows.min() <= 30 - 40 / SPACING[0] + 1
