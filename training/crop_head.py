"""Training a crop head (``calcdx train-head margin|site``) on a manifest's per-lesion annotations.

Each labelled lesion gives several crops around its centroid: one centred and the others shifted by the
centroid error that detected findings show (``JITTER_MM``), so a head is trained where inference puts
it.  The margin head is one logit (binary cross-entropy, classes weighted to balance); the site head one
logit per tendon (cross-entropy over the tendons the lesion's body part can hold).  The threshold is
chosen on the validation manifest (see ``calcdx.training.margin_head`` / ``site_head``) and the card
records it with the validation metrics and the manifests' sha256.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from calcdx.datasets.manifest import ManifestRow, load_annotations
from calcdx.datasets.reader import read_radiograph
from calcdx.errors import CalcdxError, ConfigError, ManifestError
from calcdx.inference.crop_head import CARD_FILE, WEIGHTS_FILE, CropNet, HeadCard, field_crop, field_resample
from calcdx.inference.findings import normalise_body_part
from calcdx.models.checkpoint import sha256_file

logger = logging.getLogger(__name__)

JITTER_MM = 1.5
"""Standard deviation, per axis, of the centroid shift of a training crop (detected HADD findings: median
centroid error 1.4 mm, 90th percentile 4 mm; docs/inference.md)."""

LabelOf = Callable[[dict[str, Any]], str | None]
"""A lesion record -> its class name, or None when it is not labelled for this head."""


@dataclass(frozen=True)
class Crops:
    """Crops [N, S, S] with class indices [N], the lesion each came from [N] and its body part [N]; with
    ``masks`` also the lesion's mask over the same field [N, S, S] (bool)."""

    crops: np.ndarray
    labels: np.ndarray
    lesion_ids: np.ndarray
    body_parts: tuple[str, ...]
    skipped: tuple[str, ...]
    masks: np.ndarray | None = None

    @property
    def lesions(self) -> int:
        return int(np.unique(self.lesion_ids).size)


def collect_crops(rows: Iterable[ManifestRow], label_of: LabelOf, classes: list[str], *, field_mm: float,
                  crop_spacing_mm: float, per_lesion: int = 4, seed: int = 0, with_masks: bool = False) -> Crops:
    """Crops around every lesion of ``rows`` that ``label_of`` labels with one of ``classes`` (and, with
    ``with_masks``, its ``mask`` file cropped alike).  A file that cannot be read is skipped and named
    in ``skipped`` (it never stops the run)."""
    rng = np.random.default_rng(seed)
    size = round(field_mm / crop_spacing_mm)
    crops: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    labels: list[int] = []
    lesion_ids: list[int] = []
    body_parts: list[str] = []
    skipped: list[str] = []
    lesion_id = 0
    for row in rows:
        if row.annotations is None:
            continue
        try:
            records = [(r, label_of(r)) for r in load_annotations(row.annotations)]
            records = [(r, label) for r, label in records if label in classes]
            if not records:
                continue
            radiograph = read_radiograph(row.path)
            lesion_masks = [_lesion_mask(row.annotations, r, radiograph.shape) if with_masks else None
                            for r, _ in records]
        except CalcdxError as exc:
            skipped.append(str(exc))
            continue
        spacing = radiograph.pixel_spacing_mm
        body = normalise_body_part(radiograph.body_part or row.body_part) or ""
        for (record, label), lesion_mask in zip(records, lesion_masks, strict=True):
            r0, c0, r1, c1 = (float(v) for v in record["bbox_px"])
            centre = record.get("centroid_px") or ((r0 + r1 - 1) / 2, (c0 + c1 - 1) / 2)
            for k in range(per_lesion):
                shift = (0.0, 0.0) if k == 0 else tuple(rng.normal(0.0, JITTER_MM, 2) / np.asarray(spacing))
                at = (centre[0] + shift[0], centre[1] + shift[1])
                crops.append(field_crop(radiograph.image, at, spacing, field_mm, size))
                if lesion_mask is not None:
                    masks.append(field_resample(lesion_mask, at, spacing, field_mm, size) >= 0.5)
                labels.append(classes.index(str(label)))
                lesion_ids.append(lesion_id)
                body_parts.append(body)
            lesion_id += 1
    stacked = np.stack(crops) if crops else np.zeros((0, size, size), np.float32)
    stacked_masks = (np.stack(masks) if masks else np.zeros((0, size, size), bool)) if with_masks else None
    return Crops(stacked, np.asarray(labels, np.int64), np.asarray(lesion_ids, np.int64), tuple(body_parts),
                 tuple(skipped), stacked_masks)


