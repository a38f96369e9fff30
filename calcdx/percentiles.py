"""Tail percentiles of a large array, exactly as ``np.percentile`` gives them, without sorting it all.

``np.percentile(image, (0.5, 99.5))`` partitions a copy of every pixel around six ranks: 1.5 ms on a
model grid of 0.3 Mpx, a twentieth of the forward pass.  A percentile near either end depends only on
the few pixels beyond a threshold: a strided sample of the image gives a threshold that has the rank's
pixels on its side with a wide margin, the pixels on that side are counted and gathered (a few thousand),
and only they are partitioned.  The two order statistics around each percentile are then the same
pixels numpy's partition finds, and they are interpolated by numpy's formula, so the result is equal
bit for bit (a test holds it so).  Anything this cannot bracket (a small array, a percentile near the
middle, a NaN, a sample that missed) goes to ``np.percentile`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SAMPLE_STEP = 16
"""Every this-many-th pixel (of the flattened array) forms the sample the thresholds come from."""
LEAST_SIZE = 16 * 4096
"""Arrays smaller than this go to ``np.percentile``: it is fast enough there."""
TAIL_FRACTION = 0.05
"""Only percentiles within this fraction of either end are bracketed (a tail stays small)."""
MARGIN_SIGMAS = 5.0
"""How many binomial standard deviations of the sample's count the threshold stays beyond the rank."""


def tail_percentiles(values: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """``np.percentile(values, percentiles)`` (method "linear", over every element) as float64, computed
    on the tails only where it can be (module docstring); the same values bit for bit."""
    x = np.asarray(values).reshape(-1)
    q = np.true_divide(np.asarray(percentiles, dtype=np.float64), 100)
    n = x.size
    if (n < LEAST_SIZE or x.dtype not in (np.float32, np.float64) or q.ndim != 1 or not np.all((q >= 0) & (q <= 1))
            or not np.all((q <= TAIL_FRACTION) | (q >= 1 - TAIL_FRACTION))):
        return np.percentile(values, percentiles)
    virtual = (n - 1) * q  # numpy's "linear" virtual index, its previous and next ranks and weight
    previous = np.floor(virtual)
    gamma = virtual - previous
    below_ranks = previous.astype(np.intp)
    above_ranks = np.minimum(below_ranks + 1, n - 1)
    sample = x[::SAMPLE_STEP]
    if np.isnan(sample.max()):  # a NaN in the sample: numpy's answer is NaN, let it say so
        return np.percentile(values, percentiles)
    low_side = below_ranks < n // 2
    sample_ranks = np.empty(q.size, np.intp)
    for i, (rank, low) in enumerate(zip(above_ranks, low_side, strict=True)):
        beyond = (rank + 1) / SAMPLE_STEP if low else (n - below_ranks[i]) / SAMPLE_STEP  # sample pixels expected
        reach = int(np.ceil(beyond + MARGIN_SIGMAS * np.sqrt(beyond + 1)))
        sample_ranks[i] = min(reach, sample.size - 1) if low else max(sample.size - 1 - reach, 0)
    thresholds = np.partition(sample, np.unique(sample_ranks))[sample_ranks]
    below, above = np.empty(q.size, x.dtype), np.empty(q.size, x.dtype)
    for i, (threshold, low) in enumerate(zip(thresholds, low_side, strict=True)):
        # every pixel left out lies beyond the threshold, so ranks inside the gathered side are the array's
        side = x[x <= threshold] if low else x[x >= threshold]
        offset = 0 if low else n - side.size
        first, second = below_ranks[i] - offset, above_ranks[i] - offset
        if first < 0 or second >= side.size:  # the sample missed the rank (or NaNs hide elsewhere)
            return np.percentile(values, percentiles)
        ordered = np.partition(side, [first, second])
        below[i], above[i] = ordered[first], ordered[second]
    if np.isnan(x.max()):  # a NaN the sample did not hold: checked last, once the cheap path is done
        return np.percentile(values, percentiles)
    # numpy's _lerp, step for step: float32 differences, float64 weights
    difference = above - below
    result = np.add(below, difference * gamma)
    np.subtract(above, difference * (1 - gamma), out=result, where=gamma >= 0.5)
    return result
