"""The HADD margin head: well or ill defined, learned from a field of the source image around the deposit.

The seed asks that HADD be reported with its margins for comparison at follow-up (formative and resting
deposits dense, homogeneous and well defined; resorptive ones fluffy and ill defined).  Hand-made edge
measures told the two apart no better than chance on the simulator's deposits (docs/inference.md), so a
HADD finding's margin comes from a ``CropNet`` with one logit that sees a 24 mm field at 0.25 mm.
"""

from __future__ import annotations

import numpy as np

from calcdx.findings import Margin
from calcdx.inference.crop_head import CropHead

MARGIN_HEAD_DIR = "margin_head"
FIELD_MM = 24.0
"""Side of the field the margin head sees (a HADD deposit is 2-20 mm with its tail)."""
CROP_SPACING_MM = 0.25
"""Fine enough for a 0.8 mm edge blur, coarse enough to be quick."""


def calibrated(logits: np.ndarray | float, calibration: dict[str, float]) -> np.ndarray:
    """Probability of "ill defined" from raw logits with a card's Platt scaling (identity where it has none)."""
    z = calibration.get("scale", 1.0) * np.asarray(logits, np.float64) + calibration.get("offset", 0.0)
    return 1.0 / (1.0 + np.exp(-z))


class MarginHead(CropHead):
    """The probability that a deposit's margin is ill defined (about 2.5 ms per finding on a CPU)."""

    task = "margin"

    def probability_ill_defined(self, image: np.ndarray, centroid_px: tuple[float, float],
                                spacing_mm: tuple[float, float]) -> float:
        """Calibrated (the card's Platt scaling, where it has one) probability of an ill-defined margin."""
        return float(calibrated(float(self.logits(self.crop(image, centroid_px, spacing_mm))), self.card.calibration))

    def margin(self, probability_ill_defined: float) -> Margin:
        return Margin.ILL_DEFINED if probability_ill_defined >= self.card.threshold else Margin.WELL_DEFINED
