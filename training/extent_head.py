"""The HADD extent head's training run (``calcdx train-head extent``): outlines learned from lesion masks.

Every HADD lesion with a ``mask`` file gives crops of a 32 mm field around its centroid (one centred, the
others shifted as detected findings are, ``JITTER_MM``) and its mask over the same field.  The loss is
binary cross-entropy plus soft Dice; fields may be flipped and turned (a deposit's outline has no
orientation).  The threshold on the per-pixel probability is the one, of 0.3-0.7, whose long axes on the
validation manifest's centred crops come closest to the masks' (least mean absolute log ratio).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from calcdx.datasets.manifest import ManifestRow
from calcdx.errors import ConfigError
from calcdx.inference.crop_head import HeadCard
from calcdx.inference.extent import CROP_SPACING_MM, FIELD_MM, ExtentNet, extent_of
from calcdx.pieces import axes_mm
from calcdx.training.crop_head import Crops, card_training, collect_crops, fit, save_head
from calcdx.training.metrics import ratio_spread

logger = logging.getLogger(__name__)

CLASSES = ["deposit"]
THRESHOLDS = tuple(np.round(np.arange(0.3, 0.71, 0.05), 2))


def lesion_is_hadd(record: dict[str, Any]) -> str | None:
    """``deposit`` for a HADD lesion with a mask file, else None (not used by this head)."""
    return "deposit" if record.get("kind") == "hadd" and record.get("mask") else None


def _augment(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same flips and quarter turn for fields and masks; a contrast scale for the fields."""
    for dim in (-1, -2):
        if torch.rand(1, generator=generator) < 0.5:
            x, y = x.flip(dim), y.flip(dim)
    turns = int(torch.randint(0, 4, (1,), generator=generator))
    x, y = torch.rot90(x, turns, (-2, -1)), torch.rot90(y, turns, (-2, -1))
    return x * torch.exp(torch.randn(x.shape[0], 1, 1, 1, generator=generator) * 0.2), y


def train_extent_net(train: Crops, *, epochs: int = 20, width: int = 8, batch_size: int = 32, lr: float = 2e-3,
                     seed: int = 0, log: Callable[[str], None] = logger.info) -> ExtentNet:
    """An ``ExtentNet`` trained on ``train``'s fields and masks (cross-entropy + soft Dice)."""
    if train.masks is None:
        raise ValueError("the extent head trains on crops collected with their masks")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = ExtentNet(width)
    x_all = torch.from_numpy(train.crops)[:, None]
    y_all = torch.from_numpy(train.masks.astype(np.float32))[:, None]
    bce = torch.nn.BCEWithLogitsLoss()

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        x, y = _augment(x_all[idx], y_all[idx], generator)
        logits = net(x)
        target = y[:, 0]
        p = torch.sigmoid(logits)
        dice = 1 - (2 * (p * target).sum((1, 2)) + 1) / (p.sum((1, 2)) + target.sum((1, 2)) + 1)
        return bce(logits, target) + dice.mean()

    return fit(net, len(x_all), batch_loss, generator, epochs=epochs, batch_size=batch_size, lr=lr, log=log)


