"""Training the HADD margin head (``calcdx train-margin``) on a manifest's per-lesion annotations.

A lesion's label is its annotation's ``margin`` (``well_defined`` / ``ill_defined``) where given, else
what its simulated HADD ``variant`` implies (formative/resting: well defined; resorptive: ill defined).
Each lesion gives several crops around its centroid, jittered by the centroid error that detected
findings show (``JITTER_MM``), so the head is trained where inference will put it.  The threshold is
the one that balances the two classes' accuracy on the validation manifest; its AUROC, balanced
accuracy and counts go into the card.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from calcdx.datasets.manifest import ManifestRow, load_annotations
from calcdx.datasets.reader import read_radiograph
from calcdx.errors import CalcdxError, ConfigError
from calcdx.inference.margin import (
    CARD_FILE,
    CROP_SIZE,
    CROP_SPACING_MM,
    FIELD_MM,
    WEIGHTS_FILE,
    MarginCard,
    MarginNet,
    margin_crop,
)
from calcdx.models.checkpoint import sha256_file
from calcdx.training.finding_accuracy import EXPECTED_MARGIN

logger = logging.getLogger(__name__)

JITTER_MM = 1.5
"""Standard deviation, per axis, of the centroid shift of a training crop (detected HADD findings: median
centroid error 1.4 mm, 90th percentile 4 mm; docs/inference.md)."""
ILL_DEFINED, WELL_DEFINED = 1.0, 0.0


@dataclass(frozen=True)
class MarginCrops:
    """Crops [N, S, S] with labels [N] (1: ill defined) and the lesion each came from [N]."""

    crops: np.ndarray
    labels: np.ndarray
    lesion_ids: np.ndarray
    skipped: tuple[str, ...]

    @property
    def lesions(self) -> int:
        return int(np.unique(self.lesion_ids).size)


def lesion_margin(record: dict[str, Any]) -> float | None:
    """1.0 for an ill-defined, 0.0 for a well-defined HADD lesion, None when the record says neither."""
    margin = record.get("margin")
    if margin is None and record.get("kind") == "hadd":
        margin = EXPECTED_MARGIN.get(str(record.get("variant")))
    return {"ill_defined": ILL_DEFINED, "well_defined": WELL_DEFINED}.get(str(margin)) if margin else None


def collect_crops(rows: Iterable[ManifestRow], *, per_lesion: int = 4, seed: int = 0,
                  progress: Callable[[int], None] | None = None) -> MarginCrops:
    """Crops around every labelled lesion of ``rows``: the first at the lesion's centroid, the others
    jittered.  A file that cannot be read is skipped and named in ``skipped`` (never stops the run)."""
    rng = np.random.default_rng(seed)
    crops: list[np.ndarray] = []
    labels: list[float] = []
    lesion_ids: list[int] = []
    skipped: list[str] = []
    lesion_id = 0
    for row in rows:
        if progress:
            progress(1)
        if row.annotations is None:
            continue
        try:
            records = [(r, lesion_margin(r)) for r in load_annotations(row.annotations)]
            records = [(r, m) for r, m in records if m is not None]
            if not records:
                continue
            radiograph = read_radiograph(row.path)
        except CalcdxError as exc:
            skipped.append(str(exc))
            continue
        spacing = radiograph.pixel_spacing_mm
        for record, label in records:
            r0, c0, r1, c1 = (float(v) for v in record["bbox_px"])
            centre = record.get("centroid_px") or ((r0 + r1 - 1) / 2, (c0 + c1 - 1) / 2)
            for k in range(per_lesion):
                shift = (0.0, 0.0) if k == 0 else tuple(rng.normal(0.0, JITTER_MM, 2) / np.asarray(spacing))
                crops.append(margin_crop(radiograph.image, (centre[0] + shift[0], centre[1] + shift[1]), spacing))
                labels.append(label)
                lesion_ids.append(lesion_id)
            lesion_id += 1
    if not crops:
        return MarginCrops(np.zeros((0, CROP_SIZE, CROP_SIZE), np.float32), np.zeros(0, np.float32),
                           np.zeros(0, np.int64), tuple(skipped))
    return MarginCrops(np.stack(crops), np.asarray(labels, np.float32), np.asarray(lesion_ids), tuple(skipped))


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flips, quarter turns and a contrast scale: a margin does not depend on orientation or window."""
    if torch.rand(1, generator=generator) < 0.5:
        batch = batch.flip(-1)
    if torch.rand(1, generator=generator) < 0.5:
        batch = batch.flip(-2)
    batch = torch.rot90(batch, int(torch.randint(0, 4, (1,), generator=generator)), (-2, -1))
    scale = torch.exp(torch.randn(batch.shape[0], 1, 1, 1, generator=generator) * 0.2)
    return batch * scale


