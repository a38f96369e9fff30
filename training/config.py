"""Training configuration: frozen dataclasses, YAML (``yaml.safe_load``) and dotted overrides.

    cfg = load_config("configs/shipped.yaml", ["optim.lr=1e-3", "data.spacing_mm=0.5"])
    save_config(cfg, run_dir / "config.yaml")   # the resolved config travels with the run

Unknown keys and wrongly typed values raise ``ConfigError`` naming the key (and close
matches for typos).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from calcdx.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    """Data: manifests, the model grid and the loader.

    Attributes:
        manifest: training manifest CSV (split into train/val by patient unless
            ``val_manifest`` is given).
        val_manifest: separate validation manifest (used for calibration and early stopping).
        val_fraction: fraction of patients held out for validation when splitting.
        spacing_mm: model grid spacing, mm per pixel.
        input_size_px: side of the square training crops, model-grid pixels.
        use_masks: use annotation masks (mask loss and crop labels) when present.
        augment: "none", "light", "default" or "strong".
        cache_dir: cache of preprocessed arrays ("" = none).
        num_workers: DataLoader worker processes.
        lesion_crop_p: probability of centring a crop on a lesion.
        max_images: use at most this many training rows (0 = all); for smoke runs.
    """

    manifest: str = ""
    val_manifest: str = ""
    val_fraction: float = 0.2
    spacing_mm: float = 0.6
    input_size_px: int = 320
    use_masks: bool = True
    augment: str = "default"
    cache_dir: str = ""
    num_workers: int = 1
    lesion_crop_p: float = 0.5
    max_images: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """Network: registry name, keyword arguments, an optional local pretrained backbone file
    (torchvision state dict) and an optional ``init_from`` (a calcdx state dict of the same
    architecture: ``model.safetensors`` or a run's ``best_state.pt`` / ``last.pt``) to fine-tune."""

    architecture: str = "resnet18"
    kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: str = ""
    init_from: str = ""


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser (AdamW) and schedule (linear warm-up then cosine).

    ``time_budget_minutes`` > 0 stops training when that much training time has passed and
    runs the cosine schedule on elapsed time as well as steps (whichever is further); such a
    run depends on the machine's speed and is not bit-for-bit repeatable.
    """

    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 5.0
    max_steps_per_epoch: int = 0
    time_budget_minutes: float = 0.0


@dataclass(frozen=True)
class LossConfig:
    """Loss: image-level BCE with class weights + optional mask BCE on the logit maps.

    Attributes:
        class_weighting: "balanced" (positive weight = negatives / positives per class,
            capped at ``max_pos_weight``) or "none".
        mask_weight: weight of the mask loss (0 = image labels only).
        mask_pos_weight: weight of positive map cells in the mask loss.
    """

    class_weighting: str = "balanced"
    max_pos_weight: float = 10.0
    mask_weight: float = 1.0
    mask_pos_weight: float = 5.0


@dataclass(frozen=True)
class CalibrationConfig:
    """Temperature scaling and operating points, fitted on the validation split."""

    enabled: bool = True
    possible_sensitivity: float = 0.95
    definite_specificity: float = 0.98
    ood_percentile: float = 99.0


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; saved as ``config.yaml`` beside the checkpoint.

    ``eval_every``: validate on whole images every N epochs (and after the last);
    ``early_stopping_patience`` counts validations without improvement of ``monitor``.
    """

    name: str = "calcdx-model"
    version: str = "0.1.0"
    out_dir: str = "runs/default"
    seed: int = 0
    deterministic: bool = True
    device: str = "auto"
    amp: bool = True
    threads: int = 0
    early_stopping_patience: int = 5
    eval_every: int = 1
    monitor: str = "macro_auroc"
    progress: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)

    def __post_init__(self) -> None:
        validate(self)


def validate(cfg: TrainConfig) -> None:
    """Raise ``ConfigError`` for values out of range."""
    checks: list[tuple[bool, str]] = [
        (cfg.data.spacing_mm > 0, "data.spacing_mm must be > 0"),
        (cfg.data.input_size_px >= 32, "data.input_size_px must be >= 32"),
        (0 < cfg.data.val_fraction <= 0.5, "data.val_fraction must be in (0, 0.5]"),
        (cfg.data.augment in ("none", "light", "default", "strong"),
         "data.augment must be none, light, default or strong"),
        (cfg.data.num_workers >= 0, "data.num_workers must be >= 0"),
        (cfg.optim.epochs >= 1, "optim.epochs must be >= 1"),
        (cfg.eval_every >= 1, "eval_every must be >= 1"),
        (cfg.optim.batch_size >= 1, "optim.batch_size must be >= 1"),
        (cfg.optim.lr > 0, "optim.lr must be > 0"),
        (cfg.loss.class_weighting in ("balanced", "none"), "loss.class_weighting must be balanced or none"),
        (cfg.loss.mask_weight >= 0, "loss.mask_weight must be >= 0"),
        (0.5 <= cfg.calibration.possible_sensitivity < 1, "calibration.possible_sensitivity in [0.5, 1)"),
        (0.5 <= cfg.calibration.definite_specificity < 1, "calibration.definite_specificity in [0.5, 1)"),
        (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:"),
         "device must be auto, cpu or cuda[:N]"),
        (cfg.monitor in ("macro_auroc", "val_loss"), "monitor must be macro_auroc or val_loss"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _from_dict(tp, value, key + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if value is None:
            return ""
        if not isinstance(value, str | int | float):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if origin is dict or tp is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if isinstance(tp, types.UnionType):
        return value
    return value


def _from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kw: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
            raise ConfigError(f"unknown config key {prefix}{key}{hint}")
        kw[key] = _coerce(value, hints[key], prefix + key)
    try:
        return cls(**kw)
    except TypeError as exc:
        raise ConfigError(f"{prefix or 'config'}: {exc}") from exc


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build and validate a ``TrainConfig`` from nested dicts.

    Raises:
        ConfigError: unknown key, wrong type or invalid value.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
    cfg: TrainConfig = _from_dict(TrainConfig, data)
    return cfg


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML scalars) to nested dicts.

    Raises:
        ConfigError: an override without ``=``.
    """
    out = _deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, _, raw = item.partition("=")
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"override {item!r} has an empty key")
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = out
        for p in parts[:-1]:
            child = node.get(p)
            if not isinstance(child, dict):
                child = {}
                node[p] = child
            node = child
        node[parts[-1]] = value
    return out


def _deepcopy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deepcopy(v) if isinstance(v, dict) else v for k, v in d.items()}


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (``None``: defaults) and apply dotted overrides.

    Raises:
        ConfigError: unreadable YAML or invalid config (the message names the file or key).
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config: {exc}", path=path) from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError("config file must hold a mapping", path=path)
        data = loaded or {}
    try:
        return config_from_dict(apply_overrides(data, overrides))
    except ConfigError as exc:
        if path is not None and exc.path is None:
            raise ConfigError(exc.reason, path=path) from exc
        raise


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain nested dict of a config."""
    return dataclasses.asdict(cfg)


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")
    return path
