"""Binary erosion and dilation with OpenCV, equal to scipy.ndimage's defaults.

``scipy.ndimage.binary_erosion`` / ``binary_dilation`` / ``binary_opening`` with their default
structuring element (the 3 x 3 cross) and ``border_value=0``; the results are identical (a
test on random masks) and 10-15 x faster, which matters because every finding is measured
with five of them.
"""

from __future__ import annotations

import cv2
import numpy as np

_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def _as_uint8(mask: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(mask, dtype=bool).view(np.uint8)


def binary_erosion(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """``mask`` eroded by the 3 x 3 cross; pixels outside the image count as background."""
    out = cv2.erode(_as_uint8(mask), _CROSS, iterations=iterations, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out.view(bool)


def binary_dilation(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """``mask`` dilated by the 3 x 3 cross, ``iterations`` times."""
    out = cv2.dilate(_as_uint8(mask), _CROSS, iterations=iterations, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out.view(bool)


def binary_opening(mask: np.ndarray) -> np.ndarray:
    """Erosion then dilation by the 3 x 3 cross."""
    return binary_dilation(binary_erosion(mask))
