"""The model card: everything needed to rebuild, trust and use a set of weights.

A frozen dataclass with a JSON round trip (``to_json`` / ``from_json``).  It travels beside
``model.safetensors`` as ``model_card.json``; ``weights_sha256`` ties the two together.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from calcdx.errors import ModelIntegrityError
from calcdx.taxonomy import PATTERNS
from calcdx.version import __version__

CARD_FORMAT = 1
OPERATING_POINTS = ("possible", "definite")


def json_clean(value: Any) -> Any:
    """Nested copy with NaN / inf floats replaced by None and NumPy scalars by Python ones."""
    if isinstance(value, dict):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ModelCard:
    """Model card (JSON ``model_card.json``).

    Attributes:
        name: human name of the model ("calcdx-sim-default").
        version: model version string.
        architecture: registry name for ``calcdx.models.create_model``.
        architecture_kwargs: keyword arguments for ``create_model`` (stride, pooling, ...).
        classes: pattern names in output-channel order.
        input_spacing_mm: model grid spacing in mm per pixel (isotropic).
        input_size_px: [H, W] of the training crops in model-grid pixels (the network is
            fully convolutional; whole images of other sizes are fine).
        max_size_px: longest side the inference should feed at once (larger: tile).
        stride: model-grid pixels per map cell.
        preprocessing: how the model-grid image is made (see
            ``calcdx.datasets.transforms.to_model_grid``), as a dict.
        temperature: calibration temperature: probability = sigmoid(logit / temperature).
        thresholds: {pattern: {"possible": p, "definite": p}} on calibrated probabilities.
        metrics: test-set metrics (from ``calcdx evaluate``).
        training_data: {"manifest_sha256", "n_images", ...}.
        weights_sha256: sha256 of ``model.safetensors``.
        ood: out-of-distribution statistics: {"method": "mahalanobis", "mean": [F],
            "precision": [[F x F]], "threshold": d, "percentile": q}; see
            ``calcdx.models.ood``.  Empty when not computed.
        calcdx_version: version of calcdx that wrote the card.
        created: ISO 8601 UTC time.
        format: card format version.
    """

    name: str
    version: str
    architecture: str
    classes: tuple[str, ...] = tuple(p.value for p in PATTERNS)
    architecture_kwargs: dict[str, Any] = field(default_factory=dict)
    input_spacing_mm: float = 0.6
    input_size_px: tuple[int, int] = (320, 320)
    max_size_px: int = 1024
    stride: int = 8
    preprocessing: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training_data: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    ood: dict[str, Any] = field(default_factory=dict)
    calcdx_version: str = __version__
    created: str = field(default_factory=_now)
    format: int = CARD_FORMAT

    def __post_init__(self) -> None:
        if not self.classes:
            raise ModelIntegrityError("model card: 'classes' is empty")
        if not (self.input_spacing_mm > 0 and math.isfinite(self.input_spacing_mm)):
            raise ModelIntegrityError(f"model card: bad input_spacing_mm {self.input_spacing_mm!r}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ModelIntegrityError(f"model card: bad temperature {self.temperature!r}")
        for pattern, ops in self.thresholds.items():
            if pattern not in self.classes:
                raise ModelIntegrityError(f"model card: threshold for unknown class {pattern!r}")
            for op, value in ops.items():
                if op not in OPERATING_POINTS or not 0.0 <= float(value) <= 1.0:
                    raise ModelIntegrityError(f"model card: bad threshold {pattern}.{op} = {value!r}")

    def threshold(self, pattern: str, operating_point: str) -> float:
        """Calibrated-probability threshold; 0.5 when the card has none."""
        return float(self.thresholds.get(pattern, {}).get(operating_point, 0.5))

    def with_updates(self, **changes: Any) -> ModelCard:
        """A copy with fields replaced (the card is frozen)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["classes"] = list(self.classes)
        d["input_size_px"] = list(self.input_size_px)
        cleaned: dict[str, Any] = json_clean(d)
        return cleaned

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise; also write to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=1, sort_keys=False, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, path: str | Path | None = None) -> ModelCard:
        """Build from a dict; unknown keys are ignored, missing required keys raise.

        Raises:
            ModelIntegrityError: missing required field or invalid value.
        """
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        for required in ("name", "version", "architecture"):
            if required not in kw:
                raise ModelIntegrityError(f"model card lacks {required!r}", path=path)
        if "classes" in kw:
            kw["classes"] = tuple(kw["classes"])
        if "input_size_px" in kw:
            kw["input_size_px"] = tuple(int(v) for v in kw["input_size_px"])
        try:
            return cls(**kw)
        except ModelIntegrityError as exc:
            raise ModelIntegrityError(exc.reason, path=path) from exc
        except (TypeError, ValueError) as exc:
            raise ModelIntegrityError(f"invalid model card: {exc}", path=path) from exc

    @classmethod
    def from_json(cls, path: str | Path) -> ModelCard:
        """Read ``model_card.json``.

        Raises:
            ModelIntegrityError: unreadable or invalid JSON or card.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelIntegrityError(f"cannot read model card: {exc}", path=path) from exc
        if not isinstance(data, dict):
            raise ModelIntegrityError("model card must be a JSON object", path=path)
        return cls.from_dict(data, path=path)
