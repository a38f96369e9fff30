"""Analytic 3-D primitives projected along the beam: path-length maps in millimetres.

A grid holds pixel-centre coordinates (mm) of the detector plane; each primitive returns
the chord length through a solid at every pixel, so attenuation follows Beer-Lambert
exactly for that shape (no drawn intensities).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Window = tuple[slice, slice]
"""Row and column index ranges of a bounding box."""
WHOLE_FRAME: Window = (slice(None), slice(None))
"""The window of every pixel."""


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

    def box(self, y_lo: float, y_hi: float, x_lo: float, x_hi: float) -> Window:
        """Index window holding the rectangle [y_lo, y_hi] x [x_lo, x_hi] mm, clipped to the grid."""
        s = self.spacing_mm
        oy = float(self.y[0, 0]) - 0.5 * s  # this grid's corner
        ox = float(self.x[0, 0]) - 0.5 * s
        r0 = max(int((y_lo - oy) / s), 0)
        r1 = min(int((y_hi - oy) / s) + 2, self.shape[0])
        c0 = max(int((x_lo - ox) / s), 0)
        c1 = min(int((x_hi - ox) / s) + 2, self.shape[1])
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))


def enclosing_window(a: Window, b: Window) -> Window:
    """The smallest index window holding both ``a`` and ``b`` (slices with start and stop)."""
    return (slice(min(a[0].start, b[0].start), max(a[0].stop, b[0].stop)),
            slice(min(a[1].start, b[1].start), max(a[1].stop, b[1].stop)))


def positive_part(values: np.ndarray) -> np.ndarray:
    """``max(values, 0)`` in place (float32), through OpenCV's threshold: a quarter of ``np.maximum``'s
    time on a radiograph, and safe for every shape (``cv2.max`` with a scalar reads a (k, 1) array,
    k <= 4, as a scalar itself)."""
    import cv2

    if values.size:  # OpenCV refuses empty arrays
        cv2.threshold(values, 0.0, 0.0, cv2.THRESH_TOZERO, dst=values)
    return values


def _combine(out: np.ndarray, window: Window, values: np.ndarray, union: bool) -> None:
    """Add ``values`` into ``out[window]``, or keep the larger of the two (``union``: one solid
    made of overlapping parts, whose overlaps must not count twice)."""
    import cv2

    if union:
        target = out[window]
        if not target.size:  # OpenCV refuses empty arrays
            return
        cv2.max(target, values, dst=target)  # in place (OpenCV raises if it cannot): 2x np.maximum
    else:
        out[window] += values


def ellipsoid_window(grid: Grid, cy: float, cx: float, ry: float, rx: float, angle_deg: float = 0.0
                     ) -> Window:
    """The index window an ``ellipsoid`` with these centre, semi-axes and angle draws into: its
    bounding box (``rx`` lies along ``angle_deg``), with 5 % to spare."""
    a = np.deg2rad(angle_deg)
    half_y = 1.05 * float(np.hypot(rx * np.sin(a), ry * np.cos(a)))
    half_x = 1.05 * float(np.hypot(rx * np.cos(a), ry * np.sin(a)))
    return grid.box(cy - half_y, cy + half_y, cx - half_x, cx + half_x)


def capsule_window(grid: Grid, p0: tuple[float, float], p1: tuple[float, float], r0: float, r1: float
                   ) -> Window:
    """The index window a ``capsule`` from ``p0`` to ``p1`` with end radii ``r0``, ``r1`` draws into:
    its bounding box (a long bone's shaft is a narrow strip, not the square around its length)."""
    (y0, x0), (y1, x1) = p0, p1
    r = max(r0, r1)
    return grid.box(min(y0, y1) - r, max(y0, y1) + r, min(x0, x1) - r, max(x0, x1) + r)


def ellipsoid(grid: Grid, cy: float, cx: float, ry: float, rx: float, depth: float,
              angle_deg: float = 0.0, out: np.ndarray | None = None, scale: float = 1.0,
              union: bool = False) -> np.ndarray:
    """Path length through an ellipsoid (semi-axes ry, rx in-plane, ``depth`` along the beam).

    Adds into ``out`` (in place, windowed for speed) when given; ``union`` keeps the maximum instead.
    """
    import cv2

    out = grid.zeros() if out is None else out
    rs, cs = ellipsoid_window(grid, cy, cx, ry, rx, angle_deg)
    if rs.stop <= rs.start or cs.stop <= cs.start:
        return out  # nothing of it inside the grid
    y = grid.y[rs] - np.float32(cy)
    x = grid.x[:, cs] - np.float32(cx)
    a = np.deg2rad(angle_deg)
    cos_a, sin_a = np.float32(np.cos(a)), np.float32(np.sin(a))
    u = x * (cos_a / np.float32(rx)) + y * (sin_a / np.float32(rx))  # in units of the semi-axes
    v = x * (-sin_a / np.float32(ry)) + y * (cos_a / np.float32(ry))
    u *= u
    v *= v
    q = np.subtract(np.float32(1.0), u, out=u)
    q -= v
    cv2.sqrt(positive_part(q), dst=q)
    q *= np.float32(scale * 2.0 * depth)
    _combine(out, (rs, cs), q, union)
    return out


def capsule(grid: Grid, p0: tuple[float, float], p1: tuple[float, float], r0: float, r1: float,
            out: np.ndarray | None = None, scale: float = 1.0, depth_ratio: float = 1.0,
            union: bool = False) -> np.ndarray:
    """Path length through a tapered cylinder from p0 to p1 (y, x in mm) with round ends.

    ``depth_ratio`` flattens (<1) or deepens the cross-section along the beam; into ``out`` as
    for ``ellipsoid``.
    """
    out = grid.zeros() if out is None else out
    nested_capsules(grid, p0, p1, r0, r1, [(1.0, out)], scale=scale, depth_ratio=depth_ratio, union=union)
    return out


def nested_capsules(grid: Grid, p0: tuple[float, float], p1: tuple[float, float], r0: float, r1: float,
                    layers: Sequence[tuple[float, np.ndarray]], scale: float = 1.0, depth_ratio: float = 1.0,
                    union: bool = False) -> None:
    """``capsule``s on one axis, one per layer ``(factor, out)``: end radii ``r0``, ``r1`` times
    ``factor`` (at most 1), each into its own ``out`` (a limb's skin and its muscle).

    The distance to the axis is split into its part along the axis beyond the ends and its part
    across it, each an affine function of the pixel position: the geometry costs about ten
    in-place passes over the window, shared by the layers, and each layer five more.  An axis
    along the rows or the columns (a limb in its canonical pose) makes both parts functions of
    one coordinate each: vectors, and the layers' five passes are all the work.
    """
    import cv2

    if any(factor > 1.0 for factor, _ in layers):
        raise ValueError("layer radii are fractions of the outermost capsule's")
    (y0, x0), (y1, x1) = p0, p1
    rs, cs = capsule_window(grid, p0, p1, r0, r1)
    if rs.stop <= rs.start or cs.stop <= cs.start:
        return  # nothing of it inside the grid
    length = max(float(np.hypot(y1 - y0, x1 - x0)), 1e-9)
    uy, ux = (y1 - y0) / length, (x1 - x0) / length  # unit vector along the axis
    y = grid.y[rs] - np.float32(y0)
    x = grid.x[:, cs] - np.float32(x0)
    if ux == 0.0:  # along the rows: along depends on the row, across on the column
        along, across = y * np.float32(uy), x * np.float32(uy)
    elif uy == 0.0:
        along, across = x * np.float32(ux), y * np.float32(-ux)
    else:
        along = y * np.float32(uy) + x * np.float32(ux)
        across = y * np.float32(-ux) + x * np.float32(uy)
    on_axis = positive_part(along.copy())
    cv2.threshold(on_axis, float(length), float(length), cv2.THRESH_TRUNC, dst=on_axis)  # at most the length
    along -= on_axis  # beyond the ends: distance along the axis to the nearer end
    along *= along
    across *= across
    separable = along.shape != across.shape
    if not separable:
        across += along  # squared distance to the axis segment
    radius = np.multiply(on_axis, np.float32((r1 - r0) / length), out=on_axis)
    radius += np.float32(r0)
    radius *= radius  # squared radius of the outermost layer
    for k, (factor, out) in enumerate(layers):
        if separable:  # (squared radius - squared distance beyond the ends) per row, less across per column
            chord = np.subtract(radius * np.float32(factor * factor) - along, across)
        else:
            last = k == len(layers) - 1
            chord = radius if last and factor == 1.0 else np.multiply(radius, np.float32(factor * factor),
                                                                      out=radius if last else None)
            chord -= across
        cv2.sqrt(positive_part(chord), dst=chord)
        chord *= np.float32(2.0 * scale * depth_ratio)
        _combine(out, (rs, cs), chord, union)


def polyline_tube(grid: Grid, points: np.ndarray, radius: float, out: np.ndarray | None = None,
                  scale: float = 1.0, depth_ratio: float = 1.0) -> np.ndarray:
    """A tube of constant radius along a polyline (vessels, fascial planes, streaks)."""
    out = grid.zeros() if out is None else out
    tube, window = polyline_tube_local(grid, points, radius, scale=scale, depth_ratio=depth_ratio)
    out[window] += tube
    return out


def polyline_tube_local(grid: Grid, points: np.ndarray, radius: float, scale: float = 1.0,
                        depth_ratio: float = 1.0) -> tuple[np.ndarray, Window]:
    """``polyline_tube`` inside its bounding box: (path lengths there, the box's index window)."""
    pts = np.asarray(points, dtype=np.float64)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    margin = radius * 1.05 + grid.spacing_mm
    rs, cs = grid.box(float(lo[0]) - margin, float(hi[0]) + margin, float(lo[1]) - margin, float(hi[1]) + margin)
    local = grid.crop(rs, cs)
    tube = local.zeros()
    for a, b in itertools.pairwise(pts):  # a union: joints are not counted twice
        capsule(local, tuple(a), tuple(b), radius, radius, out=tube, depth_ratio=depth_ratio, union=True)
    if scale != 1.0:
        tube *= np.float32(scale)
    return tube, (rs, cs)


def smooth_curve(rng: np.random.Generator, start: tuple[float, float], direction_deg: float, length: float,
                 n: int = 12, wiggle_deg: float = 12.0) -> np.ndarray:
    """A gently curving polyline (n points) from ``start`` heading ``direction_deg``."""
    angles = np.deg2rad(direction_deg + np.cumsum(rng.normal(0, wiggle_deg, n - 1)) * 0.5)
    step = length / (n - 1)
    pts = [np.array(start, dtype=np.float64)]
    for a in angles:
        pts.append(pts[-1] + step * np.array([np.sin(a), np.cos(a)]))
    return np.array(pts)


def standard_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Independent N(0, 1) float32 samples, drawn by OpenCV's generator seeded from ``rng``.

    Four times faster than numpy's on a radiograph (10 against 40 ms for 3 Mpx), and as
    reproducible: the seed comes from ``rng``, and OpenCV fills the array on the calling thread
    whatever its thread count.  Checked: mean, variance, skewness, kurtosis, a Kolmogorov-Smirnov
    test and neighbour correlations (tests).
    """
    import cv2

    out = np.empty(shape, dtype=np.float32)
    cv2.setRNGSeed(int(rng.integers(1, 2**31 - 1)))
    cv2.randn(out, 0.0, 1.0)
    return out


NOISE_SAMPLES_PER_SIGMA = 2.0
"""A smooth noise field is drawn on a grid with this many samples per sigma (at least the
image grid) and resized bilinearly: a broad field then costs a fraction of its pixels."""


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered noise field (texture, deformation).

    Fields broader than ``NOISE_SAMPLES_PER_SIGMA`` pixels per sigma are drawn ``factor`` times
    coarser and resized bilinearly; the resize's triangle kernel adds ``factor**2 / 6`` px^2 of
    variance, which the coarse sigma leaves out, so the field's correlation length is the same.
    """
    import cv2

    sigma_px = max(sigma_px, 0.5)
    factor = max(1, int(sigma_px // NOISE_SAMPLES_PER_SIGMA))
    if factor == 1:
        field = blur(standard_normal(rng, shape), sigma_px)
    else:
        coarse_shape = (-(-shape[0] // factor), -(-shape[1] // factor))
        coarse_sigma = float(np.sqrt(sigma_px**2 - factor**2 / 6.0)) / factor
        coarse = blur(standard_normal(rng, coarse_shape), coarse_sigma)
        field = cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    std = float(cv2.meanStdDev(field)[1][0, 0])  # one pass, in double: 10x numpy's std
    field /= np.float32(std or 1.0)
    return field


def blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of a float32 image (reflect border); sigma in pixels, fast when broad."""
    from calcdx.gaussian import gaussian_blur

    return gaussian_blur(image, sigma_px, border="reflect")
