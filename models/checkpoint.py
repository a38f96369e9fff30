"""Checkpoint format: ``model.safetensors`` + ``model_card.json`` (with the weights' sha256).

Nothing is unpickled: weights are safetensors, the network is rebuilt from the card's
``architecture`` through the registry, and the sha256 is checked before loading.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from calcdx.errors import ModelIntegrityError
from calcdx.models.card import ModelCard
from calcdx.models.registry import create_model

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "model_card.json"


class LoadedModel(NamedTuple):
    """A model in eval mode and its card."""

    model: nn.Module
    card: ModelCard


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", None)  # DistributedDataParallel
    return inner if isinstance(inner, nn.Module) else model


def save_checkpoint(directory: str | Path, model: nn.Module, card: ModelCard) -> ModelCard:
    """Write ``directory/model.safetensors`` and ``directory/model_card.json``.

    The card written (and returned) carries the sha256 of the weights file and the
    model's stride.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
    weights = directory / WEIGHTS_NAME
    tmp = weights.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"architecture": card.architecture})
    tmp.replace(weights)
    weights.chmod(0o644)
    stride = int(getattr(_unwrap(model), "stride", card.stride))
    final = card.with_updates(weights_sha256=sha256_file(weights), stride=stride)
    card_tmp = directory / (CARD_NAME + ".tmp")
    final.to_json(card_tmp)
    card_tmp.replace(directory / CARD_NAME)
    logger.info("saved model %s to %s", final.name, directory)
    return final


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a checkpoint directory after verifying the weights' sha256 against the card.

    Raises:
        ModelIntegrityError: missing file, invalid card, sha256 mismatch, or weights that do
            not fit the card's architecture.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    card_path = directory / CARD_NAME
    weights = directory / WEIGHTS_NAME
    if not card_path.is_file():
        raise ModelIntegrityError("model card not found", path=card_path)
    if not weights.is_file():
        raise ModelIntegrityError("weights file not found", path=weights)
    card = ModelCard.from_json(card_path)
    actual = sha256_file(weights)
    if not card.weights_sha256:
        raise ModelIntegrityError("model card has no weights_sha256: refusing to load", path=card_path)
    if actual != card.weights_sha256:
        raise ModelIntegrityError(
            f"sha256 mismatch: card says {card.weights_sha256[:12]}…, file is {actual[:12]}…; "
            "the weights were modified or belong to another card", path=weights)
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises several types
        raise ModelIntegrityError(f"cannot read weights: {exc}", path=weights) from exc
    model = create_model(card.architecture, num_classes=len(card.classes), **card.architecture_kwargs)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelIntegrityError(f"weights do not fit architecture {card.architecture!r}: {exc}",
                                  path=weights) from exc
    model.to(device).eval()
    return LoadedModel(model=model, card=card)