def outline_probabilities(net: ExtentNet, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """[N, S, S] per-pixel probabilities of "deposit"."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(crops), batch_size):
            out.append(torch.sigmoid(net(torch.from_numpy(crops[start:start + batch_size])[:, None])).numpy())
    return np.concatenate(out) if out else np.zeros((0, *crops.shape[1:]), np.float32)


def extent_metrics(maps: np.ndarray, masks: np.ndarray, threshold: float) -> dict[str, Any]:
    """Long/short axis found over true (median, 10th and 90th percentile, sd of the log) and mean Dice."""
    spacing = (CROP_SPACING_MM, CROP_SPACING_MM)
    ratios: list[tuple[float, float]] = []
    dice: list[float] = []
    for probability, mask in zip(maps, masks, strict=True):
        if not mask.any():
            continue
        found = extent_of(probability, threshold)
        true_long, true_short = axes_mm(mask, spacing)
        ratios.append((found.long_mm / true_long, found.short_mm / true_short) if found else (0.0, 0.0))
        called = probability >= threshold
        dice.append(float(2 * (called & mask).sum() / max(called.sum() + mask.sum(), 1)))
    r = np.asarray(ratios, np.float64).reshape(-1, 2)
    summary: dict[str, Any] = {"lesions": len(r), "dice": round(float(np.mean(dice)), 4) if dice else None,
                               "missed": int((r[:, 0] == 0).sum())}
    for k, axis in enumerate(("long", "short")):
        found = r[r[:, k] > 0, k]
        if found.size:
            summary[axis] = ratio_spread(found)
    return summary


def choose_threshold(maps: np.ndarray, masks: np.ndarray) -> float:
    """Of ``THRESHOLDS``, the one whose long axes come closest to the masks' (mean |log ratio|)."""
    spacing = (CROP_SPACING_MM, CROP_SPACING_MM)
    truth = [axes_mm(m, spacing)[0] if m.any() else 0.0 for m in masks]
    best, best_error = 0.5, np.inf
    for threshold in THRESHOLDS:
        errors = []
        for probability, true_long in zip(maps, truth, strict=True):
            if true_long <= 0:
                continue
            found = extent_of(probability, float(threshold))
            errors.append(abs(np.log((found.long_mm if found else CROP_SPACING_MM) / true_long)))
        error = float(np.mean(errors)) if errors else np.inf
        if error < best_error:
            best, best_error = float(threshold), error
    return best


def train_extent_head(train_rows: Sequence[ManifestRow], val_rows: Sequence[ManifestRow], out_dir: str | Path, *,
                      epochs: int = 20, width: int = 8, seed: int = 0, per_lesion: int = 4,
                      provenance: dict[str, Any] | None = None,
                      log: Callable[[str], None] = logger.info) -> tuple[Path, dict[str, Any]]:
    """Collect fields and masks, train, choose the threshold on ``val_rows`` and save; returns the folder
    and the validation metrics."""
    kw = {"field_mm": FIELD_MM, "crop_spacing_mm": CROP_SPACING_MM, "per_lesion": per_lesion, "with_masks": True}
    train = collect_crops(train_rows, lesion_is_hadd, CLASSES, seed=seed, **kw)
    val = collect_crops(val_rows, lesion_is_hadd, CLASSES, seed=seed + 1, **kw)
    for name, crops in (("training", train), ("validation", val)):
        log(f"{name}: {crops.lesions} HADD lesions with masks, {len(crops.crops)} crops, "
            f"{len(crops.skipped)} files skipped")
        for reason in crops.skipped:
            log(f"  skipped {reason}")
        if not crops.lesions:
            raise ConfigError(f"the {name} manifests hold no HADD lesion with a mask file")
    net = train_extent_net(train, epochs=epochs, width=width, seed=seed, log=log)
    assert val.masks is not None
    maps = outline_probabilities(net, val.crops)
    centred = slice(None, None, per_lesion)
    threshold = choose_threshold(maps[centred], val.masks[centred])
    metrics = {"centred_crops": extent_metrics(maps[centred], val.masks[centred], threshold),
               "crops": extent_metrics(maps, val.masks, threshold), "lesions": val.lesions}
    card = HeadCard(name="calcdx-hadd-extent", version="1", task="extent", width=width, field_mm=FIELD_MM,
                    crop_spacing_mm=CROP_SPACING_MM, classes=CLASSES, threshold=threshold,
                    training=card_training(train, epochs, seed, provenance), validation=metrics,
                    intended_use="The outline, long and short axis and area of HADD findings; trained and validated "
                                 "on the calcdx simulator's phantoms only. Research software, not a medical device.")
    return save_head(out_dir, net, card), metrics
