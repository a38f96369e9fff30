"""``calcdx evaluate``: a saved model on a manifest -> JSON report, ROC curves, reliability diagram.

Probabilities are the model card's calibrated ones (``sigmoid(logit / temperature)``) and the
operating points are the card's thresholds, i.e. exactly what ``calcdx predict`` reports.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from calcdx.datasets.manifest import ManifestRow, load_annotations, manifest_sha256, read_manifest
from calcdx.datasets.torch_dataset import ManifestDataset
from calcdx.devices import resolve_device
from calcdx.models.apply import prepare_for_inference
from calcdx.models.card import json_clean
from calcdx.models.checkpoint import load_checkpoint
from calcdx.models.ood import ood_score
from calcdx.models.ood import thresholds as ood_thresholds
from calcdx.taxonomy import PATTERNS, HardNegative
from calcdx.training.loop import evaluate
from calcdx.training.metrics import bootstrap_auroc, compute_metrics, reliability_curve, sigmoid
from calcdx.training.trainer import _eval_loader

logger = logging.getLogger(__name__)


def look_alikes(row: ManifestRow) -> set[str]:
    """The look-alike kinds (hard negatives) annotated on an image without pattern labels, else empty."""
    if row.labels or row.annotations is None:
        return set()
    try:
        lesions = load_annotations(row.annotations)
    except Exception:  # an unreadable annotation file only removes the row from this count
        return set()
    names = {p.value for p in PATTERNS}
    return {str(lesion.get("kind", "")) for lesion in lesions} - names


def any_call_rate(calls: np.ndarray, images: np.ndarray) -> float | None:
    """Share of the selected images with a call of any pattern (None when none is selected)."""
    return float(calls[images].any(axis=1).mean()) if images.any() else None


def hard_negative_report(kinds: list[set[str]], definite: np.ndarray, possible: np.ndarray,
                          classes: Sequence[str]) -> dict[str, Any]:
    """Calls on pattern-free images that hold look-alikes: overall, on those holding more than a
    lead marker (half of all images carry one), and per look-alike kind."""
    hn = np.array([bool(k) for k in kinds])
    beyond = np.array([bool(k - {HardNegative.LEAD_MARKER.value}) for k in kinds])
    by_kind: dict[str, Any] = {}
    for kind in sorted(set().union(*kinds)):
        sel = np.array([kind in k for k in kinds])
        calls = definite[sel]
        by_kind[kind] = {
            "n_images": int(sel.sum()),
            "any_definite_rate": any_call_rate(definite, sel),
            "definite_calls": {c: int(n) for c, n in zip(classes, calls.sum(axis=0), strict=True) if n},
        }
    return {
        "n_images": int(hn.sum()),
        "any_definite_rate": any_call_rate(definite, hn),
        "any_possible_rate": any_call_rate(possible, hn),
        "beyond_lead_marker": {
            "n_images": int(beyond.sum()),
            "any_definite_rate": any_call_rate(definite, beyond),
            "any_possible_rate": any_call_rate(possible, beyond),
        },
        "by_kind": by_kind,
    }


def _group_metrics(rows: Sequence[ManifestRow], labels: np.ndarray, probs: np.ndarray, classes: Sequence[str],
                   column: str) -> dict[str, Any]:
    values = [r.extras.get(column, "") for r in rows]
    out: dict[str, Any] = {}
    for v in sorted(set(values)):
        sel = np.array([x == v for x in values])
        m = compute_metrics(labels[sel], probs[sel], classes)
        out[v or "(empty)"] = {"n_images": int(sel.sum()), "macro_auroc": m["macro_auroc"], "ece": m["ece"]}
    return out


def plot_roc(labels: np.ndarray, probs: np.ndarray, classes: Sequence[str], path: Path) -> None:
    """One ROC curve per class in one PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    for c, name in enumerate(classes):
        y = labels[:, c]
        if 0 < y.sum() < y.size:
            fpr, tpr, _ = roc_curve(y, probs[:, c])
            ax.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(y, probs[:, c]):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("ROC per pattern")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_reliability(labels: np.ndarray, probs: np.ndarray, path: Path, ece: float) -> None:
    """Reliability diagram (pooled over patterns) in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = reliability_curve(labels, probs)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="perfect")
    ax.plot(curve["mean_probability"], curve["frequency"], "o-", label=f"model (ECE {ece:.3f})")
    ax.set_xlabel("predicted probability (calibrated)")
    ax.set_ylabel("observed frequency")
    ax.set_title("Reliability (all patterns)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def evaluate_model(model_dir: str | Path, manifest: str | Path, out_dir: str | Path, *,
                   device: str = "cpu", cache_dir: str | Path | None = None, num_workers: int = 0,
                   group_by: Sequence[str] = (), bootstrap: int = 1000) -> dict[str, Any]:
    """Evaluate a saved model on a manifest; write ``report.json``, ``predictions.csv``,
    ``roc_curves.png`` and ``reliability.png`` into ``out_dir``.  ``bootstrap`` resamples of the
    patients give 95 % intervals of the AUROCs (``metrics["ci95"]``; 0: none).

    Raises:
        ModelIntegrityError: the model fails its checks.  ManifestError: bad manifest.
    """
    device = str(resolve_device(device))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_checkpoint(model_dir, device=device)
    card = loaded.card
    rows = read_manifest(manifest)
    ds = ManifestDataset(rows, card.input_spacing_mm, size_px=None, use_masks=False, cache_dir=cache_dir)
    model = prepare_for_inference(loaded.model, device)  # batch norm folded; channels-last on the CPU
    res = evaluate(model, _eval_loader(ds, num_workers), device=torch.device(device))
    labels = res.labels
    probs = sigmoid(res.logits / card.temperature)
    classes = list(card.classes)
    metrics = compute_metrics(labels, probs, classes, card.thresholds)
    if bootstrap > 0:
        metrics["ci95"] = bootstrap_auroc(labels, probs, classes, [r.patient_id for r in rows], bootstrap)
    dist = ood_score(res.features, card.ood)
    thr, refuse = ood_thresholds(card.ood)
    definite = _calls(probs, card, "definite")
    possible = _calls(probs, card, "possible")
    neg = labels.sum(axis=1) == 0
    report: dict[str, Any] = {
        "model": {"name": card.name, "version": card.version, "weights_sha256": card.weights_sha256},
        "manifest": str(manifest),
        "manifest_sha256": manifest_sha256(manifest),
        "metrics": metrics,
        "hard_negatives": hard_negative_report([look_alikes(r) for r in rows], definite, possible, classes),
        "negatives": {
            "n_images": int(neg.sum()),
            "any_definite_rate": any_call_rate(definite, neg),
        },
        "ood": {
            "threshold": thr if np.isfinite(thr) else None,
            "refuse_threshold": refuse if np.isfinite(refuse) else None,
            "mean_distance": float(np.nanmean(dist)) if np.isfinite(dist).any() else None,
            # flagged: analysed with a low-confidence flag or refused; refused: not analysed
            "flagged_fraction": float((dist > thr).mean()) if np.isfinite(dist).any() else None,
            "refused_fraction": float((dist > refuse).mean()) if np.isfinite(dist).any() else None,
        },
        "seconds": res.seconds,
        "images_per_second": len(rows) / res.seconds if res.seconds > 0 else None,
    }
    if group_by:
        report["groups"] = {col: _group_metrics(rows, labels, probs, classes, col) for col in group_by}
    report = json_clean(report)
    (out / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    with (out / "predictions.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", *[f"p_{c}" for c in classes], *[f"y_{c}" for c in classes], "ood_distance"])
        for i, r in enumerate(rows):
            w.writerow([str(r.path), *[f"{v:.5f}" for v in probs[i]], *[int(v) for v in labels[i]],
                        f"{dist[i]:.3f}"])
    plot_roc(labels, probs, classes, out / "roc_curves.png")
    plot_reliability(labels, probs, out / "reliability.png", metrics["ece"])
    return report


def _calls(probs: np.ndarray, card: Any, operating_point: str) -> np.ndarray:
    """Boolean [N, C]: calibrated probability at or above the card's threshold."""
    thr = np.array([card.threshold(name, operating_point) for name in card.classes])
    return probs >= thr[None, :]


def attach_to_card(model_dir: str | Path, key: str, report: dict[str, Any]) -> None:
    """Store a report's metrics (and its manifest hash) in the model card under ``metrics[key]``.

    The weights are untouched; the card is re-validated and rewritten atomically.

    Raises:
        ModelIntegrityError: the model directory fails its checks.
    """
    from calcdx.models.card import ModelCard

    model_dir = Path(model_dir)
    load_checkpoint(model_dir)  # verify before touching the card
    card_path = model_dir / "model_card.json"
    card = ModelCard.from_json(card_path)
    entry = dict(report["metrics"])
    entry["manifest_sha256"] = report["manifest_sha256"]
    entry["hard_negatives"] = report["hard_negatives"]
    entry["ood"] = report["ood"]
    metrics = dict(card.metrics)
    metrics[key] = entry
    tmp = card_path.with_suffix(".tmp")
    card.with_updates(metrics=metrics).to_json(tmp)
    tmp.replace(card_path)
