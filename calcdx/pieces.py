"""Connected pieces of a mask and their principal axes (what a finding's size is measured on)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def axes_mm(mask: np.ndarray, spacing_mm: tuple[float, float]) -> tuple[float, float]:
    """Long and short axis (mm) of ``mask`` with (row, col) pixel ``spacing_mm``: its extent along its
    principal axes, plus one pixel; one pixel each for fewer than three pixels."""
    rows, cols = np.nonzero(mask)
    if rows.size < 3:
        return float(min(spacing_mm)), float(min(spacing_mm))
    pts = np.stack([rows * spacing_mm[0], cols * spacing_mm[1]], 1).astype(np.float64)
    centred = pts - pts.mean(0)
    _, vecs = np.linalg.eigh(np.cov(centred.T))
    proj = centred @ vecs
    ext = proj.max(0) - proj.min(0) + min(spacing_mm)
    return float(ext.max()), float(ext.min())


def nearest_label(labels: np.ndarray, centre: tuple[float, float]) -> int:
    """Of the labelled pieces (``ndimage.label`` output, at least one), the lowest-numbered among those
    with a pixel nearest ``centre`` (row, col)."""
    rows, cols = np.ogrid[:labels.shape[0], :labels.shape[1]]
    distance = np.hypot(rows - centre[0], cols - centre[1])
    distance[labels == 0] = np.inf
    return int(labels[distance == distance.min()].min())


def central_piece(mask: np.ndarray) -> np.ndarray:
    """The connected piece of ``mask`` nearest the field's centre (empty when ``mask`` is)."""
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    return labels == nearest_label(labels, ((mask.shape[0] - 1) / 2, (mask.shape[1] - 1) / 2))
