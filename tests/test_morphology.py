"""Binary morphology and the gradient magnitude through OpenCV equal scipy.ndimage's defaults."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from calcdx.morphology import binary_dilation, binary_erosion, binary_opening


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
