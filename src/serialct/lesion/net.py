"""COVID-Lesion Net (Pan et al. 2020): a 2D U-Net/FCN on axial slices, and its input scaling.

The paper names the parts only: twelve convolutional segments (convolution + batch normalisation
+ activation), three max-pooling layers, three transpose convolutions, and concatenations that
bridge the contracting and expansive paths. This module fixes one layout with exactly those
counts. Segments per stage, in order (``SEGMENTS_PER_STAGE``)::

    encoder level 1 (full res.)  2  -> MaxPool
    encoder level 2 (1/2)        2  -> MaxPool
    encoder level 3 (1/4)        2  -> MaxPool
    bottleneck      (1/8)        2
    decoder level 3 (1/4)        1  <- ConvTranspose, concat with encoder level 3
    decoder level 2 (1/2)        1  <- ConvTranspose, concat with encoder level 2
    decoder level 1 (full res.)  2  <- ConvTranspose, concat with encoder level 1
                                ---
                                12 segments, then a 1x1 convolution classifier (no BN/activation)

Channels are ``base_channels`` x (1, 2, 4) in the encoder and x 8 in the bottleneck. Input height
and width must be multiples of ``SIZE_MULTIPLE`` (8); :func:`pad_to_multiple` pads slices.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import torch
from torch import nn

from serialct.constants import HU_AIR

CHECKPOINT_FORMAT: Final = "serialct-covid-lesion-net/1"  # meta["format"] of a checkpoint
NUM_CLASSES: Final = 2  # 0 background, 1 lesion
SEGMENTS_PER_STAGE: Final = (2, 2, 2, 2, 1, 1, 2)  # enc1, enc2, enc3, bottleneck, dec3, dec2, dec1
DEPTH: Final = 3  # max-pooling layers = transpose convolutions
SIZE_MULTIPLE: Final = 2**DEPTH
DEFAULT_BASE_CHANNELS: Final = 16

# Input scaling: clip HU to a lung window wide enough for consolidation, then map to [0, 1].
CLIP_HU_LOW: Final = float(HU_AIR)
CLIP_HU_HIGH: Final = 200.0
PREPROCESS: Final = {"clip_hu": [CLIP_HU_LOW, CLIP_HU_HIGH], "scale": "minmax"}


def preprocess(hu: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
    """HU array -> float32 network input: clip to ``params["clip_hu"]`` and scale to [0, 1].

    ``params`` is the checkpoint's ``meta["preprocess"]`` (default :data:`PREPROCESS`), so
    training and inference scale identically.
    """
    low, high = (params or PREPROCESS)["clip_hu"]
    out = np.clip(hu.astype(np.float32), low, high)
    return (out - low) / (high - low)


def pad_to_multiple(
    x: np.ndarray, multiple: int = SIZE_MULTIPLE, value: float = 0.0
) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad the last two axes at their end to a multiple; returns the array and the old (h, w)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        pad = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
        x = np.pad(x, pad, mode="constant", constant_values=value)
    return x, (h, w)


class ConvSegment(nn.Sequential):
    """One convolutional segment: 3x3 convolution, batch normalisation, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def _stage(in_channels: int, out_channels: int, n_segments: int) -> nn.Sequential:
    layers = [ConvSegment(in_channels, out_channels)]
    layers += [ConvSegment(out_channels, out_channels) for _ in range(n_segments - 1)]
    return nn.Sequential(*layers)


class CovidLesionNet(nn.Module):
    """U-Net/FCN with 12 segments, 3 max-pools, 3 transpose convolutions (see module docstring).

    Input (N, in_channels, H, W) with H, W multiples of 8; output logits (N, num_classes, H, W).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = NUM_CLASSES,
        base_channels: int = DEFAULT_BASE_CHANNELS,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.base_channels = base_channels
        enc_n, bott_n, dec_n = (
            SEGMENTS_PER_STAGE[:DEPTH],
            SEGMENTS_PER_STAGE[DEPTH],
            SEGMENTS_PER_STAGE[DEPTH + 1 :],
        )
        widths = [base_channels * 2**i for i in range(DEPTH + 1)]  # c, 2c, 4c, 8c

        self.encoders = nn.ModuleList()
        self.pools = nn.ModuleList()
        prev = in_channels
        for level in range(DEPTH):
            self.encoders.append(_stage(prev, widths[level], enc_n[level]))
            self.pools.append(nn.MaxPool2d(kernel_size=2))
            prev = widths[level]
        self.bottleneck = _stage(prev, widths[DEPTH], bott_n)

        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        prev = widths[DEPTH]
        for i, level in enumerate(reversed(range(DEPTH))):  # 2, 1, 0
            self.ups.append(nn.ConvTranspose2d(prev, widths[level], kernel_size=2, stride=2))
            self.decoders.append(_stage(2 * widths[level], widths[level], dec_n[i]))
            prev = widths[level]
        self.classifier = nn.Conv2d(prev, num_classes, kernel_size=1)

    def architecture(self) -> dict[str, Any]:
        """Constructor arguments and layout, stored in the checkpoint's meta."""
        return {
            "name": type(self).__name__,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "base_channels": self.base_channels,
            "segments_per_stage": list(SEGMENTS_PER_STAGE),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for encoder, pool in zip(self.encoders, self.pools, strict=True):
            x = encoder(x)
            skips.append(x)
            x = pool(x)
        x = self.bottleneck(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips), strict=True):
            x = decoder(torch.cat([up(x), skip], dim=1))
        return self.classifier(x)


def build_model(architecture: dict[str, Any]) -> CovidLesionNet:
    """A fresh network from a checkpoint's ``meta["architecture"]``."""
    return CovidLesionNet(
        in_channels=int(architecture["in_channels"]),
        num_classes=int(architecture["num_classes"]),
        base_channels=int(architecture["base_channels"]),
    )
