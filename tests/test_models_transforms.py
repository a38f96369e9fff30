"""Model-grid transforms: physical resampling, normalisation, padding and tiling."""

from __future__ import annotations

import numpy as np
import pytest

from calcdx.datasets.radiograph import Radiograph, SpacingSource
from calcdx.datasets.transforms import (
    grid_scale,
    grid_shape,
    pad_to_multiple,
    preprocessing_spec,
    tiles,
    to_model_grid,
)
from calcdx.errors import ConfigError


def _radiograph(shape=(400, 300), spacing=(0.15, 0.2)) -> Radiograph:
    img = np.random.default_rng(0).random(shape).astype(np.float32)
    return Radiograph(image=img, pixel_spacing_mm=spacing, spacing_source=SpacingSource.PIXEL_SPACING,
                      source="<test>", sop_instance_uid="1", series_instance_uid="2", study_instance_uid="3",
                      sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1", modality="DX")


def test_to_model_grid_keeps_physical_size() -> None:
    r = _radiograph()
    g = to_model_grid(r, 0.6)
    assert g.dtype == np.float32
    assert g.shape == (100, 100)  # 400*0.15/0.6, 300*0.2/0.6
    assert g.min() >= 0.0 and g.max() <= 1.0
    assert grid_scale(r, 0.6) == (0.25, 100 / 300)
    assert grid_shape((10, 10), (1.0, 1.0), 0.5) == (20, 20)


def test_a_bright_spot_stays_where_it_was() -> None:
    img = np.zeros((600, 600), np.float32)
    img[300:306, 120:126] = 1.0  # 0.9 mm spot at (303, 123) px, 0.15 mm/px
    g = to_model_grid(img, 0.5, pixel_spacing_mm=(0.15, 0.15), percentiles=None)
    r, c = np.unravel_index(np.argmax(g), g.shape)
    assert abs(r - 303 * 0.3) <= 1 and abs(c - 123 * 0.3) <= 1


def test_bad_arguments_raise() -> None:
    with pytest.raises(ConfigError):
        to_model_grid(np.zeros((10, 10)), 0.5)
    with pytest.raises(ConfigError):
        to_model_grid(np.zeros((10, 10)), 0.0, pixel_spacing_mm=(0.1, 0.1))
    with pytest.raises(ConfigError):
        to_model_grid(np.zeros((2, 10, 10)), 0.5, pixel_spacing_mm=(0.1, 0.1))
    with pytest.raises(ConfigError):
        tiles((100, 100), 32, 32)


def test_pad_and_tiles_cover_the_image() -> None:
    padded, (pr, pc) = pad_to_multiple(np.ones((33, 64)), 32)
    assert padded.shape == (64, 64) and (pr, pc) == (31, 0)
    assert padded[40:, :].sum() == 0
    cover = np.zeros((700, 500), int)
    for r0, c0, r1, c1 in tiles((700, 500), 320, 32):
        assert r1 - r0 <= 320 and c1 - c0 <= 320
        cover[r0:r1, c0:c1] += 1
    assert cover.min() >= 1
    assert preprocessing_spec(0.6)["spacing_mm"] == 0.6


def test_normalise_in_place_equals_the_plain_expression() -> None:
    """The stretch runs in place in double; the values are those of the plain numpy expression, bit for bit
    (the shipped model was trained on them)."""
    from calcdx.datasets.transforms import normalise

    rng = np.random.default_rng(0)
    for shape in ((664, 524), (7, 5), (300, 1)):
        image = (rng.random(shape) ** 3 * 4000).astype(np.float32)
        lo, hi = np.percentile(image, (0.5, 99.5))
        plain = np.clip(np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32), 0.0, 1.0).astype(np.float32)
        stretched = normalise(image, (0.5, 99.5))
        assert stretched.dtype == np.float32
        assert np.array_equal(stretched, plain)
