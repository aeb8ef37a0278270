"""Training losses of the lesion net: cross-entropy + soft Dice, for hard or soft targets."""

from __future__ import annotations

from typing import Final

import torch
import torch.nn.functional as F

DICE_EPS: Final = 1.0
LOSSES: Final = ("ce_dice", "ce_dice_slice")


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Two-class cross-entropy against a lesion probability target (N, H, W) in [0, 1]."""
    logp = F.log_softmax(logits.float(), dim=1)
    return -(target * logp[:, 1] + (1 - target) * logp[:, 0]).mean()


def lesion_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "ce_dice") -> torch.Tensor:
    """Cross-entropy + (1 - soft Dice of the lesion class): over the whole batch (``ce_dice``) or
    the mean of per-slice soft Dice (``ce_dice_slice``, as slices are scored; a slice without
    lesion then asks for no lesion). ``target`` is class indices (long) or probabilities (float).
    """
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; one of {LOSSES}")
    if target.dtype.is_floating_point:
        ce, t = soft_cross_entropy(logits, target), target
    else:
        ce, t = F.cross_entropy(logits, target), target.float()
    p = torch.softmax(logits.float(), dim=1)[:, 1]
    if kind == "ce_dice_slice":
        inter, sums = (p * t).sum(dim=(1, 2)), p.sum(dim=(1, 2)) + t.sum(dim=(1, 2))
        return ce + (1 - ((2 * inter + DICE_EPS) / (sums + DICE_EPS)).mean())
    dice = (2 * (p * t).sum() + DICE_EPS) / (p.sum() + t.sum() + DICE_EPS)
    return ce + (1 - dice)
