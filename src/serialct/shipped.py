"""Files shipped in the repository (model weights, reference histogram), located from the
package, not the cwd."""

from __future__ import annotations

from pathlib import Path
from typing import Final

REPOSITORY: Final = Path(__file__).resolve().parents[2]
MODELS_DIR: Final = REPOSITORY / "resources" / "models"
DEFAULT_MODEL: Final = MODELS_DIR / "covid_lesion_net.pt"  # real slices, normal chests, phantoms
# Trained on phantoms only: synthetic cohorts (serialct synth) use it, as their lesions are
# phantom lesions; validated on phantoms, not on patients.
PHANTOM_MODEL: Final = MODELS_DIR / "covid_lesion_net_phantom.pt"
SHIPPED_REFERENCE: Final = REPOSITORY / "resources" / "reference" / "normal_lung_histogram.tsv"


def locate(path: str | Path) -> Path:
    """A config path as given, except that a relative one not found from the cwd but found in the
    repository (the schema's defaults, ``resources/...``) is the repository's file: the shipped
    defaults work from any directory."""
    path = Path(path)
    if not path.is_absolute() and not path.exists() and (REPOSITORY / path).exists():
        return REPOSITORY / path
    return path
