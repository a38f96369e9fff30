"""The HADD site head: which tendon a deposit lies in, learned from a wide field around it.

The seed asks that HADD be reported with the tendon involved.  The detection model knows the body part
but not the tendon; a ``CropNet`` with one logit per tendon sees an 80 mm field at 0.625 mm around the
deposit (the humeral head, trochanter, patella or carpus beside it) and names the tendon when its
probability, over the tendons the body part can hold, reaches the card's threshold; below it the finding
keeps the generic site of the body part (e.g. "rotator cuff tendon").
"""

from __future__ import annotations

import numpy as np
import torch

from calcdx.inference.crop_head import CropHead

SITE_HEAD_DIR = "site_head"
FIELD_MM = 80.0
"""Side of the field the site head sees: the deposit and the bone landmarks that place it."""
CROP_SPACING_MM = 0.625


class SiteHead(CropHead):
    """Tendon probabilities for a deposit (about 3 ms per finding on a CPU)."""

    task = "site"

    def site_probabilities(self, image: np.ndarray, centroid_px: tuple[float, float],
                           spacing_mm: tuple[float, float], body_part: str | None) -> dict[str, float]:
        """Probability of each tendon that ``body_part`` (normalised) can hold; every tendon if unknown."""
        classes = self.card.classes
        allowed = self.card.classes_by_body_part.get(body_part or "") or classes
        index = [classes.index(c) for c in allowed if c in classes]
        logits = self.logits(self.crop(image, centroid_px, spacing_mm))[index]
        return dict(zip([classes[i] for i in index], torch.softmax(logits, 0).tolist(), strict=True))

    def site(self, probabilities: dict[str, float]) -> tuple[str | None, float | None]:
        """The most probable tendon and its probability, or (None, None) below the card's threshold."""
        if not probabilities:
            return None, None
        name = max(probabilities, key=probabilities.__getitem__)
        p = probabilities[name]
        return (name, p) if p >= self.card.threshold else (None, None)
