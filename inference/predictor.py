"""``Predictor``: a locked, hash-verified model applied to radiographs."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from calcdx.datasets.radiograph import Radiograph
from calcdx.datasets.transforms import to_model_grid
from calcdx.devices import resolve_device
from calcdx.findings import Finding
from calcdx.inference.crop_head import CropHead, head_dir
from calcdx.inference.extent import EXTENT_HEAD_DIR, ExtentHead
from calcdx.inference.findings import extract_findings, normalise_body_part
from calcdx.inference.margin import MARGIN_HEAD_DIR, MarginHead
from calcdx.inference.site import CPPD_SITE_HEAD_DIR, SITE_HEAD_DIR, CppdSiteHead, SiteHead
from calcdx.models import shipped_model_dir
from calcdx.models.apply import GridResult, prepare_for_inference, run_on_grid
from calcdx.models.checkpoint import load_checkpoint, sha256_file
from calcdx.models.ood import thresholds as ood_thresholds

logger = logging.getLogger(__name__)


@dataclass
class ImageResult:
    """What the model says about one image (frame)."""

    source: str
    sop_instance_uid: str
    frame_index: int
    status: str  # "analyzed" or "not_analyzed"
    probabilities: dict[str, float]
    findings: list[Finding]
    ood_distance: float | None
    reason: str | None = None
    low_confidence: bool = False
    pixel_spacing_mm: tuple[float, float] = (0.0, 0.0)
    spacing_source: str = ""
    rows: int = 0
    columns: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "sop_instance_uid": self.sop_instance_uid, "frame_index": self.frame_index,
            "status": self.status, "reason": self.reason, "low_confidence": self.low_confidence,
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
            "ood_distance": None if self.ood_distance is None or not np.isfinite(self.ood_distance)
            else round(self.ood_distance, 3),
            "pixel_spacing_mm": list(self.pixel_spacing_mm), "spacing_source": self.spacing_source,
            "rows": self.rows, "columns": self.columns,
            "findings": [f.to_dict() for f in self.findings], **self.extra,
        }


HEAD_NAMES: tuple[str, ...] = (MARGIN_HEAD_DIR, SITE_HEAD_DIR, EXTENT_HEAD_DIR, CPPD_SITE_HEAD_DIR)
"""The crop heads: each one's folder in a model folder, ``Predictor`` attribute and key in the identity."""

Head = TypeVar("Head", bound=CropHead)


def _optional_head(cls: type[Head], model_dir: Path, name: str) -> Head | None:
    """The head ``name`` of ``model_dir`` (else the shipped one), None when neither folder exists."""
    folder = head_dir(model_dir, name)
    return cls(folder) if folder.is_dir() else None


