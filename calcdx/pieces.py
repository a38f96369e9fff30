"""Connected pieces of a mask, their principal axes and outline (what a finding's size is measured on,
and what the overlay and the SR show of it)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calcdx.morphology import label

MAX_OUTLINE_POINTS = 64


@dataclass(frozen=True)
class Axes:
    """A mask's extent along its principal axes, and where its long axis lies."""

    long_mm: float
    short_mm: float
    long_ends_px: tuple[tuple[float, float], tuple[float, float]]
    """The long axis' two ends, (row, col) pixel coordinates (pixel centres at integers): a line as long as
    ``long_mm`` through the mask's centroid."""


def principal_axes(mask: np.ndarray, spacing_mm: tuple[float, float]) -> Axes:
    """Long and short axis (mm) of ``mask`` with (row, col) pixel ``spacing_mm``: its extent along its
    principal axes, plus one pixel; one pixel each for fewer than three pixels.

    The centroid and covariance come from the mask's moments (OpenCV), and the extents from the pixels of
    its outer borders: a pixel farthest along any direction has no mask pixel beyond it, so it lies on an
    outer border.  The same axes as over every pixel (a test), at a fraction of the time on a large mask.
    """
    pixel = float(min(spacing_mm))
    mask8 = np.ascontiguousarray(mask, dtype=np.uint8)
    moments = cv2.moments(mask8, binaryImage=True)
    count = moments["m00"]
    if count < 3:
        rows, cols = np.nonzero(mask8)
        centre = (float(rows.mean()), float(cols.mean())) if rows.size else (0.0, 0.0)
        return Axes(pixel, pixel, (centre, centre))
    scale = np.asarray(spacing_mm, np.float64)
    mean = np.array([moments["m01"], moments["m10"]]) / count * scale  # (row, col) in mm
    row_mm, col_mm = spacing_mm
    covariance = np.array([[moments["mu02"] * row_mm * row_mm, moments["mu11"] * row_mm * col_mm],
                           [moments["mu11"] * row_mm * col_mm, moments["mu20"] * col_mm * col_mm]]) / (count - 1)
    _, vecs = np.linalg.eigh(covariance)
    contours, _ = cv2.findContours(mask8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    border = np.concatenate(contours).reshape(-1, 2)[:, ::-1] * scale  # OpenCV gives (x, y)
    proj = (border - mean) @ vecs
    low, high = proj.min(0), proj.max(0)
    ext = high - low + pixel
    k = int(np.argmax(ext))
    ends = [(mean + vecs[:, k] * (bound + half)) / scale
            for bound, half in ((low[k], -pixel / 2), (high[k], pixel / 2))]
    return Axes(float(ext.max()), float(ext.min()),
                ((float(ends[0][0]), float(ends[0][1])), (float(ends[1][0]), float(ends[1][1]))))


def axes_mm(mask: np.ndarray, spacing_mm: tuple[float, float]) -> tuple[float, float]:
    """Long and short axis (mm) of ``mask``: :func:`principal_axes` without the ends."""
    axes = principal_axes(mask, spacing_mm)
    return axes.long_mm, axes.short_mm


def outline(mask: np.ndarray, max_points: int = MAX_OUTLINE_POINTS) -> np.ndarray:
    """[N, 2] (row, col) pixel centres of a closed polygon around ``mask`` (first point not repeated):
    the border of a single piece, the convex hull of several; simplified (OpenCV's Douglas-Peucker, from
    half a pixel, doubled) to at most ``max_points``.  Empty where the mask is."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return np.zeros((0, 2))
    points = contours[0] if len(contours) == 1 else cv2.convexHull(np.concatenate(contours))
    tolerance = 0.5
    while len(points) > max_points:
        points = cv2.approxPolyDP(points, tolerance, closed=True)
        tolerance *= 2
    return points.reshape(-1, 2)[:, ::-1].astype(np.float64)  # OpenCV gives (x, y)


def nearest_label(labels: np.ndarray, centre: tuple[float, float]) -> int:
    """Of the labelled pieces (``ndimage.label`` output, at least one), the lowest-numbered among those
    with a pixel nearest ``centre`` (row, col).

    The search starts in a small window around ``centre`` and widens it until a labelled pixel lies
    within the window's inscribed circle: nothing outside can then be nearer.  A deposit usually lies
    at the centre, so the whole patch is seldom read (it took 1.2 ms per call on a calcinosis sheet's
    patch, for the distance of every pixel)."""
    rows_total, cols_total = labels.shape
    radius = NEAREST_LABEL_FIRST_RADIUS_PX
    while True:
        top, left = max(int(np.floor(centre[0] - radius)), 0), max(int(np.floor(centre[1] - radius)), 0)
        bottom = min(int(np.ceil(centre[0] + radius)) + 1, rows_total)
        right = min(int(np.ceil(centre[1] + radius)) + 1, cols_total)
        window = labels[top:bottom, left:right]
        rows, cols = np.nonzero(window)
        whole = top == 0 and left == 0 and bottom == rows_total and right == cols_total
        if rows.size:
            squared = (rows + (top - centre[0])) ** 2 + (cols + (left - centre[1])) ** 2
            nearest = squared.min()
            if nearest <= radius * radius or whole:
                on = squared == nearest
                return int(window[rows[on], cols[on]].min())
        elif whole:
            raise ValueError("nearest_label needs at least one labelled pixel")
        radius *= 4


NEAREST_LABEL_FIRST_RADIUS_PX = 8


def central_piece(mask: np.ndarray) -> np.ndarray:
    """The connected piece of ``mask`` nearest the field's centre (empty when ``mask`` is)."""
    labels, n = label(mask)
    if n <= 1:
        return mask
    return labels == nearest_label(labels, ((mask.shape[0] - 1) / 2, (mask.shape[1] - 1) / 2))


def central_cluster(mask: np.ndarray, gap_px: float) -> np.ndarray:
    """The pieces of ``mask`` joined to the one nearest the field's centre through gaps of at most ``gap_px``
    pixels (a fluffy deposit that thresholding broke up); ``central_piece`` when ``gap_px`` < 1."""
    radius = round(gap_px / 2)
    if radius < 1 or not mask.any():
        return central_piece(mask)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    joined = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
    return central_piece(joined) & mask
