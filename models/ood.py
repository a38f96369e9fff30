"""Out-of-distribution score: Mahalanobis distance of the pooled features.

Fitted on training-set features (``fit_ood``), stored in the model card's ``ood`` field,
applied at inference (``ood_score``): a distance above ``card.ood["threshold"]`` flags an
image unlike the training data, e.g. a chest radiograph given to a musculoskeletal model.
The threshold is a percentile of the distances of *held-out* images (the validation split):
distances of the images the statistics were fitted on are optimistically small (with 48
features and a few hundred images, by ~10 %), so a threshold taken from them declines too
many ordinary images.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def fit_ood(features: np.ndarray, *, percentile: float = 99.0, held_out: np.ndarray | None = None
            ) -> dict[str, Any]:
    """Fit mean and (Ledoit–Wolf shrunk) precision on ``features[N, F]``; the threshold is the
    ``percentile`` of the distances of ``held_out[M, F]`` (in-distribution images not used for
    the fit), or of ``features`` when none are given.

    Returns the dict for ``ModelCard.ood``.
    """
    from sklearn.covariance import LedoitWolf

    feats = np.asarray(features, dtype=np.float64)
    lw = LedoitWolf().fit(feats)
    mean = lw.location_
    precision = lw.precision_
    reference = feats if held_out is None or len(held_out) == 0 else np.asarray(held_out, dtype=np.float64)
    dist = _mahalanobis(reference, mean, precision)
    return {
        "method": "mahalanobis",
        "dim": int(feats.shape[1]),
        "n": int(feats.shape[0]),
        "threshold_from": "training images" if reference is feats else f"{len(reference)} held-out images",
        "percentile": float(percentile),
        "threshold": float(np.percentile(dist, percentile)),
        "mean": [float(f"{v:.6g}") for v in mean],
        "precision": [[float(f"{v:.6g}") for v in row] for row in precision],
    }


def _mahalanobis(feats: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    d = feats - mean
    return np.sqrt(np.maximum(np.einsum("nf,fg,ng->n", d, precision, d), 0.0))


def ood_score(features: np.ndarray, ood: dict[str, Any]) -> np.ndarray:
    """Mahalanobis distance per row of ``features[N, F]`` (or ``[F]``); NaN if no stats."""
    feats = np.atleast_2d(np.asarray(features, dtype=np.float64))
    if not ood or "mean" not in ood:
        return np.full(feats.shape[0], np.nan)
    return _mahalanobis(feats, np.asarray(ood["mean"]), np.asarray(ood["precision"]))


def is_ood(features: np.ndarray, ood: dict[str, Any]) -> np.ndarray:
    """Boolean per row: distance above the card's threshold (False when no stats)."""
    score = ood_score(features, ood)
    thr = float(ood.get("threshold", np.inf)) if ood else np.inf
    return np.nan_to_num(score, nan=-np.inf) > thr
