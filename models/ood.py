"""Out-of-distribution score: class-conditional Mahalanobis distance of the pooled features.

Fitted on training-set features (``fit_ood``), stored in the model card's ``ood`` field,
applied at inference (``ood_score``): a distance above ``card.ood["threshold"]`` flags an
image unlike the training data, e.g. a chest radiograph given to a musculoskeletal model.

One Gaussian per label group ("negative" and each pattern with enough training images), each
with its own Ledoit–Wolf shrunk covariance; the score is the Mahalanobis distance to the
nearest group (class-conditional, after Lee et al., NeurIPS 2018).  A single Gaussian around
all training images put heavy disease far from the mean: on the shipped model's test set every
image it flagged was a positive, most of them thighs full of calcinosis universalis, while the
shifted-acquisition set was flagged hardly more often.  Group means with a shared covariance
halved that; own covariances (a calcinosis group varies far more than the negatives) removed it
(docs/model.md has the figures).

The threshold is a percentile of the scores of *held-out* images (the validation split):
scores of the images the statistics were fitted on are optimistically small, so a threshold
taken from them declines too many ordinary images.

Two bands, not one cut: above ``threshold`` an image is still analysed but flagged low
confidence; only above ``refuse_threshold`` (``REFUSE_FACTOR`` x ``threshold`` unless the card
says otherwise) is it declined.  A percentile of in-distribution scores marks the edge of the
training data, not the point where the model stops working: on the stage-4 shipped model the
99th percentile is 7.6, a thigh full of calcinosis universalis scores 7.8-8.2 and is read
correctly, the acquisition-shifted test set (kVp, dose, blur, spacing outside training; macro
AUROC 0.940) has 77 of 400 images above 7.6 but 1 above 15.2, and a chest radiograph scores 27.7.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MIN_GROUP_IMAGES = 10
"""A label group needs this many training images to get its own mean."""

REFUSE_FACTOR = 2.0
"""Default refusal distance as a multiple of the (low-confidence) threshold."""


def _groups(labels: np.ndarray | None, n: int, class_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Index arrays per label group: ``negative`` (no label) and each class with enough images."""
    if labels is None:
        return {"all": np.arange(n)}
    y = np.asarray(labels) > 0.5
    groups = {"negative": np.flatnonzero(~y.any(axis=1))}
    for k, name in enumerate(class_names):
        groups[str(name)] = np.flatnonzero(y[:, k])
    return {g: idx for g, idx in groups.items() if len(idx) >= MIN_GROUP_IMAGES} or {"all": np.arange(n)}


def fit_ood(features: np.ndarray, labels: np.ndarray | None = None, *, class_names: Sequence[str] = (),
            percentile: float = 99.0, held_out: np.ndarray | None = None) -> dict[str, Any]:
    """Fit a mean and a (Ledoit–Wolf shrunk) precision per label group on ``features[N, F]``.

    ``labels[N, C]`` (binary, columns named by ``class_names``) define the groups; without them
    one Gaussian is fitted.  The threshold is the ``percentile`` of the scores of ``held_out[M, F]``
    (in-distribution images not used for the fit), or of ``features`` when none are given.

    Returns the dict for ``ModelCard.ood``.
    """
    from sklearn.covariance import LedoitWolf

    feats = np.asarray(features, dtype=np.float64)
    if labels is not None and len(class_names) != np.asarray(labels).shape[1]:
        raise ValueError(f"{len(class_names)} class names for {np.asarray(labels).shape[1]} label columns")
    groups = _groups(labels, len(feats), class_names)
    fitted = {g: LedoitWolf().fit(feats[idx]) for g, idx in groups.items()}
    reference = feats if held_out is None or len(held_out) == 0 else np.asarray(held_out, dtype=np.float64)
    stats: dict[str, Any] = {
        "method": "mahalanobis, class-conditional" if labels is not None else "mahalanobis",
        "dim": int(feats.shape[1]),
        "n": int(feats.shape[0]),
        "groups": {g: len(idx) for g, idx in groups.items()},
        "threshold_from": "training images" if reference is feats else f"{len(reference)} held-out images",
        "percentile": float(percentile),
        "means": {g: _rounded(lw.location_) for g, lw in fitted.items()},
        "precisions": {g: _rounded(lw.precision_) for g, lw in fitted.items()},
    }
    stats["threshold"] = float(np.percentile(ood_score(reference, stats), percentile))
    stats["refuse_threshold"] = REFUSE_FACTOR * stats["threshold"]
    return stats


def _rounded(values: np.ndarray) -> list[Any]:
    return np.vectorize(lambda v: float(f"{v:.6g}"), otypes=[float])(values).tolist()


def _mahalanobis(feats: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    d = feats - mean
    return np.sqrt(np.maximum(np.einsum("nf,fg,ng->n", d, precision, d), 0.0))


def ood_score(features: np.ndarray, ood: dict[str, Any]) -> np.ndarray:
    """Distance to the nearest group per row of ``features[N, F]`` (or ``[F]``); NaN if no stats.

    Cards written before per-group statistics (one ``mean`` and ``precision``) are scored too.
    """
    feats = np.atleast_2d(np.asarray(features, dtype=np.float64))
    if ood and "means" in ood:
        pairs = [(ood["means"][g], ood["precisions"][g]) for g in ood["means"]]
    elif ood and "mean" in ood:
        pairs = [(ood["mean"], ood["precision"])]
    else:
        return np.full(feats.shape[0], np.nan)
    return np.min([_mahalanobis(feats, *_as_arrays(m, p)) for m, p in pairs], axis=0)


_ARRAYS: dict[tuple[int, int], tuple[Any, Any, np.ndarray, np.ndarray]] = {}


def _as_arrays(mean: Any, precision: Any) -> tuple[np.ndarray, np.ndarray]:
    """A card's JSON lists as float64 arrays, converted once per list object (cards live as long as the run)."""
    key = (id(mean), id(precision))
    hit = _ARRAYS.get(key)
    if hit is None or hit[0] is not mean or hit[1] is not precision:
        if len(_ARRAYS) > 256:
            _ARRAYS.clear()
        hit = _ARRAYS[key] = (mean, precision, np.asarray(mean, dtype=np.float64), np.asarray(precision, np.float64))
    return hit[2], hit[3]


def thresholds(ood: dict[str, Any]) -> tuple[float, float]:
    """``(low-confidence threshold, refusal threshold)`` of a card's ``ood`` field (inf, inf without stats)."""
    if not ood or "threshold" not in ood:
        return np.inf, np.inf
    low = float(ood["threshold"])
    return low, float(ood.get("refuse_threshold", REFUSE_FACTOR * low))


def is_ood(features: np.ndarray, ood: dict[str, Any]) -> np.ndarray:
    """Boolean per row: distance above the card's (low-confidence) threshold (False when no stats)."""
    return np.nan_to_num(ood_score(features, ood), nan=-np.inf) > thresholds(ood)[0]


def is_refused(features: np.ndarray, ood: dict[str, Any]) -> np.ndarray:
    """Boolean per row: distance above the card's refusal threshold (False when no stats)."""
    return np.nan_to_num(ood_score(features, ood), nan=-np.inf) > thresholds(ood)[1]
