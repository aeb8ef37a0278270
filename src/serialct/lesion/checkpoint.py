"""Checkpoint files for training: writing one (weights, meta, and the meta as JSON beside it), and
starting a model from one's weights.

A checkpoint is ``{"state_dict", "meta"}`` saved with :func:`torch.save` in plain types only, so
that :func:`serialct.lesion.infer.load_model` reads it with ``torch.load(weights_only=True)``; the
same meta goes to ``<stem>.json`` for people and tools that do not load torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from serialct.errors import InputError
from serialct.lesion.infer import load_model
from serialct.lesion.net import CovidLesionNet


def save_checkpoint(path: Path, model: CovidLesionNet, meta: dict[str, Any]) -> None:
    """Write ``{"state_dict", "meta"}`` to ``path`` and the meta as JSON (same stem, .json)."""
    meta = json.loads(json.dumps(meta))  # plain types only: torch.load(weights_only=True) reads it
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "meta": meta}, path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")


def load_weights(model: CovidLesionNet, path: Path, device: torch.device) -> dict[str, Any]:
    """Copy a checkpoint's weights into ``model`` (InputError unless the architecture is the
    same); returns the checkpoint's meta."""
    init_model, meta = load_model(Path(path), device)
    if init_model.architecture() != model.architecture():
        raise InputError(
            f"{path}: architecture {init_model.architecture()} differs from the one "
            f"trained here {model.architecture()}"
        )
    model.load_state_dict(init_model.state_dict())
    return meta
