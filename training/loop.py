"""One training epoch and one evaluation pass: short functions with typed results."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from calcdx.models.output import ModelOutput
from calcdx.training.losses import CalcLoss

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochStats:
    """Averages over one training epoch (per image) and its cost."""

    epoch: int
    loss: float
    bce: float
    mask_loss: float
    n_images: int
    steps: int
    seconds: float
    lr: float

    @property
    def images_per_second(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class EvalResult:
    """Raw outputs of an evaluation pass (uncalibrated logits) and its mean loss."""

    logits: np.ndarray
    labels: np.ndarray
    features: np.ndarray
    indices: np.ndarray
    loss: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def _autocast(device: torch.device, amp: bool) -> Any:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}


def train_one_epoch(model: nn.Module, loader: Iterable[dict[str, Any]], optimizer: torch.optim.Optimizer,
                    loss_fn: CalcLoss, *, device: torch.device, epoch: int,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, amp: bool = False,
                    grad_clip: float = 0.0, max_steps: int = 0, progress: bool = False) -> EpochStats:
    """Train for one pass over ``loader`` (or ``max_steps`` batches).

    Returns:
        EpochStats with per-image mean losses, wall time and the last learning rate.
    """
    model.train()
    start = time.perf_counter()
    tot = bce = msk = 0.0
    n = steps = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=max_steps or None, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True)
    for batch in loader:
        if max_steps and steps >= max_steps:
            break
        b = _to(batch, device)
        with _autocast(device, amp):
            out: ModelOutput = model(b["image"])
        parts = loss_fn(out, b["labels"], b["label_weight"], b["masks"], b["has_mask"])
        optimizer.zero_grad(set_to_none=True)
        parts.total.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        k = int(b["image"].shape[0])
        tot += float(parts.total.detach()) * k
        bce += parts.bce * k
        msk += parts.mask * k
        n += k
        steps += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{tot / n:.4f}", img_s=f"{n / (time.perf_counter() - start):.1f}")
    if bar is not None:
        bar.close()
    lr = float(optimizer.param_groups[0]["lr"])
    n_div = max(n, 1)
    return EpochStats(epoch=epoch, loss=tot / n_div, bce=bce / n_div, mask_loss=msk / n_div, n_images=n,
                      steps=steps, seconds=time.perf_counter() - start, lr=lr)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[dict[str, Any]], *, device: torch.device,
             loss_fn: CalcLoss | None = None, amp: bool = False) -> EvalResult:
    """Run the model over ``loader`` in eval mode and collect logits, labels and features."""
    model.eval()
    start = time.perf_counter()
    logits, labels, feats, idx = [], [], [], []
    loss_sum, n = 0.0, 0
    for batch in loader:
        b = _to(batch, device)
        with _autocast(device, amp):
            out: ModelOutput = model(b["image"])
        if loss_fn is not None:
            parts = loss_fn(out, b["labels"], b["label_weight"], b["masks"], b["has_mask"])
            loss_sum += float(parts.total) * int(b["image"].shape[0])
        n += int(b["image"].shape[0])
        logits.append(out.logits.float().cpu().numpy())
        feats.append(out.features.float().cpu().numpy())
        labels.append(b["labels"].cpu().numpy())
        idx.append(b["index"].cpu().numpy())
    cat = (lambda xs: np.concatenate(xs) if xs else np.zeros((0, 0)))  # noqa: E731
    return EvalResult(logits=cat(logits), labels=cat(labels), features=cat(feats), indices=cat(idx),
                      loss=loss_sum / max(n, 1), seconds=time.perf_counter() - start)