class Predictor:
    """Loads a model directory (``model.safetensors`` + ``model_card.json``), verifying its sha256.

    Args:
        model_dir: the checkpoint folder; default the model shipped with calcdx.
        device: "cpu", "cuda", "cuda:N" or "auto" (CUDA when available; under torchrun the local rank's GPU).
        threads: torch intra-op threads (None: torch's default).
        fast_decode: decode a JPEG 2000 image at the coarsest resolution level whose spacing stays at or
            below the model grid's (``decode_spacing_mm``) instead of at full resolution: about twice as
            fast end to end on JPEG 2000 files, sizes measured at that spacing, and the model's inputs
            differ slightly (docs/inference.md has the measured cost); off by default.

    Raises:
        ModelIntegrityError: missing files, bad card, or a weights hash that does not match.
        ConfigError: a device that is not available.
    """

    def __init__(self, model_dir: str | Path | None = None, device: str = "cpu", threads: int | None = None,
                 *, fast_decode: bool = False) -> None:
        self.model_dir = Path(model_dir) if model_dir else shipped_model_dir()
        self.fast_decode = fast_decode
        if threads:
            torch.set_num_threads(threads)
        device = str(resolve_device(device, int(os.environ.get("LOCAL_RANK", "0"))))
        loaded = load_checkpoint(self.model_dir, device=device)
        self.model = prepare_for_inference(loaded.model, device)
        self.card = loaded.card
        self.device = device
        self.weights_sha256 = sha256_file(self.model_dir / "model.safetensors")
        self.margin_head = _optional_head(MarginHead, self.model_dir, MARGIN_HEAD_DIR)
        self.site_head = _optional_head(SiteHead, self.model_dir, SITE_HEAD_DIR)
        self.extent_head = _optional_head(ExtentHead, self.model_dir, EXTENT_HEAD_DIR)
        self.cppd_site_head = _optional_head(CppdSiteHead, self.model_dir, CPPD_SITE_HEAD_DIR)

    @property
    def identity(self) -> dict[str, Any]:
        """Model identity recorded in every result (name, version, weights hash; the heads')."""
        identity: dict[str, Any] = {"name": self.card.name, "version": self.card.version,
                                    "weights_sha256": self.weights_sha256, "architecture": self.card.architecture}
        for name in HEAD_NAMES:
            head = getattr(self, name)
            if head is not None:
                identity[name] = head.identity
        return identity

    @property
    def decode_spacing_mm(self) -> float | None:
        """The coarsest spacing an image may be decoded at for this model (None: full resolution)."""
        return float(self.card.input_spacing_mm) if self.fast_decode else None

    def to_grid(self, radiograph: Radiograph) -> np.ndarray:
        """The model-grid image (resampled to the card's mm per pixel, normalised)."""
        return to_model_grid(radiograph, self.card.input_spacing_mm,
                             percentiles=preprocessing_percentiles(self.card.preprocessing))

    def analyze_grid(self, radiograph: Radiograph, grid: np.ndarray) -> ImageResult:
        """Run the model on a prepared grid image and extract findings."""
        return self.result(radiograph, self.forward(grid))

    def forward(self, grid: np.ndarray) -> GridResult:
        """The model's outputs for a prepared grid image (the only step that needs torch)."""
        return run_on_grid(self.model, self.card, grid, device=self.device)

    def result(self, radiograph: Radiograph, out: GridResult) -> ImageResult:
        """Findings, measured on ``radiograph``, from the model's outputs ``out`` for it (numpy only)."""
        probabilities = {name: float(out.probabilities[i]) for i, name in enumerate(self.card.classes)}
        base = {"source": radiograph.source, "sop_instance_uid": radiograph.sop_instance_uid,
                "frame_index": radiograph.frame_index, "probabilities": probabilities,
                "ood_distance": float(out.ood_distance), "pixel_spacing_mm": radiograph.source_pixel_spacing_mm,
                "spacing_source": radiograph.spacing_source.value, "rows": radiograph.source_shape[0],
                "columns": radiograph.source_shape[1],
                "extra": {"levels_discarded": radiograph.levels_discarded,
                          # what a follow-up comparison pairs images by (calcdx.inference.followup)
                          "body_part": normalise_body_part(radiograph.body_part),
                          "laterality": _laterality(radiograph.laterality),
                          "view_position": radiograph.view_position}}
        low, refuse = ood_thresholds(self.card.ood)
        if out.is_ood:
            return ImageResult(status="not_analyzed", findings=[],
                               reason=f"out of distribution: feature distance {out.ood_distance:.1f} exceeds the "
                               f"model's refusal threshold {refuse:.1f}; the image is unlike the training data "
                               "(e.g. another body region)", **base)
        findings = extract_findings(radiograph, self.card, out.probabilities, out.prob_maps,
                                    self.card.input_spacing_mm, margin_head=self.margin_head,
                                    site_head=self.site_head, extent_head=self.extent_head,
                                    cppd_site_head=self.cppd_site_head)
        reason = None
        if out.low_confidence:
            share = float(self.card.ood.get("percentile", 99.0))
            reason = (f"low confidence: feature distance {out.ood_distance:.1f} is above the {low:.1f} "
                      f"that {share:g} % of held-out training-like images stay under (refused above "
                      f"{refuse:.1f}); the image is unusual for the training data (acquisition, anatomy or "
                      "extent of disease): check the findings by eye")
        return ImageResult(status="analyzed", findings=findings, reason=reason, low_confidence=out.low_confidence,
                           **base)

    def analyze(self, radiograph: Radiograph) -> ImageResult:
        return self.analyze_grid(radiograph, self.to_grid(radiograph))


def _laterality(value: str | None) -> str | None:
    """Image Laterality / Laterality as L, R, B (both) or U (unpaired); None for anything else."""
    text = (value or "").strip().upper()
    return text if text in {"L", "R", "B", "U"} else None


def preprocessing_percentiles(preprocessing: dict[str, Any]) -> tuple[float, float] | None:
    """The percentile stretch recorded in a model card's ``preprocessing`` (None: no stretch)."""
    value = preprocessing.get("percentiles", (0.5, 99.5)) if preprocessing else (0.5, 99.5)
    return None if value is None else (float(value[0]), float(value[1]))
