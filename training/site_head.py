"""The HADD site head's labels, metrics and training run (``calcdx train-head site``).

A lesion's label is the ``site`` of a HADD lesion's annotation (the simulator writes the tendon:
"supraspinatus tendon", "gluteus medius tendon", ...).  The classes a body part can hold are those seen
with it in training.  The threshold is the least probability at which the named tendon was right at
least ``TARGET_PRECISION`` of the time on the validation manifest; below it a finding keeps the generic
site of its body part.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from calcdx.datasets.manifest import ManifestRow, load_annotations
from calcdx.errors import CalcdxError
from calcdx.inference.crop_head import HeadCard
from calcdx.inference.findings import CPPD_TENDON
from calcdx.inference.site import CROP_SPACING_MM, FIELD_MM, allowed_mask, masked_softmax
from calcdx.training.crop_head import (
    Crops,
    card_training,
    outputs,
    save_head,
    train_crop_net,
    training_and_validation_crops,
)

logger = logging.getLogger(__name__)

TARGET_PRECISION = 0.9
"""A named tendon must be right at least this often on validation."""


def lesion_site(record: dict[str, Any]) -> str | None:
    """The tendon of a HADD lesion, None for other lesions or a HADD lesion without a site."""
    site = record.get("site")
    return str(site) if record.get("kind") == "hadd" and site else None


def lesion_cppd_site(record: dict[str, Any]) -> str | None:
    """Where a CPPD lesion lies: ``tendon`` for one in a tendon (location class ``tendon``), else its
    cartilage ``site`` (hyaline cartilage, meniscus, ...); None for other lesions."""
    if record.get("kind") != "cppd":
        return None
    if record.get("location_class") == "tendon":
        return CPPD_TENDON
    site = record.get("site")
    return str(site) if site else None


def site_classes(rows: Sequence[ManifestRow], label_of: Callable[[dict[str, Any]], str | None] = lesion_site
                 ) -> list[str]:
    """Every site ``label_of`` gives in the annotations of ``rows``, sorted."""
    names: set[str] = set()
    for row in rows:
        if row.annotations is None:
            continue
        try:
            names.update(s for s in map(label_of, load_annotations(row.annotations)) if s)
        except CalcdxError:
            continue
    return sorted(names)


def site_probabilities(net: Any, crops: Crops, classes: list[str], by_body_part: dict[str, list[str]]) -> np.ndarray:
    """[N, K] probabilities over the classes each crop's body part can hold (zero elsewhere)."""
    logits = np.asarray(outputs(net, crops.crops), np.float64).reshape(len(crops.crops), len(classes))
    return masked_softmax(logits, allowed_mask(classes, by_body_part, crops.body_parts))


def precision_threshold(right: np.ndarray, confidence: np.ndarray, target: float = TARGET_PRECISION) -> float:
    """The least confidence at which the calls at or above it are right at least ``target`` of the time
    (1.0, never naming, when no confidence reaches it)."""
    order = np.argsort(-confidence)
    precision = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    ok = np.nonzero(precision >= target)[0]
    return float(confidence[order][ok.max()]) if ok.size else 1.0


def site_metrics(crops: Crops, probabilities: np.ndarray, threshold: float) -> dict[str, Any]:
    """Top-1 accuracy overall and per body part, and precision and coverage of the named calls."""
    predicted = probabilities.argmax(1)
    confidence = probabilities.max(1)
    right = predicted == crops.labels
    named = confidence >= threshold
    per_body: dict[str, list[bool]] = defaultdict(list)
    for body, ok in zip(crops.body_parts, right, strict=True):
        per_body[body].append(bool(ok))
    return {"accuracy": round(float(right.mean()), 4), "named_share": round(float(named.mean()), 4),
            "named_precision": round(float(right[named].mean()), 4) if named.any() else None,
            "per_body_part": {b: {"n": len(v), "accuracy": round(float(np.mean(v)), 4)}
                              for b, v in sorted(per_body.items())}}


def train_site_head(train_rows: Sequence[ManifestRow], val_rows: Sequence[ManifestRow], out_dir: str | Path, *,
                    epochs: int = 20, width: int = 8, seed: int = 0, per_lesion: int = 4,
                    provenance: dict[str, Any] | None = None, pattern: str = "hadd",
                    log: Callable[[str], None] = logger.info) -> tuple[Path, dict[str, Any]]:
    """Collect crops, train, choose the threshold on ``val_rows`` and save; returns the folder and the
    validation metrics.  ``pattern``: ``hadd`` (the tendon) or ``cppd`` (cartilage site or tendon)."""
    label_of = lesion_cppd_site if pattern == "cppd" else lesion_site
    classes = site_classes(train_rows, label_of)
    train, val = training_and_validation_crops(train_rows, val_rows, label_of, classes, field_mm=FIELD_MM,
                                               crop_spacing_mm=CROP_SPACING_MM, per_lesion=per_lesion, seed=seed,
                                               log=log)
    by_body: dict[str, set[str]] = defaultdict(set)
    for body, label in zip(train.body_parts, train.labels, strict=True):
        if body:
            by_body[body].add(classes[int(label)])
    by_body_part = {b: sorted(v) for b, v in sorted(by_body.items())}
    net = train_crop_net(train, len(classes), allowed=allowed_mask(classes, by_body_part, train.body_parts),
                         any_orientation=False, epochs=epochs, width=width, seed=seed, log=log)
    probabilities = site_probabilities(net, val, classes, by_body_part)
    right = probabilities.argmax(1) == val.labels
    threshold = precision_threshold(right, probabilities.max(1))
    centred = Crops(val.crops[::per_lesion], val.labels[::per_lesion], val.lesion_ids[::per_lesion],
                    val.body_parts[::per_lesion], ())
    metrics = {"crops": site_metrics(val, probabilities, threshold),
               "centred_crops": site_metrics(centred, probabilities[::per_lesion], threshold),
               "lesions": val.lesions, "target_precision": TARGET_PRECISION}
    what = "cartilage site or tendon of CPPD findings" if pattern == "cppd" else "tendon of HADD findings"
    card = HeadCard(name=f"calcdx-{pattern}-site", version="1", task="cppd_site" if pattern == "cppd" else "site",
                    width=width, field_mm=FIELD_MM, crop_spacing_mm=CROP_SPACING_MM, classes=classes,
                    threshold=round(threshold, 6), classes_by_body_part=by_body_part,
                    training=card_training(train, epochs, seed, provenance), validation=metrics,
                    intended_use=f"The {what}; trained and validated on the calcdx simulator's phantoms only. "
                                 "Research software, not a medical device.")
    return save_head(out_dir, net, card), metrics
