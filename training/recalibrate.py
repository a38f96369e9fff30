"""Calibrate a saved model again on a labelled manifest (a site's own validation images).

The training run calibrates on its validation split; this does the same later, for a model that
moves to new data, or to place its operating points at other targets.  Nothing is trained: the
temperature and per-class logit offsets are refitted (offsets folded into the classifier bias,
as training does) or kept, and both operating points are placed again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from calcdx.datasets.manifest import manifest_sha256, read_manifest
from calcdx.datasets.torch_dataset import ManifestDataset
from calcdx.devices import resolve_device
from calcdx.errors import ConfigError
from calcdx.models.card import ModelCard
from calcdx.models.checkpoint import load_checkpoint, save_checkpoint
from calcdx.training.loop import evaluate
from calcdx.training.metrics import compute_metrics, sigmoid
from calcdx.training.trainer import _eval_loader, calibrate_model

logger = logging.getLogger(__name__)


DEFAULT_TARGETS: dict[str, float] = {"possible_sensitivity": 0.95, "definite_specificity": 0.98}


def card_targets(card: ModelCard) -> dict[str, float]:
    """The targets the card's operating points were placed at: its last recalibration's, else its
    training run's calibration config, else the defaults."""
    trained = (card.training_data.get("config") or {}).get("calibration") or {}
    last = card.training_data.get("recalibration") or {}
    return {k: float(last.get(k, trained.get(k, v))) for k, v in DEFAULT_TARGETS.items()}


def recalibrate_model(model_dir: str | Path, manifest: str | Path, out_dir: str | Path, *,
                      possible_sensitivity: float | None = None, definite_specificity: float | None = None,
                      refit_temperature: bool = True, device: str = "cpu", cache_dir: str | Path | None = None,
                      num_workers: int = 0) -> ModelCard:
    """Write ``out_dir/model.safetensors`` and a card calibrated on ``manifest``; returns the card.

    The new card's metrics are this manifest's (key ``validation``): test metrics of the source
    card no longer describe the new operating points and are dropped; run ``calcdx evaluate``.

    A target left at None is the source card's own (``card_targets``).

    Raises:
        ModelIntegrityError: the source model fails its checks.  ManifestError: bad manifest.
        ConfigError: a target outside (0, 1), a manifest without positives and negatives for a pattern, or a
            device that is not available (``device``: auto, cpu, cuda or cuda:N).
    """
    if Path(out_dir).resolve() == Path(model_dir).resolve():
        raise ConfigError(f"--out {out_dir} is the source model's folder: write the calibrated model elsewhere")
    device = str(resolve_device(device))
    loaded = load_checkpoint(model_dir, device=device)
    card, model = loaded.card, loaded.model
    targets = card_targets(card)
    possible_sensitivity = targets["possible_sensitivity"] if possible_sensitivity is None else possible_sensitivity
    definite_specificity = targets["definite_specificity"] if definite_specificity is None else definite_specificity
    for name, value in (("possible_sensitivity", possible_sensitivity), ("definite_specificity", definite_specificity)):
        if not 0.0 < value < 1.0:
            raise ConfigError(f'Argument "{name}" should be in (0, 1), got {value}')
    rows = read_manifest(manifest)
    classes = list(card.classes)
    positives = [sum(c in {p.value for p in row.labels} for row in rows) for c in classes]
    lacking = [c for c, n in zip(classes, positives, strict=True) if n in (0, len(rows))]
    if lacking:  # found before any image is read
        raise ConfigError(f"{manifest}: no positives or no negatives for {', '.join(lacking)}; "
                          "calibration needs both for every pattern")
    ds = ManifestDataset(rows, card.input_spacing_mm, size_px=None, use_masks=False, cache_dir=cache_dir)
    res = evaluate(model, _eval_loader(ds, num_workers), device=torch.device(device))
    labels, logits = res.labels, res.logits
    temperature, thresholds, logits = calibrate_model(
        model, logits, labels, classes, sensitivity=possible_sensitivity, specificity=definite_specificity,
        temperature=None if refit_temperature else card.temperature)
    metrics = compute_metrics(labels, sigmoid(logits / temperature), classes, thresholds)
    training_data: dict[str, Any] = dict(card.training_data)
    training_data["recalibration"] = {
        "source_weights_sha256": card.weights_sha256, "manifest": str(manifest),
        "manifest_sha256": manifest_sha256(manifest), "n_images": len(rows),
        "possible_sensitivity": possible_sensitivity, "definite_specificity": definite_specificity,
        "refit_temperature": refit_temperature,
    }
    dropped = sorted(k for k in card.metrics if k != "validation")
    if dropped:
        logger.warning("metrics %s of the source card dropped: they describe other operating points; "
                       "evaluate the calibrated model again", ", ".join(dropped))
    new = card.with_updates(temperature=float(temperature), thresholds=thresholds,
                            metrics={"validation": metrics}, training_data=training_data,
                            created=datetime.now(UTC).isoformat(timespec="seconds"))
    logger.info("calibrated on %d images: T=%.3f, macro AUROC %.4f, ECE %.4f", len(rows), temperature,
                metrics["macro_auroc"], metrics["ece"])
    return save_checkpoint(out_dir, model, new)
