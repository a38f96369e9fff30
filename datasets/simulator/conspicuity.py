"""How well a labelled lesion stands out from what lies behind it, measured against its twin.

A case rendered again with ``drop_patterns=True`` (same anatomy, look-alikes and noise draws) is its
twin; the difference of the two display images is each pattern lesion's own signal.  Conspicuity is
the 90th percentile of that signal's magnitude inside the lesion's mask over the standard deviation of
the twin's fine detail (the image minus a Gaussian of sigma ``DETAIL_SIGMA_PX``: quantum noise and
trabecular texture) in a ``MARGIN_PX`` margin around it.  Below about 2 a lesion is not seen by the
model either (docs/model.md); the visibility classes should mean about the same conspicuity for every
variant of a pattern (a test).
"""

from __future__ import annotations

import cv2
import numpy as np

from calcdx.datasets.simulator.dataset import SimulationConfig, render_case
from calcdx.datasets.simulator.lesion import Lesion

MARGIN_PX = 30
DETAIL_SIGMA_PX = 2.0


def conspicuity(signal: np.ndarray, background: np.ndarray, mask: np.ndarray) -> float:
    """Peak ``signal`` in ``mask`` over the fine-detail fluctuation of ``background`` around it."""
    rows, cols = np.nonzero(mask)
    r0, c0 = max(int(rows.min()) - MARGIN_PX, 0), max(int(cols.min()) - MARGIN_PX, 0)
    r1, c1 = int(rows.max()) + MARGIN_PX + 1, int(cols.max()) + MARGIN_PX + 1
    local = np.ascontiguousarray(background[r0:r1, c0:c1], dtype=np.float32)
    detail = local - cv2.GaussianBlur(local, (0, 0), DETAIL_SIGMA_PX)
    fluctuation = float(detail[~mask[r0:r1, c0:c1]].std())
    peak = float(np.percentile(np.abs(signal[mask]), 90))
    return peak / max(fluctuation, 1e-12)


def pattern_conspicuity(seed: int, index: int, config: SimulationConfig) -> list[tuple[Lesion, float]]:
    """Each labelled pattern lesion of image ``index`` with its conspicuity (renders the case twice)."""
    case = render_case(seed, index, config)
    if not case.labels:
        return []
    twin = render_case(seed, index, config, drop_patterns=True)
    signal = case.image.astype(np.float32) - twin.image.astype(np.float32)
    return [(lesion, conspicuity(signal, twin.image, mask))
            for lesion, mask in zip(case.lesions, case.masks, strict=True) if lesion.is_pattern]
