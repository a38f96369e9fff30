"""``tail_percentiles`` gives ``np.percentile``'s values bit for bit, quickly on the tails, and falls back
to numpy wherever it cannot bracket."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calcdx.datasets.transforms import normalise
from calcdx.percentiles import LEAST_SIZE, tail_percentiles

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _arrays() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    shape = (600, 500)
    return [
        rng.normal(size=shape).astype(np.float32),
        rng.random(shape).astype(np.float32),
        rng.exponential(size=shape),  # float64, a long upper tail
        (rng.integers(0, 40, shape) / 40).astype(np.float32),  # many ties on every rank
        np.where(rng.random(shape) < 0.9, 0.0, rng.random(shape)).astype(np.float32),  # mostly one value
        np.sort(rng.random(shape[0] * shape[1])).astype(np.float32).reshape(shape),  # sorted: a strided sample's worst
        np.full(shape, 0.25, np.float32),  # constant
        np.where(np.arange(shape[0] * shape[1]) % 16 == 0, 1.0 + rng.random(shape[0] * shape[1]),
                 rng.random(shape[0] * shape[1])).astype(np.float32),  # the sample's stride sees one kind only
        rng.normal(size=(LEAST_SIZE + 1,)).astype(np.float32),  # just large enough, odd length
        np.asfortranarray(rng.random(shape).astype(np.float32)),
        rng.random((700, 900)).astype(np.float32)[::2, 1::3],  # a strided view
    ]


@pytest.mark.parametrize("percentiles", [(0.5, 99.5), (1.0, 99.0), (0.0, 100.0), (2.5,), (99.9, 0.1, 5.0, 95.0)])
def test_equal_to_numpy_bit_for_bit(percentiles: tuple[float, ...]) -> None:
    for values in _arrays():
        expected = np.percentile(values, percentiles)
        got = tail_percentiles(values, percentiles)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_falls_back_where_it_cannot_bracket() -> None:
    rng = np.random.default_rng(3)
    big = rng.random((600, 500)).astype(np.float32)
    with_nan = big.copy()
    with_nan[123, 457] = np.nan  # off the sample's stride
    sampled_nan = big.copy()
    sampled_nan[0, 0] = np.nan
    for values, percentiles in [(big, (25.0, 75.0)), (big, (50.0,)), (with_nan, (0.5, 99.5)),
                                (sampled_nan, (0.5, 99.5)), (big[:10], (0.5, 99.5)),
                                (rng.integers(0, 9, (600, 500)), (0.5, 99.5)), (big.astype(np.float16), (1.0, 99.0))]:
        np.testing.assert_array_equal(tail_percentiles(values, percentiles), np.percentile(values, percentiles))
    assert np.isnan(tail_percentiles(with_nan, (0.5, 99.5))).all()


def test_normalise_of_the_bundled_examples_as_with_numpy() -> None:
    """The model's input is the same as with ``np.percentile`` (what the shipped model was trained on)."""
    from calcdx.datasets.reader import read_radiograph
    from calcdx.datasets.transforms import grid_shape, resample

    for path in sorted(EXAMPLES.glob("*.dcm"))[:4]:
        radiograph = read_radiograph(path)
        grid = resample(radiograph.image, grid_shape(radiograph.shape, radiograph.pixel_spacing_mm, 0.4))
        lo, hi = np.percentile(grid, (0.5, 99.5))
        expected = np.clip((grid.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
        np.testing.assert_array_equal(normalise(grid), expected)
