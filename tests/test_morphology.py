"""Binary morphology, the gradient magnitude and the nearest piece equal their plain scipy / numpy forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from calcdx.morphology import binary_dilation, binary_erosion, binary_opening, label


def _random_masks(n: int = 60) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    masks = [np.zeros((1, 1), bool), np.ones((5, 7), bool), np.ones((1, 9), bool)]
    for _ in range(n):
        rows, cols = rng.integers(1, 120, 2)
        smooth = ndimage.gaussian_filter(rng.random((rows, cols)), rng.uniform(0.5, 4.0))
        masks.append(smooth > rng.uniform(0.4, 0.6))
    return masks


@pytest.mark.parametrize("iterations", [1, 3])
def test_erosion_and_dilation_equal_scipy(iterations: int) -> None:
    for mask in _random_masks():
        assert np.array_equal(binary_erosion(mask, iterations), ndimage.binary_erosion(mask, iterations=iterations))
        assert np.array_equal(binary_dilation(mask, iterations), ndimage.binary_dilation(mask, iterations=iterations))


def test_opening_equals_scipy_and_keeps_the_input() -> None:
    for mask in _random_masks():
        before = mask.copy()
        opened = binary_opening(mask)
        assert opened.dtype == bool and opened.shape == mask.shape
        assert np.array_equal(opened, ndimage.binary_opening(mask))
        assert np.array_equal(mask, before)


@pytest.mark.parametrize("shape", [(9, 9), (3, 50), (61, 47), (200, 310)])
def test_gaussian_gradient_magnitude_equals_scipy(shape: tuple[int, int]) -> None:
    from calcdx.gaussian import gaussian_gradient_magnitude

    rng = np.random.default_rng(shape[0])
    patch = (rng.random(shape) ** 3).astype(np.float32)  # skewed, like a deposit on a background
    for sigma in (1.0, 2.5):
        expected = ndimage.gaussian_gradient_magnitude(patch, sigma)
        np.testing.assert_allclose(gaussian_gradient_magnitude(patch, sigma), expected, atol=1e-5)


def test_nearest_label_equals_the_distance_to_every_pixel() -> None:
    """``pieces.nearest_label`` widens a window around the centre; it names the piece a distance to every
    pixel names (the lowest-numbered of those at the least distance), wherever the centre lies: on a piece,
    between pieces, on ties at whole-pixel centres, outside the patch."""
    from calcdx.pieces import nearest_label

    def every_pixel(labels: np.ndarray, centre: tuple[float, float]) -> int:
        rows, cols = np.ogrid[:labels.shape[0], :labels.shape[1]]
        distance = np.hypot(rows - centre[0], cols - centre[1])
        distance[labels == 0] = np.inf
        return int(labels[distance == distance.min()].min())

    rng = np.random.default_rng(11)
    checked = 0
    for k in range(1500):
        rows, cols = rng.integers(1, 150, 2)
        labels, n = ndimage.label(rng.random((rows, cols)) < rng.choice([0.001, 0.02, 0.3, 0.7]))
        if n == 0:
            continue
        centre = ((rng.uniform(-20, rows + 20), rng.uniform(-20, cols + 20)) if k % 3
                  else ((rows - 1) / 2, (cols - 1) / 2))
        if k % 4 == 0:
            centre = (float(round(centre[0])), float(round(centre[1])))
        assert nearest_label(labels, centre) == every_pixel(labels, centre), (rows, cols, centre)
        checked += 1
    assert checked > 1000
    with pytest.raises(ValueError, match="at least one"):
        nearest_label(np.zeros((4, 4), int), (1.0, 1.0))


def test_label_equals_scipy() -> None:
    """The same pieces with the same numbers (raster order), for masks of every kind and an empty one."""
    rng = np.random.default_rng(4)
    noisy = [rng.random(tuple(rng.integers(1, 90, 2))) < p for p in (0.05, 0.3, 0.6, 0.9)]
    for mask in [*_random_masks(), *noisy, np.zeros((0, 5), bool)]:
        labels, n = label(mask)
        expected, n_expected = ndimage.label(mask)
        assert n == n_expected
        np.testing.assert_array_equal(labels, expected)


def _plain_principal_axes(mask: np.ndarray, spacing_mm: tuple[float, float]) -> tuple[float, float, np.ndarray]:
    """Long and short axis and the long axis' ends over every pixel (the form ``principal_axes`` replaced)."""
    rows, cols = np.nonzero(mask)
    pixel = float(min(spacing_mm))
    pts = np.stack([rows * spacing_mm[0], cols * spacing_mm[1]], 1).astype(np.float64)
    mean = pts.mean(0)
    centred = pts - mean
    _, vecs = np.linalg.eigh(np.cov(centred.T))
    proj = centred @ vecs
    ext = proj.max(0) - proj.min(0) + pixel
    k = int(np.argmax(ext))
    scale = np.asarray(spacing_mm, np.float64)
    ends = np.array([(mean + vecs[:, k] * (bound + half)) / scale
                     for bound, half in ((proj[:, k].min(), -pixel / 2), (proj[:, k].max(), pixel / 2))])
    return float(ext.max()), float(ext.min()), ends


@pytest.mark.parametrize("spacing", [(0.4, 0.4), (0.15, 0.21)])
def test_principal_axes_equal_those_over_every_pixel(spacing: tuple[float, float]) -> None:
    """Moments and outer-border pixels give the axes that every pixel gives: masks of several pieces,
    with holes, touching the frame's edges, lines and a ring around a piece."""
    from calcdx.pieces import principal_axes

    ring = np.zeros((60, 60), bool)
    rows, cols = np.mgrid[0:60, 0:60]
    radius = np.hypot(rows - 30, cols - 28)
    ring[(radius > 18) & (radius < 22)] = True
    ring[(radius < 6)] = True  # a piece inside the ring's hole: no outer border of its own
    diagonal = np.eye(40, dtype=bool) | np.eye(40, k=1, dtype=bool)
    masks = [*_random_masks(), ring, diagonal, np.ones((3, 1), bool)]
    checked = 0
    for mask in masks:
        if mask.sum() < 3:
            continue
        axes = principal_axes(mask, spacing)
        long_mm, short_mm, ends = _plain_principal_axes(mask, spacing)
        assert (axes.long_mm, axes.short_mm) == pytest.approx((long_mm, short_mm), rel=1e-9, abs=1e-9)
        got = np.array(axes.long_ends_px)
        assert np.allclose(got, ends, atol=1e-6) or np.allclose(got, ends[::-1], atol=1e-6)  # either direction
        checked += 1
    assert checked > 50
