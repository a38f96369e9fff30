"""Losses: multi-label BCE on image logits (class-weighted) + optional mask BCE on the maps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from calcdx.models.output import ModelOutput


def balanced_pos_weight(labels: np.ndarray, cap: float = 10.0) -> np.ndarray:
    """Per-class positive weight = negatives / positives, clipped to [1, cap]."""
    labels = np.asarray(labels, dtype=np.float64)
    pos = labels.sum(axis=0)
    neg = labels.shape[0] - pos
    w = np.where(pos > 0, neg / np.maximum(pos, 1.0), 1.0)
    return np.clip(w, 1.0, cap).astype(np.float32)


@dataclass(frozen=True)
class LossParts:
    """Total loss and its parts (floats for logging; ``total`` keeps the graph)."""

    total: Tensor
    bce: float
    mask: float


def mask_targets(masks: Tensor, map_shape: tuple[int, int]) -> Tensor:
    """Downsample uint8 masks ``[B, C, H, W]`` to map cells: a cell is positive if any pixel is."""
    return F.adaptive_max_pool2d(masks.float(), map_shape)


class CalcLoss(torch.nn.Module):
    """``BCE(logits, labels; pos_weight) + mask_weight * BCE(maps, mask targets)``.

    Args:
        pos_weight: per-class positive weights ``[C]`` (None = 1).
        mask_weight: weight of the mask term; only images with masks contribute.
        mask_pos_weight: weight of positive cells in the mask term.
    """

    def __init__(self, pos_weight: Tensor | None = None, mask_weight: float = 1.0,
                 mask_pos_weight: float = 5.0) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight if pos_weight is not None else torch.empty(0))
        self.mask_weight = float(mask_weight)
        self.mask_pos_weight = float(mask_pos_weight)

    def forward(self, out: ModelOutput, labels: Tensor, label_weight: Tensor | None = None,
                masks: Tensor | None = None, has_mask: Tensor | None = None) -> LossParts:
        pw = self.pos_weight if self.pos_weight.numel() else None
        weight = label_weight if label_weight is not None else torch.ones_like(labels)
        per = F.binary_cross_entropy_with_logits(out.logits.float(), labels, pos_weight=pw, reduction="none")
        bce = (per * weight).sum() / weight.sum().clamp_min(1.0)
        total = bce
        mask_value = 0.0
        if self.mask_weight > 0 and masks is not None and has_mask is not None and bool(has_mask.any()):
            sel = has_mask.bool()
            maps = out.maps[sel].float()
            target = mask_targets(masks[sel], (maps.shape[-2], maps.shape[-1]))
            cell_w = torch.tensor(self.mask_pos_weight, device=maps.device)
            m = F.binary_cross_entropy_with_logits(maps, target, pos_weight=cell_w, reduction="mean")
            total = total + self.mask_weight * m
            mask_value = float(m.detach())
        return LossParts(total=total, bce=float(bce.detach()), mask=mask_value)
