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
from calcdx.datasets.simulator.shapes import Window
from calcdx.findings import Morphology
from calcdx.taxonomy import LocationClass, Pattern

VISIBILITY_SCALE: dict[str, float] = {"subtle": 0.45, "moderate": 0.8, "obvious": 1.3}


@dataclass
class Lesion:
    kind: str  # a Pattern or HardNegative value
    material: Material
    thickness: np.ndarray  # mm of pure material per pixel, inside ``window``
    location_class: LocationClass
    site: str
    variant: str
    visibility: str
    morphology: tuple[Morphology, ...] = ()
    extra: dict[str, float | str] = field(default_factory=dict)
    window: Window = (slice(0, 0), slice(0, 0))
    """Where ``thickness`` lies on the phantom's grid: the bounding box of the deposit."""

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
    step = max(1, int(2 / s))  # candidates on a 2 mm lattice
    ok = (outer[::step, ::step] > 4.0) & (muscle[::step, ::step] < 1.0) if subcutaneous \
        else muscle[::step, ::step] > 20.0
    ok &= bone[::step, ::step] < 0.5
    margin = int(np.ceil(FRAME_MARGIN_MM / s))
    full_rows, full_cols = ph.grid.shape
    lattice_rows = np.arange(ok.shape[0]) * step
    lattice_cols = np.arange(ok.shape[1]) * step
    ok[(lattice_rows < margin) | (lattice_rows >= full_rows - margin)] = False
    ok[:, (lattice_cols < margin) | (lattice_cols >= full_cols - margin)] = False
    rows, cols = np.nonzero(ok)
    if rows.size == 0:
        return (ph.grid.shape[0] * s / 2, ph.grid.shape[1] * s / 2)
    k = int(rng.integers(rows.size))
    return (rows[k] * step * s + rng.uniform(0, step * s), cols[k] * step * s + rng.uniform(0, step * s))


def support(thickness: np.ndarray) -> Window:
    """The bounding box of the non-zero part of ``thickness`` (empty slices when there is none)."""
    rows = np.flatnonzero(thickness.any(axis=1))
    if rows.size == 0:
        return (slice(0, 0), slice(0, 0))
    cols = np.flatnonzero(thickness[rows[0]:rows[-1] + 1].any(axis=0))
    return (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))


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
    """The ``Lesion`` record, its map cut to the deposit's bounding box."""
    window = support(thickness)
    return Lesion(kind, material, np.array(thickness[window], dtype=np.float32), loc, site, variant, visibility,
                  morphology, dict(extra), window)
