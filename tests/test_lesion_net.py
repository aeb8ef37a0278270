"""COVID-Lesion Net layout (the paper's counts) and forward shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from serialct.lesion.net import (
    PREPROCESS,
    CovidLesionNet,
    build_model,
    pad_to_multiple,
    preprocess,
)


def _segments(model: nn.Module) -> int:
    """Count Conv2d directly followed by BatchNorm2d and an activation, in module order."""
    mods = [m for m in model.modules() if not list(m.children())]
    return sum(
        isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and isinstance(c, nn.ReLU)
        for a, b, c in zip(mods, mods[1:], mods[2:], strict=False)
    )


def test_paper_layer_counts() -> None:
    model = CovidLesionNet()
    kinds = [type(m) for m in model.modules()]
    assert _segments(model) == 12
    assert kinds.count(nn.MaxPool2d) == 3
    assert kinds.count(nn.ConvTranspose2d) == 3
    assert kinds.count(nn.BatchNorm2d) == 12
    assert kinds.count(nn.Conv2d) == 13  # 12 segments + the 1x1 classifier
    assert model.classifier.kernel_size == (1, 1)
    assert model.classifier.out_channels == 2
    n_params = sum(p.numel() for p in model.parameters())
    assert 200_000 < n_params < 1_000_000


@pytest.mark.parametrize("shape", [(2, 1, 128, 128), (1, 1, 96, 160)])
def test_forward_shape(shape: tuple[int, int, int, int]) -> None:
    model = CovidLesionNet(base_channels=4).eval()
    with torch.inference_mode():
        y = model(torch.zeros(shape))
    assert y.shape == (shape[0], 2, shape[2], shape[3])


def test_concatenation_skips_change_output() -> None:
    """A one-pixel change reaches the output there, but not beyond the receptive field."""
    torch.manual_seed(0)
    model = CovidLesionNet(base_channels=4).eval()
    x = torch.zeros(1, 1, 64, 64)
    x2 = x.clone()
    x2[0, 0, 5, 5] = 1.0
    with torch.inference_mode():
        diff = (model(x2) - model(x)).abs()[0, 0]
    assert diff[5, 5] > 0
    assert diff[60, 60] == 0  # beyond the receptive field


def test_build_model_from_architecture() -> None:
    model = CovidLesionNet(base_channels=8)
    arch = model.architecture()
    assert arch["segments_per_stage"] == [2, 2, 2, 2, 1, 1, 2]
    clone = build_model(arch)
    clone.load_state_dict(model.state_dict())
    assert clone.base_channels == 8


def test_preprocess_clips_and_scales() -> None:
    low, high = PREPROCESS["clip_hu"]
    hu = np.array([low - 500, low, (low + high) / 2, high, high + 900])
    assert preprocess(hu).tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])
    assert preprocess(hu).dtype == np.float32


def test_pad_to_multiple() -> None:
    x, (h, w) = pad_to_multiple(np.ones((3, 50, 64)))
    assert x.shape == (3, 56, 64) and (h, w) == (50, 64)
    assert x[:, 50:].sum() == 0 and x[:, :50].sum() == 3 * 50 * 64
