"""Run checkpoints (every epoch, resumable), early stopping and seeded determinism.

A run checkpoint (``last.pt``) holds model, optimiser, scheduler, epoch, best score and
the resolved config as plain tensors and Python scalars: it is loaded with
``weights_only=True``.  The deliverable model is written separately in the
safetensors + card format (``calcdx.models.checkpoint``).
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from calcdx.errors import ModelIntegrityError

logger = logging.getLogger(__name__)

LAST = "last.pt"


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; with ``deterministic`` ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def save_run_state(run_dir: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                   scheduler: Any, epoch: int, best: float, best_epoch: int, bad_epochs: int,
                   config: dict[str, Any], history: list[dict[str, Any]], train_seconds: float = 0.0) -> Path:
    """Write ``run_dir/last.pt`` atomically (after epoch ``epoch`` finished)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "epoch": epoch,
        "best": best,
        "best_epoch": best_epoch,
        "bad_epochs": bad_epochs,
        "config": config,
        "history": history,
        "train_seconds": float(train_seconds),
        "rng_torch": torch.get_rng_state(),
    }
    tmp = run_dir / (LAST + ".tmp")
    torch.save(state, tmp)
    tmp.replace(run_dir / LAST)
    return run_dir / LAST


def load_run_state(run_dir: Path) -> dict[str, Any] | None:
    """The saved run state, or None when there is none.

    Raises:
        ModelIntegrityError: the file exists but cannot be read safely.
    """
    path = run_dir / LAST
    if not path.is_file():
        return None
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelIntegrityError(f"cannot resume from run checkpoint: {exc}", path=path) from exc
    return state


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs without improvement of a maximised score."""

    patience: int
    best: float = float("-inf")
    best_epoch: int = -1
    bad_epochs: int = 0

    def update(self, score: float, epoch: int) -> bool:
        """Record ``score``; True when it is the best so far."""
        if np.isfinite(score) and score > self.best:
            self.best, self.best_epoch, self.bad_epochs = score, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience
