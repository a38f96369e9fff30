"""The HADD extent head: the deposit's outline, learned, for a size that holds at follow-up.

The seed asks that HADD be reported with its size "for comparison with follow-up".  The classical
measurement (``findings.measure``) thresholds the source image inside the box of the probability map's
region; that box comes in 3.2 mm cells and moves with the acquisition, so the same deposit measured
0.96-1.38 x its prior size between two visits (interquartile range, docs/inference.md).  This head is a
small encoder-decoder (``ExtentNet``) that sees a 32 mm field at 0.4 mm around the finding and gives,
per pixel, the probability that it belongs to the deposit; the axes and area are measured on the piece
at the field's centre together with the pieces within ``JOIN_GAP_MM`` of it (a fluffy, resorptive deposit
falls apart at the threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from calcdx.inference.crop_head import CropHead, field_to_image
from calcdx.pieces import central_cluster, outline, principal_axes

EXTENT_HEAD_DIR = "extent_head"
FIELD_MM = 32.0
"""Side of the field: the longest simulated deposit (about 20 mm with its tail) and the centroid's error."""
CROP_SPACING_MM = 0.4


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ExtentNet(nn.Module):
    """A three-level U-Net: [N, 1, S, S] field -> [N, S, S] logits of "deposit" (S divisible by 8)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        w = (width, 2 * width, 4 * width, 4 * width)
        self.down = nn.ModuleList([_block(1, w[0]), _block(w[0], w[1]), _block(w[1], w[2])])
        self.bottom = _block(w[2], w[3])
        self.up = nn.ModuleList([_block(w[3] + w[2], w[2]), _block(w[2] + w[1], w[1]), _block(w[1] + w[0], w[0])])
        self.logit = nn.Conv2d(w[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], 1))
        return self.logit(x)[:, 0]


@dataclass(frozen=True)
class Extent:
    """A deposit's size measured on the head's outline, and where that outline and its long axis lie
    ((row, col) pixel coordinates of the field, or of the image after ``ExtentHead.extent``)."""

    long_mm: float
    short_mm: float
    area_mm2: float
    outline_px: np.ndarray
    long_axis_px: tuple[tuple[float, float], tuple[float, float]]


JOIN_GAP_MM = 3.0
"""Pieces above the threshold separated from the central one by at most this gap are measured with it."""


def extent_of(probabilities: np.ndarray, threshold: float, spacing_mm: float = CROP_SPACING_MM,
              join_gap_mm: float | None = None) -> Extent | None:
    """The size of the deposit at the centre of a field's probability map (its central piece and the
    pieces within ``join_gap_mm`` of it, default ``JOIN_GAP_MM``); None when no pixel reaches ``threshold``."""
    gap_mm = JOIN_GAP_MM if join_gap_mm is None else join_gap_mm
    piece = central_cluster(probabilities >= threshold, gap_mm / spacing_mm)
    if not piece.any():
        return None
    axes = principal_axes(piece, (spacing_mm, spacing_mm))
    return Extent(axes.long_mm, axes.short_mm, float(piece.sum()) * spacing_mm * spacing_mm, outline(piece),
                  axes.long_ends_px)


class ExtentHead(CropHead):
    """The outline of a HADD deposit around a finding's centroid (a few milliseconds per finding on a CPU)."""

    task = "extent"

    def build_net(self) -> nn.Module:
        return ExtentNet(self.card.width)

    def probabilities(self, image: np.ndarray, centroid_px: tuple[float, float],
                      spacing_mm: tuple[float, float]) -> np.ndarray:
        """[S, S] probability that each pixel of the field belongs to the deposit."""
        return torch.sigmoid(self.logits(self.crop(image, centroid_px, spacing_mm))).numpy()

    def extent(self, image: np.ndarray, centroid_px: tuple[float, float],
               spacing_mm: tuple[float, float]) -> Extent | None:
        """The size of the deposit at ``centroid_px``, with its outline and long axis on ``image``."""
        found = extent_of(self.probabilities(image, centroid_px, spacing_mm), self.card.threshold,
                          self.card.crop_spacing_mm)
        if found is None:
            return None

        def on_image(points: np.ndarray | Sequence[tuple[float, float]]) -> np.ndarray:
            return field_to_image(points, centroid_px, spacing_mm, self.card.field_mm, self.card.crop_size)

        (a, b) = on_image(found.long_axis_px)
        return replace(found, outline_px=on_image(found.outline_px),
                       long_axis_px=((float(a[0]), float(a[1])), (float(b[0]), float(b[1]))))
