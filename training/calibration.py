"""Calibration on the validation split: temperature scaling and the two operating points.

* temperature T minimises the validation negative log-likelihood of sigmoid(logit / T)
  (one T shared by all patterns; scipy bounded scalar minimisation);
* "possible" threshold: sensitivity >= the target (0.95), placed in the gap above the
  negatives it lets through (``possible_threshold``);
* "definite" threshold: the lowest threshold keeping specificity >= the target (0.98).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from calcdx.training.metrics import sigmoid


def _nll(logits: np.ndarray, labels: np.ndarray, t: float) -> float:
    z = logits / t
    # log(1 + exp(-|z|)) + max(z, 0) - y z
    return float(np.mean(np.logaddexp(0.0, z) - labels * z))


def fit_temperature(logits: np.ndarray, labels: np.ndarray,
                    bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature minimising the binary NLL of ``logits[N, C]`` against ``labels[N, C]``."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if logits.size == 0:
        return 1.0
    res = minimize_scalar(lambda lt: _nll(logits, labels, float(np.exp(lt))),
                          bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded")
    return float(np.exp(res.x))


def threshold_for_sensitivity(y: np.ndarray, p: np.ndarray, target: float) -> float:
    """Largest threshold t with sensitivity(p >= t) >= target (0.5 if no positives)."""
    y = np.asarray(y).astype(bool)
    pos = np.sort(np.asarray(p, dtype=np.float64)[y])
    if pos.size == 0:
        return 0.5
    k = int(np.floor((1.0 - target) * pos.size + 1e-9))  # positives we may miss
    return float(pos[min(k, pos.size - 1)])


def possible_threshold(y: np.ndarray, p: np.ndarray, target: float) -> float:
    """The "possible" point: sensitivity >= target, as low as it can go without calling one more
    validation negative.

    ``threshold_for_sensitivity`` is moved down through the positives that lie above every
    lower-scoring negative, into the middle (in logit space) of the gap between the highest such
    negative and the lowest such positive.  Validation specificity is unchanged and sensitivity
    rises; when positives and negatives separate completely (a pattern at AUROC 1) the point no
    longer sits on the 5th percentile of the positives, where it missed 5 % of them for nothing.
    """
    t = threshold_for_sensitivity(y, p, target)
    y = np.asarray(y).astype(bool)
    scores = np.asarray(p, dtype=np.float64)
    below = scores[~y][scores[~y] < t]
    if not y.any() or below.size == 0:  # no negative below t: nothing to gain on validation
        return t
    floor = float(below.max())
    lowest_pos = float(scores[y][scores[y] > floor].min())
    lo, hi = np.clip([floor, lowest_pos], 1e-7, 1.0 - 1e-7)
    mid = float(sigmoid((np.log(lo / (1 - lo)) + np.log(hi / (1 - hi))) / 2.0))
    return float(min(max(mid, np.nextafter(floor, np.inf)), lowest_pos))


def threshold_for_specificity(y: np.ndarray, p: np.ndarray, target: float) -> float:
    """Smallest threshold t with specificity(p >= t) >= target (0.5 if no negatives)."""
    y = np.asarray(y).astype(bool)
    neg = np.sort(np.asarray(p, dtype=np.float64)[~y])
    if neg.size == 0:
        return 0.5
    k = int(np.ceil(target * neg.size - 1e-9))  # negatives that must fall below t
    if k <= 0:
        return float(neg[0])
    if k >= neg.size:
        return float(min(1.0, np.nextafter(neg[-1], np.inf)))
    return float(np.nextafter(neg[k - 1], np.inf)) if neg[k] == neg[k - 1] else float(neg[k])


def operating_points(labels: np.ndarray, probs: np.ndarray, classes: Sequence[str], *,
                     sensitivity: float = 0.95, specificity: float = 0.98) -> dict[str, dict[str, float]]:
    """{class: {"possible": t_sens, "definite": t_spec}} on calibrated probabilities.

    "definite" is never below "possible", nor below the largest threshold keeping the
    sensitivity target (``threshold_for_sensitivity``).
    """
    out: dict[str, dict[str, float]] = {}
    for c, name in enumerate(classes):
        possible = possible_threshold(labels[:, c], probs[:, c], sensitivity)
        definite = threshold_for_specificity(labels[:, c], probs[:, c], specificity)
        # never below the largest threshold that keeps the sensitivity target: where the classes
        # separate completely the two points stay apart (possible in the gap, definite above it)
        out[name] = {"possible": possible,
                     "definite": max(definite, threshold_for_sensitivity(labels[:, c], probs[:, c], sensitivity))}
    return out


def calibrate(logits: np.ndarray, labels: np.ndarray, classes: Sequence[str], *, sensitivity: float = 0.95,
              specificity: float = 0.98) -> tuple[float, dict[str, dict[str, float]]]:
    """(temperature, thresholds) from validation logits and labels."""
    t = fit_temperature(logits, labels)
    probs = sigmoid(np.asarray(logits) / t)
    return t, operating_points(np.asarray(labels), probs, classes, sensitivity=sensitivity,
                               specificity=specificity)


def fit_temperature_and_bias(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """One temperature T and per-class offsets b minimising the validation NLL of
    ``sigmoid((logit - b) / T)``.

    The offsets undo the prior shift of class-balanced training (positive weights move every
    logit of a class by about ``log(pos_weight)``), which one temperature cannot.  Fold ``b``
    into the classifier bias (``fold_offsets``) so the card keeps a single temperature.
    """
    from scipy.optimize import minimize

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    n_classes = z.shape[1]

    def nll(params: np.ndarray) -> float:
        t = float(np.exp(params[0]))
        u = (z - params[1:]) / t
        return float(np.mean(np.logaddexp(0.0, u) - y * u))

    x0 = np.concatenate([[0.0], np.zeros(n_classes)])
    res = minimize(nll, x0, method="L-BFGS-B",
                   bounds=[(np.log(0.05), np.log(20.0))] + [(-20.0, 20.0)] * n_classes)
    return float(np.exp(res.x[0])), np.asarray(res.x[1:], dtype=np.float64)