def predict_probabilities(net: nn.Module, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probability of "ill defined" per crop."""
    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(crops), batch_size):
            x = torch.from_numpy(crops[start:start + batch_size])[:, None]
            out.append(torch.sigmoid(net(x)).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def balanced_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The threshold that maximises the mean of both classes' accuracy (Youden's J)."""
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    best = int(np.argmax(tpr - fpr))
    return float(min(max(thresholds[best], 1e-6), 1.0))


def margin_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float | int]:
    """AUROC, balanced accuracy and per-class accuracy at ``threshold``."""
    ill = labels >= 0.5
    called_ill = probabilities >= threshold
    ill_right = float((called_ill & ill).sum() / max(ill.sum(), 1))
    well_right = float((~called_ill & ~ill).sum() / max((~ill).sum(), 1))
    both = ill.any() and (~ill).any()
    return {"auroc": round(float(roc_auc_score(labels, probabilities)), 4) if both else float("nan"),
            "balanced_accuracy": round((ill_right + well_right) / 2, 4), "ill_defined_accuracy": round(ill_right, 4),
            "well_defined_accuracy": round(well_right, 4), "ill_defined": int(ill.sum()),
            "well_defined": int((~ill).sum())}


def train_margin_net(train: MarginCrops, *, epochs: int = 20, width: int = 8, batch_size: int = 64,
                     lr: float = 2e-3, seed: int = 0, log: Callable[[str], None] = logger.info) -> MarginNet:
    """A ``MarginNet`` trained on ``train`` (AdamW, cosine schedule, classes weighted to balance)."""
    if len(train.crops) == 0 or len(np.unique(train.labels)) < 2:
        raise ConfigError("the training manifest needs HADD lesions of both margins (well and ill defined)")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = MarginNet(width)
    x_all, y_all = torch.from_numpy(train.crops)[:, None], torch.from_numpy(train.labels)
    pos_weight = torch.tensor(float((y_all == 0).sum() / max((y_all == 1).sum(), 1)))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    optimiser = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(x_all) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=max(steps, 1))
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(x_all), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            loss = loss_fn(net(_augment(x_all[idx], generator)), y_all[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        log(f"epoch {epoch + 1}/{epochs}: loss {total / len(x_all):.4f}")
    return net.eval()


def save_margin_head(out_dir: str | Path, net: MarginNet, card: MarginCard) -> Path:
    """``model.safetensors`` and ``margin_card.json`` (with the weights' sha256) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_FILE
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    data = {**card.to_dict(), "weights_sha256": sha256_file(weights)}
    (out / CARD_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return out


def train_margin_head(train_rows: Sequence[ManifestRow], val_rows: Sequence[ManifestRow], out_dir: str | Path, *,
                      epochs: int = 20, width: int = 8, seed: int = 0, per_lesion: int = 4,
                      provenance: dict[str, Any] | None = None,
                      log: Callable[[str], None] = logger.info) -> tuple[Path, dict[str, Any]]:
    """Collect crops, train, choose the threshold on ``val_rows`` and save; returns the folder and the
    validation metrics."""
    train = collect_crops(train_rows, per_lesion=per_lesion, seed=seed)
    val = collect_crops(val_rows, per_lesion=per_lesion, seed=seed + 1)
    for name, crops in (("training", train), ("validation", val)):
        log(f"{name}: {crops.lesions} labelled lesions, {len(crops.crops)} crops, {len(crops.skipped)} files skipped")
        for reason in crops.skipped:
            log(f"  skipped {reason}")
    if val.lesions == 0 or len(np.unique(val.labels)) < 2:
        raise ConfigError("the validation manifest needs HADD lesions of both margins (well and ill defined)")
    net = train_margin_net(train, epochs=epochs, width=width, seed=seed, log=log)
    probabilities = predict_probabilities(net, val.crops)
    threshold = balanced_threshold(val.labels, probabilities)
    metrics = {"crops": margin_metrics(val.labels, probabilities, threshold),
               "centred_crops": margin_metrics(val.labels[::per_lesion], probabilities[::per_lesion], threshold),
               "lesions": val.lesions}
    card = MarginCard(name="calcdx-hadd-margin", version="1", width=width, field_mm=FIELD_MM,
                      crop_spacing_mm=CROP_SPACING_MM, threshold=round(threshold, 6),
                      training={"lesions": train.lesions, "crops": len(train.crops), "epochs": epochs,
                                "seed": seed, "jitter_mm": JITTER_MM, **(provenance or {})},
                      validation=metrics)
    return save_margin_head(out_dir, net, card), metrics
