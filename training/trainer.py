"""``fit(config)``: the whole training run, from manifest to a calibrated model directory.

Steps: split by patient -> datasets and loaders -> network -> epochs (checkpoint every
epoch, resume, early stopping on the validation score) -> best weights -> temperature and
operating points on the validation split -> OOD statistics on training features -> model
card -> ``run_dir/model/`` (``model.safetensors`` + ``model_card.json``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from calcdx.datasets.augment import build_augment
from calcdx.datasets.manifest import ManifestRow, manifest_sha256, read_manifest
from calcdx.datasets.splits import train_val_split
from calcdx.datasets.torch_dataset import ManifestDataset, pad_collate
from calcdx.datasets.transforms import preprocessing_spec
from calcdx.errors import ConfigError
from calcdx.models import create_model
from calcdx.models.card import ModelCard
from calcdx.models.checkpoint import save_checkpoint
from calcdx.models.ood import fit_ood
from calcdx.taxonomy import PATTERNS
from calcdx.training import ddp
from calcdx.training.calibration import fit_temperature_and_bias, operating_points
from calcdx.training.checkpointing import (
    EarlyStopping,
    load_run_state,
    save_run_state,
    seed_everything,
)
from calcdx.training.config import TrainConfig, config_to_dict, save_config
from calcdx.training.loop import EvalResult, evaluate, train_one_epoch
from calcdx.training.losses import CalcLoss, balanced_pos_weight
from calcdx.training.metrics import compute_metrics, sigmoid

logger = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = tuple(p.value for p in PATTERNS)
OOD_MAX_IMAGES = 1000


@dataclass(frozen=True)
class FitResult:
    """Where the run wrote its outputs and what it measured."""

    run_dir: Path
    model_dir: Path | None
    history: list[dict[str, Any]]
    card: ModelCard | None


def _rows(cfg: TrainConfig) -> tuple[list[ManifestRow], list[ManifestRow]]:
    if not cfg.data.manifest:
        raise ConfigError("data.manifest is required")
    rows = read_manifest(cfg.data.manifest)
    if cfg.data.val_manifest:
        train, val = rows, read_manifest(cfg.data.val_manifest)
    else:
        tr_idx, va_idx = train_val_split(rows, cfg.data.val_fraction, seed=cfg.seed)
        train, val = [rows[i] for i in tr_idx], [rows[i] for i in va_idx]
        train_ids = {r.patient_id for r in train}
        if train_ids & {r.patient_id for r in val}:
            raise ConfigError("internal error: a patient is in both train and val")
    if cfg.data.max_images:
        train = train[: cfg.data.max_images]
    return train, val


class _Clock:
    """Training seconds so far (carried over on resume) against an optional budget."""

    def __init__(self, budget_s: float, previous_s: float = 0.0) -> None:
        self.budget_s = budget_s
        self.previous_s = previous_s
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return self.previous_s + time.perf_counter() - self.start

    @property
    def fraction(self) -> float:
        return self.elapsed / self.budget_s if self.budget_s > 0 else 0.0


def _lr_lambda(warmup: int, total: int, clock: _Clock | None = None) -> Any:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        progress = (step - warmup) / max(total - warmup, 1)
        if clock is not None and clock.budget_s > 0:
            progress = max(progress, clock.fraction)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return f


def _init_from(model: torch.nn.Module, path: Path) -> None:
    """Load a full calcdx state dict (safetensors, or a run file read with ``weights_only=True``).

    Raises:
        ConfigError: unreadable file or weights of another architecture.
    """
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("model", state) if isinstance(state, dict) else state
        model.load_state_dict(state)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"model.init_from: cannot load {path}: {exc}") from exc
    logger.info("initialised from %s", path)


def fold_offsets(model: torch.nn.Module, offsets: np.ndarray) -> None:
    """Subtract per-class logit offsets from the classifier bias (maps and pooled logits shift
    by exactly the offset for LSE, max and attention pooling)."""
    classifier = getattr(model, "classifier", None)
    if classifier is None or getattr(classifier, "bias", None) is None:
        raise ConfigError("model has no classifier bias to fold calibration offsets into")
    with torch.no_grad():
        classifier.bias -= torch.as_tensor(offsets, dtype=classifier.bias.dtype, device=classifier.bias.device)


def calibrate_model(model: torch.nn.Module, logits: np.ndarray, labels: np.ndarray, classes: Sequence[str], *,
                    sensitivity: float, specificity: float, temperature: float | None = None
                    ) -> tuple[float, dict[str, dict[str, float]], np.ndarray]:
    """Calibrate ``model`` on its validation ``logits``: (temperature, operating points, logits as
    the calibrated model now gives them).

    With ``temperature=None`` the temperature and per-class offsets are fitted and the offsets
    folded into the classifier bias; otherwise the model is left as it is and only the points are
    placed at that temperature.
    """
    if temperature is None:
        temperature, offsets = fit_temperature_and_bias(logits, labels)
        fold_offsets(model, offsets)
        logits = logits - offsets[None, :]
    thresholds = operating_points(labels, sigmoid(logits / temperature), classes, sensitivity=sensitivity,
                                  specificity=specificity)
    return float(temperature), thresholds, logits


def _eval_loader(ds: ManifestDataset | Subset[Any], workers: int) -> DataLoader[Any]:
    return DataLoader(ds, batch_size=1, shuffle=False, num_workers=workers, collate_fn=pad_collate,
                      persistent_workers=False)


def _score(res: EvalResult, monitor: str) -> float:
    if monitor == "val_loss":
        return -res.loss
    m = compute_metrics(res.labels, sigmoid(res.logits), CLASSES)
    return float(m["macro_auroc"])


def fit(cfg: TrainConfig, *, stop_after_epochs: int = 0) -> FitResult:
    """Train, calibrate and save a model as ``cfg`` says; resumes from ``out_dir/last.pt``.

    Args:
        cfg: the resolved configuration.
        stop_after_epochs: stop this process after so many epochs (simulates an
            interruption; the next call resumes).  0 = run to the end.

    Raises:
        ConfigError / ManifestError: bad config or data.
    """
    info = ddp.init_distributed(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed, cfg.deterministic)
    run_dir = Path(cfg.out_dir)
    if info.is_main:
        save_config(cfg, run_dir / "config.yaml")
    train_rows, val_rows = _rows(cfg)
    if info.is_main:
        (run_dir / "split.json").write_text(json.dumps({
            "train": [str(r.path) for r in train_rows], "val": [str(r.path) for r in val_rows]}, indent=0))
    cache = cfg.data.cache_dir or None
    train_ds = ManifestDataset(train_rows, cfg.data.spacing_mm, size_px=cfg.data.input_size_px,
                               augment=build_augment(cfg.data.augment), use_masks=cfg.data.use_masks,
                               cache_dir=cache, seed=cfg.seed, lesion_crop_p=cfg.data.lesion_crop_p)
    val_ds = ManifestDataset(val_rows, cfg.data.spacing_mm, size_px=None, augment=None,
                             use_masks=cfg.data.use_masks, cache_dir=cache, seed=cfg.seed)
    prep_workers = max(cfg.data.num_workers, 1) if info.world_size == 1 else 0
    train_ds.preload(progress=cfg.progress and info.is_main, workers=prep_workers)
    if info.is_main:
        val_ds.preload(progress=cfg.progress, workers=prep_workers)
    ddp.barrier(info)
    if cfg.optim.batch_size % info.world_size:
        raise ConfigError(f"optim.batch_size {cfg.optim.batch_size} not divisible by {info.world_size} ranks")
    per_rank = cfg.optim.batch_size // info.world_size
    sampler: DistributedSampler[Any] = DistributedSampler(train_ds, num_replicas=info.world_size,
                                                          rank=info.rank, shuffle=True, seed=cfg.seed,
                                                          drop_last=True)
    loader = DataLoader(train_ds, batch_size=per_rank, sampler=sampler, num_workers=cfg.data.num_workers,
                        collate_fn=pad_collate, drop_last=True)
    steps_per_epoch = len(loader)
    if cfg.optim.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.optim.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise ConfigError(f"no full batch: {len(train_ds)} training images, batch {cfg.optim.batch_size}")

    model = create_model(cfg.model.architecture, num_classes=len(CLASSES),
                         pretrained=cfg.model.pretrained or None, **cfg.model.kwargs).to(info.device)
    if cfg.model.init_from:
        _init_from(model, Path(cfg.model.init_from))
    labels = np.array([r.label_vector() for r in train_rows], dtype=np.float32)
    pos_weight = (torch.from_numpy(balanced_pos_weight(labels, cfg.loss.max_pos_weight))
                  if cfg.loss.class_weighting == "balanced" else None)
    loss_fn = CalcLoss(pos_weight, cfg.loss.mask_weight if cfg.data.use_masks else 0.0,
                       cfg.loss.mask_pos_weight).to(info.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    state = load_run_state(run_dir)
    clock = _Clock(cfg.optim.time_budget_minutes * 60.0,
                   float(state.get("train_seconds", 0.0)) if state is not None else 0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(cfg.optim.warmup_steps, cfg.optim.epochs * steps_per_epoch, clock))
    stopper = EarlyStopping(cfg.early_stopping_patience)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if state is not None:
        if state.get("config") != config_to_dict(cfg):
            logger.warning("resuming %s with a changed config", run_dir)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_torch"])
        start_epoch = int(state["epoch"]) + 1
        stopper = EarlyStopping(cfg.early_stopping_patience, float(state["best"]), int(state["best_epoch"]),
                                int(state["bad_epochs"]))
        history = list(state["history"])
        logger.info("resumed from epoch %d", start_epoch)
    net = ddp.wrap_model(model, info)
    best_path = run_dir / "best_state.pt"
    stopped = stopper.should_stop or (clock.budget_s > 0 and clock.fraction >= 1.0)
    for epoch in range(start_epoch, cfg.optim.epochs):
        if stopped:
            break
        sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        stats = train_one_epoch(net, loader, optimizer, loss_fn, device=info.device, epoch=epoch,
                                scheduler=scheduler, amp=cfg.amp, grad_clip=cfg.optim.grad_clip,
                                max_steps=cfg.optim.max_steps_per_epoch,
                                progress=cfg.progress and info.is_main)
        loss, bce, mask_loss = ddp.all_reduce_mean([stats.loss, stats.bce, stats.mask_loss], info)
        record: dict[str, Any] = {"epoch": epoch, "loss": loss, "bce": bce,
                                  "mask_loss": mask_loss, "seconds": stats.seconds,
                                  "images_per_second": stats.images_per_second * info.world_size,
                                  "lr": stats.lr}
        out_of_time = clock.budget_s > 0 and clock.fraction >= 1.0
        validate = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.optim.epochs or out_of_time
        if info.is_main:
            if validate:
                res = evaluate(model, _eval_loader(val_ds, 0), device=info.device, loss_fn=loss_fn, amp=cfg.amp)
                score = _score(res, cfg.monitor)
                record.update(val_loss=res.loss, val_score=score, val_seconds=res.seconds)
                if stopper.update(score, epoch):
                    torch.save(model.state_dict(), best_path)
            logger.info("epoch %d: loss %.4f (bce %.4f, mask %.4f), val %s %s, %.1f img/s, %.0f s",
                        epoch, loss, bce, mask_loss, cfg.monitor,
                        f"{record['val_score']:.4f}" if validate else "-",
                        record["images_per_second"], stats.seconds)
            history.append(record)
            save_run_state(run_dir, model=model, optimizer=optimizer, scheduler=scheduler, epoch=epoch,
                           best=stopper.best, best_epoch=stopper.best_epoch, bad_epochs=stopper.bad_epochs,
                           config=config_to_dict(cfg), history=history, train_seconds=clock.elapsed)
            (run_dir / "history.json").write_text(json.dumps(history, indent=1))
        if out_of_time and info.is_main:
            logger.info("time budget of %.1f min used: stopping after epoch %d", cfg.optim.time_budget_minutes, epoch)
        stopped = ddp.broadcast_flag(stopper.should_stop or out_of_time, info)
        interrupted = stop_after_epochs and epoch - start_epoch + 1 >= stop_after_epochs
        if interrupted and epoch + 1 < cfg.optim.epochs:
            ddp.barrier(info)
            return FitResult(run_dir=run_dir, model_dir=None, history=history, card=None)
    ddp.barrier(info)
    card = None
    model_dir = None
    if info.is_main:
        if best_path.is_file():
            model.load_state_dict(torch.load(best_path, map_location=info.device, weights_only=True))
        card = _finalise(cfg, model, val_ds, train_ds, info.device, history)
        model_dir = run_dir / "model"
        card = save_checkpoint(model_dir, model, card)
    ddp.barrier(info)
    ddp.shutdown(info)
    return FitResult(run_dir=run_dir, model_dir=model_dir, history=history, card=card)


def _finalise(cfg: TrainConfig, model: torch.nn.Module, val_ds: ManifestDataset, train_ds: ManifestDataset,
              device: torch.device, history: list[dict[str, Any]]) -> ModelCard:
    """Calibrate on val, fit OOD statistics on training images, build the card."""
    t0 = time.perf_counter()
    val = evaluate(model, _eval_loader(val_ds, 0), device=device)
    if cfg.calibration.enabled:
        temperature, thresholds, logits = calibrate_model(model, val.logits, val.labels, CLASSES,
                                                          sensitivity=cfg.calibration.possible_sensitivity,
                                                          specificity=cfg.calibration.definite_specificity)
        val = EvalResult(logits=logits, labels=val.labels, features=val.features,
                         indices=val.indices, loss=val.loss, seconds=val.seconds)
    else:
        temperature, thresholds = 1.0, {c: {"possible": 0.3, "definite": 0.7} for c in CLASSES}
    val_metrics = compute_metrics(val.labels, sigmoid(val.logits / temperature), CLASSES, thresholds)
    plain = ManifestDataset(train_ds.rows, cfg.data.spacing_mm, size_px=None, augment=None,
                            use_masks=False, cache_dir=cfg.data.cache_dir or None, seed=cfg.seed)
    n_ood = min(len(plain), OOD_MAX_IMAGES)
    pick = np.random.default_rng(cfg.seed).choice(len(plain), size=n_ood, replace=False)
    seen = evaluate(model, _eval_loader(Subset(plain, sorted(pick.tolist())), 0), device=device)
    ood = fit_ood(seen.features, seen.labels, class_names=CLASSES, percentile=cfg.calibration.ood_percentile,
                  held_out=val.features)
    logger.info("calibration T=%.3f, val macro AUROC %.4f, ECE %.4f (%.0f s)", temperature,
                val_metrics["macro_auroc"], val_metrics["ece"], time.perf_counter() - t0)
    epochs = [h for h in history if "seconds" in h]
    kwargs = dict(cfg.model.kwargs)
    return ModelCard(
        name=cfg.name, version=cfg.version, architecture=cfg.model.architecture, classes=CLASSES,
        architecture_kwargs=kwargs, input_spacing_mm=cfg.data.spacing_mm,
        input_size_px=(cfg.data.input_size_px, cfg.data.input_size_px),
        stride=int(getattr(model, "stride", 8)), preprocessing=preprocessing_spec(cfg.data.spacing_mm),
        temperature=temperature, thresholds=thresholds,
        metrics={"validation": val_metrics},
        training_data={
            "manifest": str(cfg.data.manifest),
            "manifest_sha256": manifest_sha256(cfg.data.manifest),
            "n_images": len(train_ds), "n_val_images": len(val_ds),
            "n_patients": len({r.patient_id for r in train_ds.rows}),
            "epochs_run": len(epochs),
            "mean_epoch_seconds": float(np.mean([h["seconds"] for h in epochs])) if epochs else None,
            "config": config_to_dict(cfg),
        },
        ood=ood,
    )
