"""Named constants shared by every stage: Hounsfield units, label values, lobe names.

Analysis thresholds that a user may change (GGO/consolidation HU ranges, CT-score bins,
time-point windows, histogram bins) are *not* here: they live in the config schema
(``serialct/schemas/config.schema.yaml``) with their defaults, and reach the code through
``serialct.config``.
"""

from __future__ import annotations

from typing import Final

# Hounsfield units of reference materials.
HU_AIR: Final = -1000
HU_WATER: Final = 0
HU_FAT: Final = -100
HU_SOFT_TISSUE: Final = 40
HU_BONE: Final = 700
HU_MIN_STORED: Final = -1024  # lowest value kept after conversion (padding is clipped to it)

# lung.nii.gz
LUNG_BACKGROUND: Final = 0
LUNG_RIGHT: Final = 1
LUNG_LEFT: Final = 2

# lobes.nii.gz, in the order of the contract's lesion_percent_* columns
LOBES: Final = ("rul", "rml", "rll", "lul", "lll")
LOBE_LABELS: Final = {name: i + 1 for i, name in enumerate(LOBES)}  # rul=1 ... lll=5
LOBE_SIDE: Final = {
    "rul": LUNG_RIGHT,
    "rml": LUNG_RIGHT,
    "rll": LUNG_RIGHT,
    "lul": LUNG_LEFT,
    "lll": LUNG_LEFT,
}

# lesion.nii.gz
LESION_BACKGROUND: Final = 0
LESION_GGO: Final = 1
LESION_CONSOLIDATION: Final = 2
LESION_OTHER: Final = 3

SEVERITIES: Final = ("moderate", "severe")
TIMEPOINTS: Final = ("admission", "week1", "week2")

MM3_PER_CM3: Final = 1000.0
