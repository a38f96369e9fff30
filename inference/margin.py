"""The HADD margin head: well or ill defined, learned from image crops around a deposit.

The seed asks that HADD be reported with its margins for comparison at follow-up (formative and resting
deposits dense, homogeneous and well defined; resorptive ones fluffy and ill defined).  Hand-made edge
measures told the two apart no better than chance on the simulator's deposits (docs/inference.md), so
the margin of a HADD finding comes from a small CNN that sees a fixed field around the deposit's
centroid at a fixed spacing.  It is independent of the detection model: it lives in the model folder's
``margin_head/`` (``model.safetensors`` + ``margin_card.json``), else the shipped one is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from calcdx.errors import ModelIntegrityError
from calcdx.findings import Margin
from calcdx.models import shipped_model_dir
from calcdx.models.checkpoint import sha256_file

FIELD_MM = 24.0
"""Side of the square field around the centroid that the head sees (a HADD deposit is 2-20 mm with its tail)."""
CROP_SPACING_MM = 0.25
"""Spacing the field is resampled to: fine enough for a 0.8 mm edge blur, coarse enough to be quick."""
CROP_SIZE = round(FIELD_MM / CROP_SPACING_MM)
MARGIN_HEAD_DIR = "margin_head"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "margin_card.json"


def margin_crop(image: np.ndarray, centroid_px: tuple[float, float], spacing_mm: tuple[float, float],
                *, field_mm: float = FIELD_MM, size: int = CROP_SIZE) -> np.ndarray:
    """The ``field_mm`` square of ``image`` centred on ``centroid_px`` (row, col), resampled to ``size``
    pixels per side and normalised (median 0, 1st-99th percentile span 1); edges replicate outside."""
    half_rows = max(1, round(field_mm / 2 / spacing_mm[0]))
    half_cols = max(1, round(field_mm / 2 / spacing_mm[1]))
    row, col = round(centroid_px[0]), round(centroid_px[1])
    r0, r1, c0, c1 = row - half_rows, row + half_rows, col - half_cols, col + half_cols
    rows, cols = image.shape
    window = image[max(r0, 0):min(r1, rows), max(c0, 0):min(c1, cols)].astype(np.float32)
    if window.size == 0:
        window = np.zeros((1, 1), np.float32)
    pads = ((max(-r0, 0), max(r1 - rows, 0)), (max(-c0, 0), max(c1 - cols, 0)))
    if any(p for pair in pads for p in pair):
        window = np.pad(window, pads, mode="edge")
    shrinking = window.shape[0] >= size and window.shape[1] >= size
    crop = cv2.resize(window, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    low, mid, high = np.percentile(crop, (1.0, 50.0, 99.0))
    return ((crop - mid) / max(float(high - low), 1e-4)).astype(np.float32)


class MarginNet(nn.Module):
    """Four small convolution stages and a logit: the probability that the margin is ill defined."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        chans = (1, width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = []
        for k in range(4):
            layers += [nn.Conv2d(chans[k], chans[k + 1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[k + 1]),
                       nn.ReLU(inplace=True),
                       nn.Conv2d(chans[k + 1], chans[k + 1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[k + 1]),
                       nn.ReLU(inplace=True)]
            if k < 3:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.logit = nn.Linear(chans[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit(self.features(x).mean((2, 3))).squeeze(1)


@dataclass(frozen=True)
class MarginCard:
    """What the head is, how it was trained and how well it did (written next to its weights)."""

    name: str
    version: str
    width: int
    field_mm: float
    crop_spacing_mm: float
    threshold: float
    """Probability of "ill defined" at or above which the margin is reported ill defined."""
    training: dict[str, Any]
    validation: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: Path) -> MarginCard:
        try:
            return cls(name=str(data["name"]), version=str(data["version"]), width=int(data["width"]),
                       field_mm=float(data["field_mm"]), crop_spacing_mm=float(data["crop_spacing_mm"]),
                       threshold=float(data["threshold"]), training=dict(data.get("training", {})),
                       validation=dict(data.get("validation", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelIntegrityError(f"margin card is incomplete or malformed: {exc!r}", path=source) from exc


class MarginHead:
    """A loaded margin head (CPU; one crop per HADD finding costs about a millisecond)."""

    def __init__(self, head_dir: str | Path) -> None:
        self.head_dir = Path(head_dir)
        weights, card_path = self.head_dir / WEIGHTS_FILE, self.head_dir / CARD_FILE
        for path in (weights, card_path):
            if not path.is_file():
                raise ModelIntegrityError("margin head file is missing", path=path)
        try:
            card_data = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelIntegrityError(f"cannot read the margin card: {exc}", path=card_path) from exc
        self.card = MarginCard.from_dict(card_data, card_path)
        self.weights_sha256 = sha256_file(weights)
        expected = card_data.get("weights_sha256")
        if expected and expected != self.weights_sha256:
            raise ModelIntegrityError(f"margin head weights sha256 {self.weights_sha256} does not match the card's "
                                      f"{expected}", path=weights)
        self.net = MarginNet(self.card.width)
        try:
            self.net.load_state_dict(load_file(str(weights)))
        except (RuntimeError, OSError) as exc:
            raise ModelIntegrityError(f"margin head weights do not fit the card: {exc}", path=weights) from exc
        self.net.eval()

    @property
    def identity(self) -> dict[str, str]:
        return {"name": self.card.name, "version": self.card.version, "weights_sha256": self.weights_sha256}

    def probability_ill_defined(self, image: np.ndarray, centroid_px: tuple[float, float],
                                spacing_mm: tuple[float, float]) -> float:
        crop = margin_crop(image, centroid_px, spacing_mm, field_mm=self.card.field_mm,
                           size=round(self.card.field_mm / self.card.crop_spacing_mm))
        with torch.inference_mode():
            logit = self.net(torch.from_numpy(crop)[None, None])
        return float(torch.sigmoid(logit)[0])

    def margin(self, probability_ill_defined: float) -> Margin:
        return Margin.ILL_DEFINED if probability_ill_defined >= self.card.threshold else Margin.WELL_DEFINED


def margin_head_dir(model_dir: str | Path | None) -> Path:
    """The margin head for ``model_dir``: its own ``margin_head/`` if it has one, else the shipped one."""
    own = Path(model_dir) / MARGIN_HEAD_DIR if model_dir else None
    return own if own is not None and own.is_dir() else shipped_model_dir() / MARGIN_HEAD_DIR
