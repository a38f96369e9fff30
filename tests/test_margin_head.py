"""The learned HADD margin head: crops, training through the CLI, integrity, and use by predict."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calcdx.datasets.manifest import read_manifest
from calcdx.errors import ModelIntegrityError
from calcdx.findings import Margin
from calcdx.inference import Predictor
from calcdx.inference.margin import CROP_SIZE, MARGIN_HEAD_DIR, MarginHead, margin_crop, margin_head_dir
from calcdx.models import shipped_model_dir
from calcdx.training.margin_head import collect_crops, lesion_margin, margin_metrics, predict_probabilities

CALCDX = str(Path(sys.executable).with_name("calcdx"))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CALCDX, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def hadd_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two small simulated HADD sets (other seeds than the shipped head's training and validation sets)."""
    root = tmp_path_factory.mktemp("hadd")
    for name, seed, n in (("train", 811, 24), ("val", 812, 40)):
        result = _run("simulate", "--n", str(n), "--patterns", "hadd", "--seed", str(seed), "--workers", "2",
                      "--out", str(root / name))
        assert result.returncode == 0, result.stderr
    return root / "train", root / "val"


def test_crop_is_centred_on_the_deposit_at_the_head_spacing() -> None:
    spacing = (0.1, 0.1)
    image = np.zeros((600, 700), np.float32)
    rows, cols = np.indices(image.shape)
    image[np.hypot(rows - 250, cols - 400) <= 30] = 1.0  # a 6 mm disc
    crop = margin_crop(image, (250.0, 400.0), spacing)
    assert crop.shape == (CROP_SIZE, CROP_SIZE)
    bright = crop > crop.max() / 2
    r, c = np.nonzero(bright)
    assert abs(r.mean() - (CROP_SIZE - 1) / 2) < 1.0 and abs(c.mean() - (CROP_SIZE - 1) / 2) < 1.0
    assert abs(np.sqrt(bright.sum() / np.pi) - 3.0 / 0.25) < 1.0  # 3 mm radius at 0.25 mm per pixel
    corner = margin_crop(image, (2.0, 3.0), spacing)  # the field runs off the image: edges replicate
    assert corner.shape == (CROP_SIZE, CROP_SIZE) and np.isfinite(corner).all()


def test_lesion_labels_come_from_the_margin_or_the_hadd_variant() -> None:
    assert lesion_margin({"kind": "hadd", "variant": "resorptive"}) == 1.0
    assert lesion_margin({"kind": "hadd", "variant": "formative_resting"}) == 0.0
    assert lesion_margin({"kind": "cppd", "margin": "ill_defined"}) == 1.0
    assert lesion_margin({"kind": "hadd", "variant": "formative_resting", "margin": "ill_defined"}) == 1.0
    assert lesion_margin({"kind": "phlebolith", "variant": "single"}) is None


def test_shipped_head_tells_resorptive_from_formative_hadd(hadd_sets: tuple[Path, Path]) -> None:
    _, val = hadd_sets
    head = MarginHead(margin_head_dir(None))
    crops = collect_crops(read_manifest(val / "manifest.csv"), per_lesion=1)
    assert crops.lesions >= 15 and len(np.unique(crops.labels)) == 2
    metrics = margin_metrics(crops.labels, predict_probabilities(head.net, crops.crops), head.card.threshold)
    assert metrics["auroc"] >= 0.85, metrics
    assert metrics["balanced_accuracy"] >= 0.75, metrics


def test_train_margin_cli_writes_a_head_that_predict_uses(hadd_sets: tuple[Path, Path], tmp_path: Path) -> None:
    train, val = hadd_sets
    model = tmp_path / "model"
    shutil.copytree(shipped_model_dir(), model, ignore=shutil.ignore_patterns(MARGIN_HEAD_DIR))
    result = _run("train-margin", str(train / "manifest.csv"), "--val", str(val / "manifest.csv"), "--out",
                  str(model / MARGIN_HEAD_DIR), "--epochs", "1", "--width", "4", "--crops-per-lesion", "2")
    assert result.returncode == 0, result.stderr
    assert "validation (" in result.stdout and "AUROC" in result.stdout
    card = json.loads((model / MARGIN_HEAD_DIR / "margin_card.json").read_text())
    assert card["width"] == 4 and card["training"]["manifest_sha256"] and 0 < card["threshold"] <= 1
    predictor = Predictor(model)
    assert predictor.margin_head is not None and predictor.margin_head.head_dir == model / MARGIN_HEAD_DIR
    assert predictor.identity["margin_head"]["weights_sha256"] == card["weights_sha256"]
    shipped = Predictor()
    assert shipped.identity["margin_head"]["weights_sha256"] != card["weights_sha256"]

    out = tmp_path / "results"
    images = [r.path for r in read_manifest(val / "manifest.csv") if r.labels][:4]
    result = _run("predict", *map(str, images), "--out", str(out), "--model", str(model), "--no-progress",
                  "--no-sr", "--no-overlay")
    assert result.returncode == 0, result.stderr
    hadd = [f for p in out.glob("*.json") for im in json.loads(p.read_text())["images"] for f in im["findings"]
            if f["pattern"] == "hadd"]
    assert hadd, "the model found no HADD in four HADD images"
    for finding in hadd:
        p = finding["margin_probability"]
        assert 0.0 <= p <= 1.0
        assert finding["margin"] == (Margin.ILL_DEFINED if p >= card["threshold"] else Margin.WELL_DEFINED)


def test_validation_patients_must_be_other_patients(hadd_sets: tuple[Path, Path], tmp_path: Path) -> None:
    train, _ = hadd_sets
    result = _run("train-margin", str(train / "manifest.csv"), "--val", str(train / "manifest.csv"), "--out",
                  str(tmp_path / "head"))
    assert result.returncode == 2
    assert "patients are in both manifests" in result.stderr


def test_a_tampered_head_is_refused_naming_the_file(tmp_path: Path) -> None:
    head = tmp_path / "head"
    shutil.copytree(margin_head_dir(None), head)
    weights = head / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256") as info:
        MarginHead(head)
    assert str(weights) in str(info.value)
    (head / "margin_card.json").unlink()
    with pytest.raises(ModelIntegrityError, match="missing"):
        MarginHead(head)
