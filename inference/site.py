"""The HADD site head: which tendon a deposit lies in, learned from a wide field around it.

The seed asks that HADD be reported with the tendon involved.  The detection model knows the body part
but not the tendon; a ``CropNet`` with one logit per tendon sees an 80 mm field at 0.625 mm around the
deposit (the humeral head, trochanter, patella or carpus beside it) and names the tendon when its
probability, over the tendons the body part can hold, reaches the card's threshold; below it the finding
keeps the generic site of the body part (e.g. "rotator cuff tendon").
"""

from __future__ import annotations

import numpy as np

from calcdx.inference.crop_head import CropHead

SITE_HEAD_DIR = "site_head"
CPPD_SITE_HEAD_DIR = "cppd_site_head"
FIELD_MM = 80.0
"""Side of the field the site head sees: the deposit and the bone landmarks that place it."""
CROP_SPACING_MM = 0.625


def allowed_mask(classes: list[str], by_body_part: dict[str, list[str]], body_parts: tuple[str, ...]) -> np.ndarray:
    """[N, K] True where class k is possible for crop n's body part (every class for an unknown one)."""
    mask = np.ones((len(body_parts), len(classes)), bool)
    for n, body in enumerate(body_parts):
        allowed = by_body_part.get(body)
        if allowed:
            mask[n] = [c in allowed for c in classes]
    return mask


def masked_softmax(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``logits`` [N, K] over the ``mask``ed classes (zero elsewhere)."""
    z = np.where(mask, np.asarray(logits, np.float64), -np.inf)
    z -= z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)


class SiteHead(CropHead):
    """Tendon probabilities for a deposit (about 3 ms per finding on a CPU)."""

    task = "site"

    def site_probabilities(self, image: np.ndarray, centroid_px: tuple[float, float],
                           spacing_mm: tuple[float, float], body_part: str | None) -> dict[str, float]:
        """Probability of each tendon that ``body_part`` (normalised) can hold; every tendon if unknown."""
        classes = self.card.classes
        mask = allowed_mask(classes, self.card.classes_by_body_part, (body_part or "",))
        logits = self.logits(self.crop(image, centroid_px, spacing_mm)).numpy()[None]
        p = masked_softmax(logits, mask)[0]
        return {c: float(p[k]) for k, c in enumerate(classes) if mask[0, k]}

    def site(self, probabilities: dict[str, float]) -> tuple[str | None, float | None]:
        """The most probable tendon and its probability, or (None, None) below the card's threshold."""
        if not probabilities:
            return None, None
        name = max(probabilities, key=probabilities.__getitem__)
        p = probabilities[name]
        return (name, p) if p >= self.card.threshold else (None, None)


class CppdSiteHead(SiteHead):
    """Where a CPPD deposit lies: hyaline cartilage, a fibrocartilage (meniscus, TFCC, labrum, symphysis)
    or a tendon.  The seed places chondrocalcinosis in hyaline cartilage parallel to the subchondral bone
    and in fibrocartilage, and CPPD in tendons as linear and delicate; the detection model cannot tell them
    apart, so without this head every CPPD finding is filed intra-articular and "CPPD in a tendon" never
    ranks first.  Same network and field as the tendon head."""

    task = "cppd_site"
