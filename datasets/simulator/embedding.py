"""Deposits stay inside the body.

Lesions are placed at landmarks and scattered around them; near the skin, or where a landmark
falls outside a thin limb, part of a deposit used to lie in the air beside the body (about a
quarter of injection-granuloma and a fifth of tumoral-calcinosis pixels).  Two rules keep them in:

* ``pull_inside``: a placement point moves to the nearest point where the body is at least a given
  depth thick (no random draw, so later lesions keep theirs);
* ``embed_in_body``: where a deposit still reaches past the skin, the soft tissue swells around it
  (a mass lifts the skin: soft tissue 3 mm beyond the deposit, thick enough to hold it with
  1.5 mm to spare on each side, with a sharp outline), except for vessels, which fade out at the
  skin line instead, and for the things that do lie outside the body (lead markers, skin folds,
  rings).
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from calcdx.datasets.simulator.anatomy import Phantom
from calcdx.datasets.simulator.lesion import Lesion
from calcdx.datasets.simulator.materials import Material
from calcdx.datasets.simulator.shapes import blur
from calcdx.taxonomy import HardNegative

OUTSIDE_KINDS = frozenset({HardNegative.LEAD_MARKER.value, HardNegative.SKIN_FOLD.value,
                           HardNegative.JEWELLERY.value})
"""Drawn where they are: on or beside the skin."""
VESSEL_KINDS = frozenset({HardNegative.ARTERIAL_INTIMAL.value, HardNegative.ARTERIAL_MEDIAL.value})
"""Fade out at the skin line: an artery does not leave the limb."""
SKIN_MM = 1.5
"""Soft tissue kept on each side of a deposit along the beam."""
SWELLING_MM = 3.0
"""How far the soft-tissue swelling around a deposit past the skin reaches beyond the deposit."""
SKIN_EDGE_SIGMA_MM = 0.8
"""Blur of the swelling's outline: a skin line is sharp."""
DILATION_PITCH_MM = 0.3
"""The swelling's reach is dilated on a grid this coarse (``coarse_dilation``)."""
VESSEL_FADE_MM = 4.0
"""An artery fades out linearly where the body is thinner than this."""
LATTICE_MM = 2.0
"""``pull_inside`` looks for a new point on a lattice this coarse (cheap at native spacing)."""


def body_thickness(ph: Phantom) -> np.ndarray | None:
    """Path length through the body's soft tissue per pixel (mm); None if the phantom has none."""
    outer = ph.landmarks.get("soft_outer")
    return outer if isinstance(outer, np.ndarray) else None


def pull_inside(ph: Phantom, point: tuple[float, float], depth_mm: float) -> tuple[float, float]:
    """``point`` (mm), or the nearest point on a 2 mm lattice where the body is ``depth_mm`` thick."""
    outer = body_thickness(ph)
    if outer is None:
        return point
    s = ph.grid.spacing_mm
    r = int(np.clip(round(point[0] / s), 0, outer.shape[0] - 1))
    c = int(np.clip(round(point[1] / s), 0, outer.shape[1] - 1))
    if outer[r, c] >= depth_mm:
        return point
    step = max(1, int(LATTICE_MM / s))
    rows, cols = np.nonzero(outer[::step, ::step] >= depth_mm)
    if rows.size == 0:
        return point
    k = int(np.argmin((rows * step - r) ** 2 + (cols * step - c) ** 2))
    return float(rows[k] * step * s), float(cols[k] * step * s)


def embed_in_body(ph: Phantom, lesion: Lesion) -> Lesion:
    """The lesion, with the body's soft tissue swollen around any part past the skin (added to
    ``ph`` as muscle-like soft tissue), or, for a vessel, faded out there."""
    outer = body_thickness(ph)
    if outer is None or lesion.kind in OUTSIDE_KINDS or not lesion.thickness.size:
        return lesion
    t = lesion.thickness
    local = outer[lesion.window]
    if lesion.kind in VESSEL_KINDS:
        fade = np.clip(local / VESSEL_FADE_MM, 0.0, 1.0)
        return lesion if fade.min() >= 1.0 else replace(lesion, thickness=(t * fade).astype(np.float32))
    footprint = t > 0.05 * float(t.max())
    deficit = np.where(footprint, t + 2.0 * SKIN_MM - local, 0.0).astype(np.float32)
    if deficit.max() <= 0.0:
        return lesion
    np.maximum(deficit, 0.0, out=deficit)
    sigma_px = SKIN_EDGE_SIGMA_MM / ph.grid.spacing_mm
    radius = max(1, round(SWELLING_MM / ph.grid.spacing_mm))
    pad = radius + int(np.ceil(3 * sigma_px))
    rows, cols = lesion.window
    r0, r1 = max(rows.start - pad, 0), min(rows.stop + pad, outer.shape[0])
    c0, c1 = max(cols.start - pad, 0), min(cols.stop + pad, outer.shape[1])
    field = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
    field[rows.start - r0:rows.stop - r0, cols.start - c0:cols.stop - c0] = deficit
    bulge = blur(coarse_dilation(field, radius, max(1, round(DILATION_PITCH_MM / ph.grid.spacing_mm))), sigma_px)
    window = (slice(r0, r1), slice(c0, c1))
    ph.add(Material.MUSCLE, bulge, window)
    outer[window] += bulge  # later lesions see the bulge as body
    return lesion


def coarse_dilation(field: np.ndarray, radius_px: int, factor: int) -> np.ndarray:
    """Grey-scale dilation of ``field`` by a disc of ``radius_px``, on a grid ``factor`` times coarser.

    Each ``factor`` x ``factor`` block keeps its maximum, the disc shrinks by the same factor (but
    still joins every pair of blocks that hold two pixels ``radius_px`` apart), and the result is
    enlarged back by repetition.  It is never below the exact dilation and reaches at most about
    ``4 * factor`` pixels further; the swelling it shapes is blurred next anyway.  The exact
    dilation of a large deposit at 0.1 mm spacing (a 61-pixel disc) took 40-80 ms, this 2-6 ms.
    """
    if factor <= 1:
        return cv2.dilate(field, _disc(radius_px))
    h, w = field.shape
    hc, wc = -(-h // factor), -(-w // factor)
    padded = np.zeros((hc * factor, wc * factor), dtype=np.float32)
    padded[:h, :w] = field
    square = cv2.getStructuringElement(cv2.MORPH_RECT, (factor, factor))
    blocks = np.ascontiguousarray(cv2.dilate(padded, square, anchor=(0, 0))[::factor, ::factor])  # block maxima
    # a source and a target pixel ``radius_px`` apart lie in blocks whose centres are at most
    # ``radius_px + sqrt(2) (factor - 1)`` pixels apart
    small_radius = int(np.ceil((radius_px + np.sqrt(2.0) * (factor - 1)) / factor))
    dilated = cv2.dilate(blocks, _disc(small_radius))
    return cv2.resize(dilated, (wc * factor, hc * factor), interpolation=cv2.INTER_NEAREST)[:h, :w]


def _disc(radius_px: int) -> np.ndarray:
    """OpenCV's elliptical structuring element of this radius (a disc)."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1, 2 * radius_px + 1))
