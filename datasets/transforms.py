"""Image transforms to and from the model grid (fixed millimetres per pixel).

The model sees every radiograph at one physical resolution (``card.input_spacing_mm``),
whatever the detector pixel size: a 2 mm calcification spans the same number of model
pixels on every image.  Grey levels are normalised per image by a robust percentile
stretch, so vendor processing and window settings matter less.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from calcdx.datasets.radiograph import Radiograph
from calcdx.errors import ConfigError
from calcdx.percentiles import tail_percentiles

DEFAULT_PERCENTILES: tuple[float, float] = (0.5, 99.5)


def grid_shape(shape_px: tuple[int, int], pixel_spacing_mm: tuple[float, float],
               spacing_mm: float) -> tuple[int, int]:
    """(rows, cols) of the model grid for an image of ``shape_px`` at ``pixel_spacing_mm``."""
    rows = max(1, round(shape_px[0] * pixel_spacing_mm[0] / spacing_mm))
    cols = max(1, round(shape_px[1] * pixel_spacing_mm[1] / spacing_mm))
    return rows, cols


def grid_scale(radiograph: Radiograph, spacing_mm: float) -> tuple[float, float]:
    """Model-grid pixels per original pixel, (row, col): multiply original coordinates by it.

    Divide model-grid coordinates by it to map back to the original image.
    """
    rows, cols = grid_shape(radiograph.shape, radiograph.pixel_spacing_mm, spacing_mm)
    return rows / radiograph.shape[0], cols / radiograph.shape[1]


def resample(image: np.ndarray, shape: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    """Resize a 2-D array to ``shape`` (area averaging when shrinking, linear when enlarging)."""
    h, w = image.shape[:2]
    if (h, w) == tuple(shape):
        return image.copy()
    shrink = shape[0] * shape[1] < h * w
    interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return cv2.resize(image, (int(shape[1]), int(shape[0])), interpolation=interp)


def resample_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a boolean mask so that thin structures survive (area fraction > 0 = inside)."""
    m = resample(mask.astype(np.float32), shape)
    return m > 0.05


def normalise(image: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES) -> np.ndarray:
    """Percentile stretch to [0, 1] (float32); a constant image becomes zeros."""
    img = np.asarray(image, dtype=np.float32)
    lo, hi = tail_percentiles(img, percentiles)  # np.percentile's values, from the tails alone
    if not hi > lo:
        return np.zeros_like(img, dtype=np.float32)
    stretched = img.astype(np.float64)  # in double, as numpy promotes against the float64 percentiles,
    stretched -= lo  # in place: one temporary instead of three
    stretched /= hi - lo
    np.clip(stretched, 0.0, 1.0, out=stretched)
    return stretched.astype(np.float32)


def to_model_grid(radiograph: Radiograph | np.ndarray, spacing_mm: float, *,
                  pixel_spacing_mm: tuple[float, float] | None = None,
                  percentiles: tuple[float, float] | None = DEFAULT_PERCENTILES) -> np.ndarray:
    """Resample a radiograph to ``spacing_mm`` per pixel and normalise it to [0, 1].

    Args:
        radiograph: a ``Radiograph`` (its ``pixel_spacing_mm`` is used) or a 2-D array
            together with ``pixel_spacing_mm``.
        spacing_mm: model grid spacing in mm per pixel (``card.input_spacing_mm``).
        percentiles: robust stretch (low, high); None keeps the reader's [0, 1] values.

    Returns:
        float32 array (rows, cols) in [0, 1], shape ``grid_shape(...)``.

    Raises:
        ConfigError: non-positive spacing or an image that is not 2-D.
    """
    if isinstance(radiograph, Radiograph):
        image, spacing = radiograph.image, radiograph.pixel_spacing_mm
    else:
        if pixel_spacing_mm is None:
            raise ConfigError('Argument "pixel_spacing_mm" is required with a plain array')
        image, spacing = radiograph, pixel_spacing_mm
    if not spacing_mm > 0 or min(spacing) <= 0:
        raise ConfigError(f"spacing must be positive (model {spacing_mm!r} mm, image {spacing!r} mm)")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ConfigError(f"expected a 2-D image, got shape {image.shape}")
    out = resample(image, grid_shape(image.shape, spacing, spacing_mm))
    if percentiles is not None:
        return normalise(out, percentiles)  # float32 in [0, 1] already
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def preprocessing_spec(spacing_mm: float, percentiles: tuple[float, float] | None = DEFAULT_PERCENTILES
                       ) -> dict[str, Any]:
    """The ``ModelCard.preprocessing`` dict describing ``to_model_grid`` with these settings."""
    return {
        "function": "calcdx.datasets.transforms.to_model_grid",
        "spacing_mm": float(spacing_mm),
        "resample": "cv2 INTER_AREA (shrink) / INTER_LINEAR (enlarge)",
        "percentiles": list(percentiles) if percentiles is not None else None,
        "range": [0.0, 1.0],
        "bright": "dense",
        "pad_value": 0.0,
    }


def pad_to_multiple(image: np.ndarray, multiple: int,
                    value: float = 0.0) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad bottom/right so both sides are multiples of ``multiple``; returns (padded, (pad_r, pad_c))."""
    h, w = image.shape[-2:]
    pr, pc = (-h) % multiple, (-w) % multiple
    if pr == 0 and pc == 0:
        return image, (0, 0)
    pad = [(0, 0)] * (image.ndim - 2) + [(0, pr), (0, pc)]
    return np.pad(image, pad, constant_values=value), (pr, pc)


def tiles(shape: tuple[int, int], tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Tile windows ``(r0, c0, r1, c1)`` covering ``shape`` with ``overlap`` pixels of overlap.

    Raises:
        ConfigError: overlap not smaller than the tile.
    """
    if overlap >= tile:
        raise ConfigError(f"tile overlap {overlap} must be smaller than the tile {tile}")
    h, w = shape

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        step = tile - overlap
        s = list(range(0, n - tile, step))
        return [*s, n - tile]

    return [(r, c, min(r + tile, h), min(c + tile, w)) for r in starts(h) for c in starts(w)]
