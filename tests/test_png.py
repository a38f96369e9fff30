"""The overlays' PNG encoder: Pillow and OpenCV read back the very pixels written."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from calcdx.inference.png import encode_rgb


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (97, 131), (1284, 910)])
def test_pixels_read_back_unchanged(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0])
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    rgb[: shape[0] // 2] = 40  # flat rows too, where the "up" filter leaves zeros
    png = encode_rgb(rgb)
    with Image.open(io.BytesIO(png)) as picture:
        picture.verify()  # chunk CRCs and structure
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.mode == "RGB" and picture.size == (shape[1], shape[0])
        np.testing.assert_array_equal(np.asarray(picture), rgb)
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded.reshape(rgb.shape)[..., ::-1], rgb)


def test_a_view_is_encoded_as_its_pixels() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    view = rgb[::2, ::-1]
    with Image.open(io.BytesIO(encode_rgb(view))) as picture:
        np.testing.assert_array_equal(np.asarray(picture), view)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                                 np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4, 4), np.uint8)])
def test_anything_but_rgb_bytes_is_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8 picture"):
        encode_rgb(bad)
