"""What every lesion renderer shares: the ``Lesion`` record and where to put one.

The renderers live in ``patterns`` (the six patterns) and ``look_alikes`` (the hard
negatives).  Each adds path lengths (mm) of its material to a private map on the phantom's
grid and returns a ``Lesion`` with its ground truth.  Mineral deposits are partial-volume
mixtures: ``fraction`` is the share of the chord that is pure mineral.  ``visibility``
scales that fraction (subtle / moderate / obvious) and is logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calcdx.datasets.simulator.anatomy import Phantom
from calcdx.datasets.simulator.materials import Material
from calcdx.findings import Morphology
from calcdx.taxonomy import LocationClass, Pattern

VISIBILITY_SCALE: dict[str, float] = {"subtle": 0.45, "moderate": 0.8, "obvious": 1.3}


@dataclass
class Lesion:
    kind: str  # a Pattern or HardNegative value
    material: Material
    thickness: np.ndarray  # mm of pure material per pixel
    location_class: LocationClass
    site: str
    variant: str
    visibility: str
    morphology: tuple[Morphology, ...] = ()
    extra: dict[str, float | str] = field(default_factory=dict)

    @property
    def is_pattern(self) -> bool:
        return self.kind in {p.value for p in Pattern}


def pick(rng: np.random.Generator, items: list) -> object:
    return items[int(rng.integers(len(items)))]


FRAME_MARGIN_MM = 8.0
"""Soft-tissue lesion centres stay this far inside the frame: more than the largest phlebolith
cluster's radius, so the pose and the collimator rarely cut one (``dataset.field_mask`` decides)."""


def soft_point(
    ph: Phantom, rng: np.random.Generator, *, subcutaneous: bool = False, away_from_bone: float = 6.0
) -> tuple[float, float]:
    """A random point in muscle (or subcutaneous fat) not overlapping bone, at least
    ``FRAME_MARGIN_MM`` inside the frame (a deposit on the edge would be cut off)."""
    muscle = ph.landmarks["muscle"]
    outer = ph.landmarks["soft_outer"]
    bone = ph.bone_outer
    s = ph.grid.spacing_mm
    ok = (outer > 4.0) & (muscle < 1.0) if subcutaneous else muscle > 20.0
    ok &= bone < 0.5
    margin = int(np.ceil(FRAME_MARGIN_MM / s))
    ok[:margin] = ok[-margin:] = False
    ok[:, :margin] = ok[:, -margin:] = False
    rows, cols = np.nonzero(ok[:: max(1, int(2 / s)), :: max(1, int(2 / s))])
    if rows.size == 0:
        return (ph.grid.shape[0] * s / 2, ph.grid.shape[1] * s / 2)
    k = int(rng.integers(rows.size))
    step = max(1, int(2 / s)) * s
    return (rows[k] * step + rng.uniform(0, step), cols[k] * step + rng.uniform(0, step))


def make_lesion(
    ph: Phantom,
    kind: str,
    material: Material,
    thickness: np.ndarray,
    loc: LocationClass,
    site: str,
    variant: str,
    visibility: str,
    morphology: tuple[Morphology, ...],
    **extra: float | str,
) -> Lesion:
    return Lesion(kind, material, thickness.astype(np.float32), loc, site, variant, visibility, morphology, dict(extra))
