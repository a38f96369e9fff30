"""Analytic 3-D primitives projected along the beam: path-length maps in millimetres.

A grid holds pixel-centre coordinates (mm) of the detector plane; each primitive returns
the chord length through a solid at every pixel, so attenuation follows Beer-Lambert
exactly for that shape (no drawn intensities).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """Pixel-centre coordinates: ``y`` (rows) and ``x`` (cols) in mm, and the spacing."""

    y: np.ndarray
    x: np.ndarray
    spacing_mm: float

    @classmethod
    def make(cls, height_mm: float, width_mm: float, spacing_mm: float) -> Grid:
        rows = round(height_mm / spacing_mm)
        cols = round(width_mm / spacing_mm)
        y = (np.arange(rows, dtype=np.float32) + 0.5) * spacing_mm
        x = (np.arange(cols, dtype=np.float32) + 0.5) * spacing_mm
        return cls(y=y[:, None], x=x[None, :], spacing_mm=spacing_mm)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y.shape[0], self.x.shape[1])

    def zeros(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=np.float32)

    def crop(self, rows: slice, cols: slice) -> Grid:
        """The part of this grid inside an index window (same coordinates)."""
        return Grid(y=self.y[rows], x=self.x[:, cols], spacing_mm=self.spacing_mm)

    def window(self, cy: float, cx: float, radius: float) -> tuple[slice, slice]:
        """Index window around (cy, cx) of half-size ``radius`` mm, clipped to the grid."""
        s = self.spacing_mm
        cy -= float(self.y[0, 0]) - 0.5 * s  # coordinates relative to this grid's corner
        cx -= float(self.x[0, 0]) - 0.5 * s
        r0 = max(int((cy - radius) / s), 0)
        r1 = min(int((cy + radius) / s) + 2, self.shape[0])
        c0 = max(int((cx - radius) / s), 0)
        c1 = min(int((cx + radius) / s) + 2, self.shape[1])
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))


def _chord(d2: np.ndarray, r: np.ndarray | float) -> np.ndarray:
    """2*sqrt(r^2 - d^2) where positive: chord of a circle/sphere of radius r at distance d."""
    return 2.0 * np.sqrt(np.clip(np.asarray(r, dtype=np.float32) ** 2 - d2, 0.0, None))


def _combine(out: np.ndarray, window: tuple[slice, slice], values: np.ndarray, union: bool) -> None:
    """Add ``values`` into ``out[window]``, or keep the larger of the two (``union``: one solid
    made of overlapping parts, whose overlaps must not count twice)."""
    if union:
        np.maximum(out[window], values, out=out[window])
    else:
        out[window] += values


def ellipsoid(grid: Grid, cy: float, cx: float, ry: float, rx: float, depth: float,
              angle_deg: float = 0.0, out: np.ndarray | None = None, scale: float = 1.0,
              union: bool = False) -> np.ndarray:
    """Path length through an ellipsoid (semi-axes ry, rx in-plane, ``depth`` along the beam).

    Adds into ``out`` (in place, windowed for speed) when given; ``union`` keeps the maximum instead.
    """
    out = grid.zeros() if out is None else out
    rs, cs = grid.window(cy, cx, max(ry, rx) * 1.05)
    y = grid.y[rs] - cy
    x = grid.x[:, cs] - cx
    a = np.deg2rad(angle_deg)
    u = x * np.cos(a) + y * np.sin(a)
    v = -x * np.sin(a) + y * np.cos(a)
    q = (u / rx) ** 2 + (v / ry) ** 2
    _combine(out, (rs, cs), scale * 2.0 * depth * np.sqrt(np.clip(1.0 - q, 0.0, None)), union)
    return out


def capsule(grid: Grid, p0: tuple[float, float], p1: tuple[float, float], r0: float, r1: float,
            out: np.ndarray | None = None, scale: float = 1.0, depth_ratio: float = 1.0,
            union: bool = False) -> np.ndarray:
    """Path length through a tapered cylinder from p0 to p1 (y, x in mm) with round ends.

    ``depth_ratio`` flattens (<1) or deepens the cross-section along the beam; into ``out`` as
    for ``ellipsoid``.
    """
    out = grid.zeros() if out is None else out
    (y0, x0), (y1, x1) = p0, p1
    rmax = max(r0, r1)
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    half = np.hypot(y1 - y0, x1 - x0) / 2 + rmax
    rs, cs = grid.window(cy, cx, half)
    y = grid.y[rs]
    x = grid.x[:, cs]
    dy, dx = y1 - y0, x1 - x0
    length2 = max(dy * dy + dx * dx, 1e-9)
    t = np.clip(((y - y0) * dy + (x - x0) * dx) / length2, 0.0, 1.0)
    d2 = (y - (y0 + t * dy)) ** 2 + (x - (x0 + t * dx)) ** 2
    r = r0 + (r1 - r0) * t
    _combine(out, (rs, cs), scale * depth_ratio * _chord(d2, r), union)
    return out


def polyline_tube(grid: Grid, points: np.ndarray, radius: float, out: np.ndarray | None = None,
                  scale: float = 1.0, depth_ratio: float = 1.0) -> np.ndarray:
    """A tube of constant radius along a polyline (vessels, fascial planes, streaks)."""
    out = grid.zeros() if out is None else out
    pts = np.asarray(points, dtype=np.float64)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    rs, cs = grid.window(float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2,
                         float(max(hi - lo)) / 2 + radius * 1.05 + grid.spacing_mm)
    local = grid.crop(rs, cs)
    tube = local.zeros()
    for a, b in itertools.pairwise(pts):  # a union: joints are not counted twice
        capsule(local, tuple(a), tuple(b), radius, radius, out=tube, depth_ratio=depth_ratio, union=True)
    out[rs, cs] += tube * scale
    return out


def smooth_curve(rng: np.random.Generator, start: tuple[float, float], direction_deg: float, length: float,
                 n: int = 12, wiggle_deg: float = 12.0) -> np.ndarray:
    """A gently curving polyline (n points) from ``start`` heading ``direction_deg``."""
    angles = np.deg2rad(direction_deg + np.cumsum(rng.normal(0, wiggle_deg, n - 1)) * 0.5)
    step = length / (n - 1)
    pts = [np.array(start, dtype=np.float64)]
    for a in angles:
        pts.append(pts[-1] + step * np.array([np.sin(a), np.cos(a)]))
    return np.array(pts)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered noise field (texture, deformation)."""
    field = blur(rng.standard_normal(shape, dtype=np.float32), max(sigma_px, 0.5))
    std = float(field.std()) or 1.0
    return field / std


def blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of a float32 image (reflect border); sigma in pixels, fast when broad."""
    from calcdx.gaussian import gaussian_blur

    return gaussian_blur(image, sigma_px, border="reflect")