def _lesion_mask(annotations: Path, record: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """A lesion's ``mask`` file (relative to its annotations) as float32 of the image's ``shape``."""
    ref = record.get("mask")
    path = Path(str(ref)) if ref else None
    if path is not None and not path.is_absolute():
        path = annotations.parent / path
    try:
        with np.load(str(path)) as data:
            mask = np.asarray(data["mask"], dtype=np.float32)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ManifestError(f"cannot read the lesion's mask {ref!r}: {exc}", path=annotations) from exc
    if mask.shape != shape:
        raise ManifestError(f"lesion mask {ref!r} is {mask.shape}, the image {shape}", path=annotations)
    return mask


def _augment(batch: torch.Tensor, generator: torch.Generator, *, any_orientation: bool) -> torch.Tensor:
    """Left-right flips (laterality) and a contrast scale; with ``any_orientation`` also up-down flips and
    quarter turns (a margin does not depend on orientation, a tendon's place does)."""
    if torch.rand(1, generator=generator) < 0.5:
        batch = batch.flip(-1)
    if any_orientation:
        if torch.rand(1, generator=generator) < 0.5:
            batch = batch.flip(-2)
        batch = torch.rot90(batch, int(torch.randint(0, 4, (1,), generator=generator)), (-2, -1))
    scale = torch.exp(torch.randn(batch.shape[0], 1, 1, 1, generator=generator) * 0.2)
    return batch * scale


def outputs(net: nn.Module, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits per crop: [N] for one output, else [N, K]."""
    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(crops), batch_size):
            out.append(net(torch.from_numpy(crops[start:start + batch_size])[:, None]).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def train_crop_net(train: Crops, n_outputs: int, *, allowed: np.ndarray | None = None, any_orientation: bool,
                   epochs: int = 20, width: int = 8, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                   log: Callable[[str], None] = logger.info) -> CropNet:
    """A ``CropNet`` trained on ``train`` (AdamW, one-cycle schedule).  One output: binary cross-entropy
    with the positive class weighted to balance; several: cross-entropy over ``allowed`` classes."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = CropNet(width, n_outputs)
    x_all, y_all = torch.from_numpy(train.crops)[:, None], torch.from_numpy(train.labels)
    if n_outputs == 1:
        pos_weight = torch.tensor(float((y_all == 0).sum() / max(int((y_all == 1).sum()), 1)))
        bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight)

        def loss_of(logits: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return bce(logits, y_all[idx].float())
    else:
        mask = torch.from_numpy(allowed if allowed is not None else np.ones((len(y_all), n_outputs), bool))
        ce = nn.CrossEntropyLoss()

        def loss_of(logits: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return ce(logits.masked_fill(~mask[idx], -1e4), y_all[idx])

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        return loss_of(net(_augment(x_all[idx], generator, any_orientation=any_orientation)), idx)

    return fit(net, len(x_all), batch_loss, generator, epochs=epochs, batch_size=batch_size, lr=lr, log=log)


Net = TypeVar("Net", bound=nn.Module)


def fit(net: Net, n_items: int, batch_loss: Callable[[torch.Tensor], torch.Tensor], generator: torch.Generator, *,
        epochs: int, batch_size: int, lr: float, log: Callable[[str], None]) -> Net:
    """``net`` trained by AdamW with a one-cycle schedule on shuffled batches of item indices, whose loss
    ``batch_loss`` gives; returned in eval mode."""
    optimiser = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((n_items + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=max(steps, 1))
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(n_items, generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            loss = batch_loss(idx)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        log(f"epoch {epoch + 1}/{epochs}: loss {total / max(n_items, 1):.4f}")
    return net.eval()


def save_head(out_dir: str | Path, net: nn.Module, card: HeadCard) -> Path:
    """``model.safetensors`` and ``head_card.json`` (with the weights' sha256) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_FILE
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    data = {**card.to_dict(), "weights_sha256": sha256_file(weights)}
    (out / CARD_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return out


def training_and_validation_crops(train_rows: Iterable[ManifestRow], val_rows: Iterable[ManifestRow],
                                  label_of: LabelOf, classes: list[str], *, field_mm: float, crop_spacing_mm: float,
                                  per_lesion: int, seed: int, log: Callable[[str], None]) -> tuple[Crops, Crops]:
    """Crops of both manifests, logged (with every skipped file); each needs two classes at least."""
    kw = {"field_mm": field_mm, "crop_spacing_mm": crop_spacing_mm, "per_lesion": per_lesion}
    train = collect_crops(train_rows, label_of, classes, seed=seed, **kw)
    val = collect_crops(val_rows, label_of, classes, seed=seed + 1, **kw)
    for name, crops in (("training", train), ("validation", val)):
        log(f"{name}: {crops.lesions} labelled lesions, {len(crops.crops)} crops, {len(crops.skipped)} files skipped")
        for reason in crops.skipped:
            log(f"  skipped {reason}")
        present = len(np.unique(crops.labels))
        if present < 2:
            raise ConfigError(f"the {name} manifest has {crops.lesions} labelled lesions of {present} classes; "
                              "at least 2 classes are needed")
    return train, val


def card_training(train: Crops, epochs: int, seed: int, provenance: dict[str, Any] | None) -> dict[str, Any]:
    """The card's ``training`` record."""
    return {"lesions": train.lesions, "crops": len(train.crops), "epochs": epochs, "seed": seed,
            "jitter_mm": JITTER_MM, **(provenance or {})}
