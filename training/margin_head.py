"""The HADD margin head's labels, metrics and training run (``calcdx train-head margin``).

A lesion's label is its annotation's ``margin`` (``well_defined`` / ``ill_defined``) where given, else
what its simulated HADD ``variant`` implies (formative/resting: well defined; resorptive: ill defined).
Training weights the classes to balance, so the raw outputs are Platt-scaled on the validation manifest
(``fit_platt``) to be probabilities; the threshold balances the two classes' accuracy there (Youden's J).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve

from calcdx.datasets.manifest import ManifestRow
from calcdx.inference.crop_head import HeadCard
from calcdx.inference.margin import CROP_SPACING_MM, FIELD_MM, calibrated
from calcdx.training.crop_head import card_training, outputs, save_head, train_crop_net, training_and_validation_crops
from calcdx.training.finding_accuracy import EXPECTED_MARGIN

logger = logging.getLogger(__name__)

CLASSES = ["well_defined", "ill_defined"]
"""Label indices: 1 is the head's one output ("ill defined")."""


def lesion_margin(record: dict[str, Any]) -> str | None:
    """``well_defined`` / ``ill_defined`` for a labelled lesion, None when the record says neither."""
    margin = record.get("margin")
    if margin is None and record.get("kind") == "hadd":
        margin = EXPECTED_MARGIN.get(str(record.get("variant")))
    return str(margin) if margin in CLASSES else None


def balanced_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The threshold that maximises the mean of both classes' accuracy (Youden's J)."""
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    best = int(np.argmax(tpr - fpr))
    return float(min(max(thresholds[best], 1e-6), 1.0))


def margin_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float | int]:
    """AUROC, balanced accuracy and per-class accuracy at ``threshold`` (labels: 1 ill defined)."""
    ill = labels >= 0.5
    called_ill = probabilities >= threshold
    ill_right = float((called_ill & ill).sum() / max(ill.sum(), 1))
    well_right = float((~called_ill & ~ill).sum() / max((~ill).sum(), 1))
    both = ill.any() and (~ill).any()
    return {"auroc": round(float(roc_auc_score(labels, probabilities)), 4) if both else float("nan"),
            "balanced_accuracy": round((ill_right + well_right) / 2, 4), "ill_defined_accuracy": round(ill_right, 4),
            "well_defined_accuracy": round(well_right, 4), "ill_defined": int(ill.sum()),
            "well_defined": int((~ill).sum()), "brier": round(float(brier_score_loss(ill, probabilities)), 4)}


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Platt scaling of ``logits`` to ``labels`` (1: ill defined): training weighted the classes to balance,
    so raw sigmoids overstate "ill defined"; the fitted scale and offset make them probabilities."""
    model = LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(logits, np.float64)[:, None], labels >= 0.5)
    return {"scale": round(float(model.coef_[0, 0]), 6), "offset": round(float(model.intercept_[0]), 6)}


def probabilities_ill_defined(net: Any, crops: np.ndarray, calibration: dict[str, float] | None = None) -> np.ndarray:
    """Probability of "ill defined" per crop (calibrated with ``calibration``, see ``fit_platt``)."""
    return calibrated(outputs(net, crops), calibration or {})


def train_margin_head(train_rows: Sequence[ManifestRow], val_rows: Sequence[ManifestRow], out_dir: str | Path, *,
                      epochs: int = 20, width: int = 8, seed: int = 0, per_lesion: int = 4,
                      provenance: dict[str, Any] | None = None,
                      log: Callable[[str], None] = logger.info) -> tuple[Path, dict[str, Any]]:
    """Collect crops, train, choose the threshold on ``val_rows`` and save; returns the folder and the
    validation metrics."""
    train, val = training_and_validation_crops(train_rows, val_rows, lesion_margin, CLASSES, field_mm=FIELD_MM,
                                               crop_spacing_mm=CROP_SPACING_MM, per_lesion=per_lesion, seed=seed,
                                               log=log)
    net = train_crop_net(train, 1, any_orientation=True, epochs=epochs, width=width, seed=seed, log=log)
    calibration = fit_platt(outputs(net, val.crops), val.labels)
    probabilities = probabilities_ill_defined(net, val.crops, calibration)
    threshold = balanced_threshold(val.labels, probabilities)
    metrics = {"crops": margin_metrics(val.labels, probabilities, threshold),
               "centred_crops": margin_metrics(val.labels[::per_lesion], probabilities[::per_lesion], threshold),
               "lesions": val.lesions}
    card = HeadCard(name="calcdx-hadd-margin", version="1", task="margin", width=width, field_mm=FIELD_MM,
                    crop_spacing_mm=CROP_SPACING_MM, classes=["ill_defined"], threshold=round(threshold, 6),
                    calibration=calibration,
                    training=card_training(train, epochs, seed, provenance), validation=metrics,
                    intended_use="The margin (well / ill defined) of HADD findings; trained and validated on "
                                 "the calcdx simulator only. Research software, not a medical device.")
    return save_head(out_dir, net, card), metrics
