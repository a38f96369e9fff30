"""Small CNN heads that read a fixed field of the source image around a finding.

The detection model says *what* and *where*; two questions the seed asks radiologists to report it
cannot answer from its maps: the HADD margin (``calcdx.inference.margin``) and the tendon involved
(``calcdx.inference.site``).  Each is a ``CropNet`` that sees a square field of fixed size in mm around
the finding's measured centroid, resampled to a fixed spacing.  A head lives in a folder of its own
(``model.safetensors`` + ``head_card.json`` with the weights' sha256, refused on mismatch) inside the
model folder, else the shipped one is used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from calcdx.errors import ModelIntegrityError
from calcdx.models import shipped_model_dir
from calcdx.models.apply import prepare_for_inference
from calcdx.models.checkpoint import sha256_file

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "head_card.json"


def field_crop(image: np.ndarray, centroid_px: tuple[float, float], spacing_mm: tuple[float, float],
               field_mm: float, size: int) -> np.ndarray:
    """The ``field_mm`` square of ``image`` centred on ``centroid_px`` (row, col), resampled to ``size``
    pixels per side and normalised (median 0, 1st-99th percentile span 1); edges replicate outside."""
    crop = field_resample(image, centroid_px, spacing_mm, field_mm, size)
    low, mid, high = np.percentile(crop, (1.0, 50.0, 99.0))
    return ((crop - mid) / max(float(high - low), 1e-4)).astype(np.float32)


def field_resample(image: np.ndarray, centroid_px: tuple[float, float], spacing_mm: tuple[float, float],
                   field_mm: float, size: int) -> np.ndarray:
    """``field_crop`` without the normalisation (float32): also what crops a lesion's mask alike."""
    r0, r1, c0, c1 = _field_window(centroid_px, spacing_mm, field_mm)
    rows, cols = image.shape
    window = image[max(r0, 0):min(r1, rows), max(c0, 0):min(c1, cols)].astype(np.float32)
    if window.size == 0:
        window = np.zeros((1, 1), np.float32)
    pads = ((max(-r0, 0), max(r1 - rows, 0)), (max(-c0, 0), max(c1 - cols, 0)))
    if any(p for pair in pads for p in pair):
        window = np.pad(window, pads, mode="edge")
    shrinking = window.shape[0] >= size and window.shape[1] >= size
    return cv2.resize(window, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _field_window(centroid_px: tuple[float, float], spacing_mm: tuple[float, float],
                  field_mm: float) -> tuple[int, int, int, int]:
    """(row_min, row_max, col_min, col_max), max exclusive, of the image pixels a field covers."""
    half_rows = max(1, round(field_mm / 2 / spacing_mm[0]))
    half_cols = max(1, round(field_mm / 2 / spacing_mm[1]))
    row, col = round(centroid_px[0]), round(centroid_px[1])
    return row - half_rows, row + half_rows, col - half_cols, col + half_cols


def field_to_image(points: np.ndarray | Sequence[tuple[float, float]], centroid_px: tuple[float, float],
                   spacing_mm: tuple[float, float], field_mm: float, size: int) -> np.ndarray:
    """[N, 2] (row, col) points of a ``field_resample`` field (pixel centres at integers) in the image's
    pixel coordinates."""
    r0, r1, c0, c1 = _field_window(centroid_px, spacing_mm, field_mm)
    start, step = np.array([r0, c0], np.float64), np.array([r1 - r0, c1 - c0], np.float64) / size
    return start + (np.asarray(points, np.float64).reshape(-1, 2) + 0.5) * step - 0.5


class CropNet(nn.Module):
    """Four stages of two 3x3 convolutions, global average pooling and ``outputs`` logits."""

    def __init__(self, width: int = 8, outputs: int = 1) -> None:
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
        self.logit = nn.Linear(chans[-1], outputs)
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N] for one output, else [N, outputs]."""
        logits = self.logit(self.features(x).mean((2, 3)))
        return logits.squeeze(1) if self.outputs == 1 else logits


@dataclass(frozen=True)
class HeadCard:
    """What a head is, how it was trained and how well it did (written next to its weights)."""

    name: str
    version: str
    task: str  # "margin", "site" or "extent"
    width: int
    field_mm: float
    crop_spacing_mm: float
    classes: list[str]
    """Output labels in order (margin: ["ill_defined"], one logit)."""
    threshold: float
    """margin: probability of "ill defined" at or above which it is reported; site: the least probability
    at which the named site is reported instead of the generic one; extent: the probability at or above
    which a pixel of the field belongs to the deposit."""
    classes_by_body_part: dict[str, list[str]] = field(default_factory=dict)
    """site: the classes a normalised body part can hold (the softmax runs over those only)."""
    calibration: dict[str, float] = field(default_factory=dict)
    """margin: Platt scaling fitted on validation, probability = sigmoid(scale * logit + offset)."""
    training: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    intended_use: str = ""

    @property
    def crop_size(self) -> int:
        return round(self.field_mm / self.crop_spacing_mm)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: Path) -> HeadCard:
        try:
            return cls(name=str(data["name"]), version=str(data["version"]), task=str(data["task"]),
                       width=int(data["width"]), field_mm=float(data["field_mm"]),
                       crop_spacing_mm=float(data["crop_spacing_mm"]), classes=[str(c) for c in data["classes"]],
                       threshold=float(data["threshold"]),
                       classes_by_body_part={str(k): [str(c) for c in v]
                                             for k, v in dict(data.get("classes_by_body_part", {})).items()},
                       calibration={str(k): float(v) for k, v in dict(data.get("calibration", {})).items()},
                       training=dict(data.get("training", {})), validation=dict(data.get("validation", {})),
                       intended_use=str(data.get("intended_use", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelIntegrityError(f"head card is incomplete or malformed: {exc!r}", path=source) from exc


class CropHead:
    """A loaded head: card, network (CPU, eval mode) and the weights' sha256."""

    task = ""

    def __init__(self, head_dir: str | Path) -> None:
        self.head_dir = Path(head_dir)
        weights, card_path = self.head_dir / WEIGHTS_FILE, self.head_dir / CARD_FILE
        for path in (weights, card_path):
            if not path.is_file():
                raise ModelIntegrityError("head file is missing", path=path)
        try:
            card_data = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelIntegrityError(f"cannot read the head card: {exc}", path=card_path) from exc
        self.card = HeadCard.from_dict(card_data, card_path)
        if self.task and self.card.task != self.task:
            raise ModelIntegrityError(f"head card is for task {self.card.task!r}, expected {self.task!r}",
                                      path=card_path)
        self.weights_sha256 = sha256_file(weights)
        self.card_sha256 = sha256_file(card_path)
        expected = card_data.get("weights_sha256")
        if expected and expected != self.weights_sha256:
            raise ModelIntegrityError(f"head weights sha256 {self.weights_sha256} does not match the card's "
                                      f"{expected}", path=weights)
        self.net = self.build_net()
        try:
            self.net.load_state_dict(load_file(str(weights)))
        except (RuntimeError, OSError) as exc:
            raise ModelIntegrityError(f"head weights do not fit the card: {exc}", path=weights) from exc
        self.net = prepare_for_inference(self.net.eval())  # batch norm folded: 15-20 % faster on a CPU
        pair_single_images(self.net)

    def build_net(self) -> nn.Module:
        """The network the card describes (a ``CropNet``; a head of another shape overrides this)."""
        return CropNet(self.card.width, len(self.card.classes))

    @property
    def identity(self) -> dict[str, str]:
        """Name, version and the sha256 of weights and card (threshold and calibration change results too)."""
        return {"name": self.card.name, "version": self.card.version, "weights_sha256": self.weights_sha256,
                "card_sha256": self.card_sha256}

    def crop(self, image: np.ndarray, centroid_px: tuple[float, float],
             spacing_mm: tuple[float, float]) -> np.ndarray:
        return field_crop(image, centroid_px, spacing_mm, self.card.field_mm, self.card.crop_size)

    def logits(self, crop: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return self.net(torch.from_numpy(crop)[None, None])[0]


class PairedConv(nn.Module):
    """A convolution of one input channel that runs a single image as a batch of two (the image twice,
    one result kept).  With torch 2.15 on a CPU, a one-channel 3x3 convolution of a batch of one took
    0.9 ms on a 128 px field and a batch of two 0.2 ms, one thread: the first convolution was a third
    of a head's time per finding (docs/inference.md).  Larger batches go through as they are."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1:
            return self.conv(x.expand(2, -1, -1, -1))[:1]
        return self.conv(x)


def pair_single_images(net: nn.Module) -> nn.Module:
    """``net`` with every one-input-channel ``Conv2d`` wrapped in a ``PairedConv``, in place (after its
    weights are loaded: the wrapper changes the state dict's keys)."""
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 1:
                setattr(parent, name, PairedConv(child))
    return net


def head_dir(model_dir: str | Path | None, name: str) -> Path:
    """The head ``name`` for ``model_dir``: its own ``name/`` folder if it has one, else the shipped one."""
    own = Path(model_dir) / name if model_dir else None
    return own if own is not None and own.is_dir() else shipped_model_dir() / name
