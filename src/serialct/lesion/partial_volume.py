"""Partial-volume layers: lesion components that are the lung's cranio-caudal surface.

A CT voxel of a thick slice that lies where the lung meets the diaphragm dome, the heart or a
mass above or below it holds lung and soft tissue together, and its mean HU falls in the
ground-glass range although no part of it is diseased. The lesion net, which sees one slice at a
time, marks such voxels as ground glass. On the real Siemens 8 mm chest in ``../shared/data/real``
(Lung_Dx-A0002, both kernels) the two largest false lesions were such layers: 13-14 cm³ over the
left dome and 9 cm³ at the edge of a right hilar tumour (a mass outside the lung mask above and
below it), with 97 % and 78 % of their voxels on the surface (``resources/models/README.md``).

The rule: a voxel is on the surface when the voxel directly above or below it (in the scan's slice
direction, inside the scan) is outside the lung mask; a lesion component (26-connected) more than
three quarters of whose voxels are on the surface (:data:`SURFACE_SHARE`) is dropped. A real lesion
that reaches the diaphragm extends over several slices inside the lung, so most of its voxels
have lung above and below them, and it is kept whole.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from scipy import ndimage

# Share of a component's voxels on the cranio-caudal lung surface above which it is a partial-volume
# layer. Chosen on the real normal chests and the phantoms of resources/models/README.md (0.5 also
# removed predicted lesions of two thick-slice phantoms, 0.9 kept the 9 cm3 rim of a hilar tumour);
# at 0.75 no true phantom lesion component is dropped.
SURFACE_SHARE: Final = 0.75


def on_surface(lung: np.ndarray) -> np.ndarray:
    """Voxels of ``lung`` (z, y, x) whose neighbour above or below inside the scan is not lung."""
    lung = lung.astype(bool)
    below_out = np.zeros_like(lung)
    above_out = np.zeros_like(lung)
    below_out[1:] = ~lung[:-1]
    above_out[:-1] = ~lung[1:]
    return lung & (below_out | above_out)


def drop_surface_layers(lesion: np.ndarray, lung: np.ndarray) -> np.ndarray:
    """``lesion`` (z, y, x bool) without its components that are more than SURFACE_SHARE lung
    surface."""
    if not lesion.any():
        return lesion
    labels, n = ndimage.label(lesion, structure=np.ones((3, 3, 3), dtype=bool))
    size = np.bincount(labels.ravel(), minlength=n + 1)
    surface = np.bincount(labels[on_surface(lung) & lesion], minlength=n + 1)
    layer = surface > SURFACE_SHARE * size
    layer[0] = False
    return lesion & ~layer[labels]
