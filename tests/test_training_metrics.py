"""Metrics, temperature scaling and operating points on synthetic scores with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from calcdx.training.calibration import (
    calibrate,
    fit_temperature,
    operating_points,
    possible_threshold,
    threshold_for_sensitivity,
    threshold_for_specificity,
)
from calcdx.training.losses import balanced_pos_weight
from calcdx.training.metrics import bootstrap_auroc, compute_metrics, expected_calibration_error, sens_spec, sigmoid


def _scores(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < [0.2, 0.5, 0.05]).astype(float)
    z = np.where(y > 0, 1.5, -1.5) + rng.standard_normal(y.shape)
    return y, z


def test_temperature_recovers_a_known_scale() -> None:
    y, z = _scores()
    # the true log-odds of this mixture are 3 z (+ prior): logits 3 z / T are calibrated at T = 1
    t = fit_temperature(3 * z * 2.0, y)
    assert t == pytest.approx(2.0, rel=0.1)


def test_calibration_lowers_ece() -> None:
    rng = np.random.default_rng(5)
    true_logit = rng.normal(0.0, 2.0, size=(5000, 3))
    y = (rng.random(true_logit.shape) < sigmoid(true_logit)).astype(float)
    overconfident = 3 * true_logit
    raw = expected_calibration_error(y, sigmoid(overconfident))
    t, _ = calibrate(overconfident, y, ["a", "b", "c"])
    assert t == pytest.approx(3.0, rel=0.1)
    assert expected_calibration_error(y, sigmoid(overconfident / t)) < raw / 2


def test_ece_of_perfectly_calibrated_scores_is_small() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(200_000)
    y = (rng.random(p.size) < p).astype(float)
    assert expected_calibration_error(y, p) < 0.01
    assert expected_calibration_error(y, np.clip(p + 0.2, 0, 1)) > 0.1


def test_operating_points_reach_their_targets() -> None:
    y, z = _scores(seed=2)
    p = sigmoid(z)
    ops = operating_points(y, p, ["a", "b", "c"], sensitivity=0.95, specificity=0.98)
    for c, name in enumerate("abc"):
        sens, _ = sens_spec(y[:, c], p[:, c], ops[name]["possible"])
        _, spec = sens_spec(y[:, c], p[:, c], ops[name]["definite"])
        assert sens >= 0.95
        assert spec >= 0.98
        assert ops[name]["definite"] >= ops[name]["possible"]
    # exact on a tiny example: positives 0.2 0.4 0.6 0.8 -> keep 3 of 4 (75 %) at t = 0.4
    assert threshold_for_sensitivity(np.array([1, 1, 1, 1]), np.array([0.2, 0.4, 0.6, 0.8]), 0.75) == 0.4
    # one negative at 0.3 below them: the point moves down into the gap (0.3, 0.4), not past 0.3
    t = possible_threshold(np.array([1, 1, 1, 1, 0]), np.array([0.2, 0.4, 0.6, 0.8, 0.3]), 0.75)
    assert 0.3 < t < 0.4
    # negatives 0.1 0.2 0.3 0.9: 75 % specificity needs t > 0.3
    t = threshold_for_specificity(np.array([0, 0, 0, 0]), np.array([0.1, 0.2, 0.3, 0.9]), 0.75)
    assert 0.3 < t <= 0.9


def test_possible_point_of_a_perfectly_separated_pattern_keeps_every_validation_positive() -> None:
    rng = np.random.default_rng(4)
    neg, pos = rng.uniform(0.0, 0.2, 500), rng.uniform(0.6, 1.0, 50)
    y, p = np.r_[np.zeros(500), np.ones(50)], np.r_[neg, pos]
    t = possible_threshold(y, p, 0.95)
    assert neg.max() < t < pos.min()  # in the gap: every positive, no negative
    assert t == pytest.approx(sigmoid((np.log(neg.max() / (1 - neg.max())) + np.log(pos.min() / (1 - pos.min()))) / 2))
    ops = operating_points(y[:, None], p[:, None], ["a"], sensitivity=0.95, specificity=0.98)["a"]
    # "definite" stays where "possible" used to be: the 5th percentile of the positives (48 of 50)
    assert ops["possible"] == t and ops["definite"] == np.sort(pos)[2]


def test_compute_metrics_matches_sklearn_and_handles_single_class() -> None:
    y, z = _scores(seed=3)
    y[:, 2] = 0  # a class without positives
    p = sigmoid(z)
    m = compute_metrics(y, p, ["a", "b", "c"], {"a": {"possible": 0.3, "definite": 0.9}})
    assert m["per_class"]["a"]["auroc"] == pytest.approx(roc_auc_score(y[:, 0], p[:, 0]))
    assert np.isnan(m["per_class"]["c"]["auroc"])
    assert m["macro_auroc"] == pytest.approx(np.mean([m["per_class"][k]["auroc"] for k in "ab"]))
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert "possible_sensitivity" in m["per_class"]["a"]


def test_balanced_pos_weight() -> None:
    y = np.array([[1, 0], [0, 0], [0, 0], [0, 1]], float)
    assert balanced_pos_weight(y).tolist() == [3.0, 3.0]
    assert balanced_pos_weight(np.zeros((4, 2))).tolist() == [1.0, 1.0]
    assert balanced_pos_weight(np.eye(100)[:, :1], cap=10).tolist() == [10.0]


def test_temperature_and_offsets_undo_a_prior_shift() -> None:
    import torch

    from calcdx.models import create_model
    from calcdx.training.calibration import fit_temperature_and_bias
    from calcdx.training.trainer import fold_offsets

    rng = np.random.default_rng(7)
    true_logit = rng.normal(-1.0, 2.0, size=(6000, 2))
    y = (rng.random(true_logit.shape) < sigmoid(true_logit)).astype(float)
    shifted = 1.5 * true_logit + np.array([2.0, -1.0])  # class-weighting shift + overconfidence
    t, b = fit_temperature_and_bias(shifted, y)
    assert t == pytest.approx(1.5, rel=0.1)
    assert b == pytest.approx([2.0, -1.0], abs=0.2)
    assert expected_calibration_error(y, sigmoid((shifted - b) / t)) < 0.02
    model = create_model("tiny", num_classes=2).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        before = model(x)
        fold_offsets(model, np.array([1.0, -0.5]))
        after = model(x)
    assert torch.allclose(after.logits, before.logits - torch.tensor([1.0, -0.5]), atol=1e-5)
    assert torch.allclose(after.maps, before.maps - torch.tensor([1.0, -0.5]).view(1, 2, 1, 1), atol=1e-5)


def test_bootstrap_intervals_cover_the_auroc_and_narrow_with_more_patients() -> None:
    rng = np.random.default_rng(0)
    classes = ["a", "b", "never"]

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.zeros((n, 3), dtype=np.float32)
        labels[:, :2] = rng.random((n, 2)) < 0.2
        probs = np.clip(0.3 * labels + 0.5 * rng.random((n, 3)), 0, 1)
        return labels, probs

    widths = []
    for n in (200, 2000):
        labels, probs = sample(n)
        ci = bootstrap_auroc(labels, probs, classes, [f"P{i}" for i in range(n)], n_resamples=300)
        for c, name in enumerate(classes[:2]):
            low, high = ci["per_class"][name]
            assert low <= roc_auc_score(labels[:, c], probs[:, c]) <= high
        assert ci["per_class"]["never"] is None  # no positives: no AUROC, no interval
        low, high = ci["macro_auroc"]
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # ~1/sqrt(10) of the width


def test_bootstrap_resamples_patients_not_images() -> None:
    """Ten copies of each patient's image must not look like ten times the evidence."""
    rng = np.random.default_rng(1)
    n = 100
    labels = (rng.random((n, 1)) < 0.3).astype(np.float32)
    probs = np.clip(0.3 * labels + 0.6 * rng.random((n, 1)), 0, 1)
    patients = [f"P{i}" for i in range(n)]
    once = bootstrap_auroc(labels, probs, ["a"], patients, n_resamples=400, seed=2)["macro_auroc"]
    tenfold = bootstrap_auroc(np.repeat(labels, 10, 0), np.repeat(probs, 10, 0), ["a"],
                              [p for p in patients for _ in range(10)], n_resamples=400, seed=2)["macro_auroc"]
    assert tenfold[1] - tenfold[0] == pytest.approx(once[1] - once[0], rel=0.25)
