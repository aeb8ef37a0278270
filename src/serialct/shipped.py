"""Files shipped in the repository (model weights), located from the package, not the cwd."""

from __future__ import annotations

from pathlib import Path
from typing import Final

MODELS_DIR: Final = Path(__file__).resolve().parents[2] / "resources" / "models"
DEFAULT_MODEL: Final = MODELS_DIR / "covid_lesion_net.pt"  # real slices, normal chests, phantoms
# Trained on phantoms only: synthetic cohorts (serialct synth) use it, as their lesions are
# phantom lesions; validated on phantoms, not on patients.
PHANTOM_MODEL: Final = MODELS_DIR / "covid_lesion_net_phantom.pt"
