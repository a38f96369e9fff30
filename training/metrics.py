"""Metrics (scikit-learn): per-pattern AUROC, AP, sensitivity / specificity at the operating
points, expected calibration error and Brier score."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def ratio_spread(ratios: Sequence[float]) -> dict[str, float]:
    """Median, 10th and 90th percentile and the standard deviation of the log of found/true ratios (a
    ratio of 0 counts as 1e-6 in the log); how the extent head and ``calcdx score`` summarise a measurement."""
    arr = np.asarray(ratios, dtype=np.float64)
    return {"median": round(float(np.median(arr)), 3), "p10": round(float(np.percentile(arr, 10)), 3),
            "p90": round(float(np.percentile(arr, 90)), 3),
            "log_sd": round(float(np.log(np.maximum(arr, 1e-6)).std()), 3)}


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> float:
    """ECE with equal-width bins over all (image, class) probabilities pooled.

    Sum over bins of (bin fraction) * |mean label - mean probability|.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.size == 0:
        return float("nan")
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            ece += sel.mean() * abs(y[sel].mean() - p[sel].mean())
    return float(ece)


def reliability_curve(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> dict[str, list[float]]:
    """Per-bin mean probability, observed frequency and count (pooled over classes)."""
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    out: dict[str, list[float]] = {"mean_probability": [], "frequency": [], "count": []}
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            out["mean_probability"].append(float(p[sel].mean()))
            out["frequency"].append(float(y[sel].mean()))
            out["count"].append(float(sel.sum()))
    return out


def sens_spec(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[float, float]:
    """(sensitivity, specificity) of ``p >= threshold``; NaN where undefined."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(p) >= threshold
    sens = float((pred & y).sum() / y.sum()) if y.any() else float("nan")
    spec = float((~pred & ~y).sum() / (~y).sum()) if (~y).any() else float("nan")
    return sens, spec


def compute_metrics(labels: np.ndarray, probs: np.ndarray, classes: Sequence[str],
                    thresholds: Mapping[str, Mapping[str, float]] | None = None,
                    n_bins: int = 15) -> dict[str, Any]:
    """All metrics for calibrated probabilities ``probs[N, C]`` against ``labels[N, C]``.

    Returns a JSON-ready dict: ``per_class`` {name: {auroc, ap, prevalence, n_pos,
    sensitivity/specificity at each operating point}}, ``macro_auroc``, ``macro_ap``,
    ``ece``, ``brier``, ``n_images``.  AUROC/AP are NaN (JSON null) for a class
    without both positives and negatives.
    """
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    labels = np.asarray(labels, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    per: dict[str, Any] = {}
    aurocs, aps = [], []
    for c, name in enumerate(classes):
        y, p = labels[:, c], probs[:, c]
        entry: dict[str, Any] = {"n_pos": int(y.sum()),
                                 "prevalence": float(y.mean()) if y.size else float("nan")}
        if 0 < y.sum() < y.size:
            entry["auroc"] = float(roc_auc_score(y, p))
            entry["ap"] = float(average_precision_score(y, p))
            aurocs.append(entry["auroc"])
            aps.append(entry["ap"])
        else:
            entry["auroc"] = entry["ap"] = float("nan")
        entry["brier"] = float(brier_score_loss(y, p)) if y.size else float("nan")
        if thresholds and name in thresholds:
            for op, thr in thresholds[name].items():
                s, sp = sens_spec(y, p, float(thr))
                entry[f"{op}_threshold"] = float(thr)
                entry[f"{op}_sensitivity"] = s
                entry[f"{op}_specificity"] = sp
        per[name] = entry
    return {
        "n_images": int(labels.shape[0]),
        "macro_auroc": float(np.mean(aurocs)) if aurocs else float("nan"),
        "macro_ap": float(np.mean(aps)) if aps else float("nan"),
        "ece": expected_calibration_error(labels, probs, n_bins),
        "brier": float(np.mean((probs - labels) ** 2)) if labels.size else float("nan"),
        "per_class": per,
    }


def bootstrap_auroc(labels: np.ndarray, probs: np.ndarray, classes: Sequence[str], groups: Sequence[str],
                    n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Percentile bootstrap intervals of per-class and macro AUROC, resampling whole patients.

    Images of one patient are not independent, so ``groups`` (patient ids) are drawn with
    replacement and each brings all its images.  A resample in which a class lacks positives
    or negatives gives no AUROC for that class; a macro value is taken only from resamples in
    which every class that has an AUROC on the full set has one.

    Returns a JSON-ready dict: ``level``, ``n_resamples``, ``macro_auroc`` [low, high] and
    ``per_class`` {name: [low, high]} (null where the class has no AUROC).
    """
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    _, group_index = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    # each patient's image indices, in one sort (a comparison per patient was quadratic)
    order = np.argsort(group_index, kind="stable")
    members = np.split(order, np.cumsum(np.bincount(group_index))[:-1]) if len(groups) else []
    scorable = [c for c in range(len(classes)) if 0 < labels[:, c].sum() < labels.shape[0]]
    rng = np.random.default_rng(seed)
    values = np.full((n_resamples, len(classes)), np.nan)
    for b in range(n_resamples if members else 0):
        picked = rng.integers(0, len(members), size=len(members))
        index = np.concatenate([members[g] for g in picked])
        for c in scorable:
            y = labels[index, c]
            if 0 < y.sum() < y.size:
                values[b, c] = roc_auc_score(y, probs[index, c])
    tail = 100.0 * (1.0 - level) / 2.0

    def interval(samples: np.ndarray) -> list[float] | None:
        samples = samples[np.isfinite(samples)]
        if samples.size == 0:
            return None
        low, high = np.percentile(samples, [tail, 100.0 - tail])
        return [float(low), float(high)]

    complete = np.all(np.isfinite(values[:, scorable]), axis=1) if scorable else np.zeros(n_resamples, bool)
    macro = values[complete][:, scorable].mean(axis=1) if complete.any() else np.array([])
    return {
        "level": level,
        "n_resamples": n_resamples,
        "resampled": "patients",
        "macro_auroc": interval(macro),
        "per_class": {name: interval(values[:, c]) for c, name in enumerate(classes)},
    }
