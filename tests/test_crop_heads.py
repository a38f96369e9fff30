"""The HADD crop heads (margin, site): crops, training through the CLI, integrity, and use by predict."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calcdx.datasets.manifest import read_manifest
from calcdx.datasets.reader import read_radiograph
from calcdx.errors import ModelIntegrityError
from calcdx.findings import Margin
from calcdx.inference import Predictor
from calcdx.inference.batch import _done_studies
from calcdx.inference.crop_head import field_crop, head_dir
from calcdx.inference.extent import EXTENT_HEAD_DIR, JOIN_GAP_MM, ExtentHead, extent_of
from calcdx.inference.margin import CROP_SPACING_MM, FIELD_MM, MARGIN_HEAD_DIR, MarginHead
from calcdx.inference.site import CPPD_SITE_HEAD_DIR, SITE_HEAD_DIR, CppdSiteHead, SiteHead
from calcdx.models import shipped_model_dir
from calcdx.pieces import axes_mm
from calcdx.training.crop_head import collect_crops
from calcdx.training.extent_head import extent_metrics, lesion_is_hadd, outline_probabilities
from calcdx.training.margin_head import CLASSES, lesion_margin, margin_metrics, probabilities_ill_defined
from calcdx.training.site_head import lesion_cppd_site, lesion_site, site_metrics, site_probabilities

CALCDX = str(Path(sys.executable).with_name("calcdx"))
SITE_ACCURACY_FLOOR = 0.85
"""Tendon accuracy the shipped site head must reach on fresh simulated HADD (1.00 on its validation set)."""
CPPD_SITE_ACCURACY_FLOOR = 0.8
"""Accuracy the shipped CPPD site head must reach on fresh simulated CPPD (cartilage site or tendon)."""
EXTENT_LOG_SD_CEILING = 0.3
"""Spread (sd of the log of found / true long axis) the shipped extent head must stay under on fresh simulated
HADD deposits; the classical measurement's is 0.44 on detected findings (docs/inference.md)."""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CALCDX, *args], capture_output=True, text=True, timeout=600)


def _train_and_val(root: Path, pattern: str, seeds: tuple[int, int], sizes: tuple[int, int]) -> tuple[Path, Path]:
    """A small simulated training and validation set of one pattern, through the CLI."""
    for name, seed, n in zip(("train", "val"), seeds, sizes, strict=True):
        result = _run("simulate", "--n", str(n), "--patterns", pattern, "--seed", str(seed), "--workers", "2",
                      "--out", str(root / name))
        assert result.returncode == 0, result.stderr
    return root / "train", root / "val"


@pytest.fixture(scope="module")
def hadd_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two small simulated HADD sets (other seeds than the shipped heads' training and validation sets)."""
    return _train_and_val(tmp_path_factory.mktemp("hadd"), "hadd", (811, 812), (24, 40))


@pytest.fixture(scope="module")
def cppd_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two small simulated CPPD sets (other seeds than the shipped CPPD site head's)."""
    return _train_and_val(tmp_path_factory.mktemp("cppd"), "cppd", (821, 822), (30, 40))


def test_cppd_site_head_files_tendon_deposits_as_tendon(cppd_sets: tuple[Path, Path], tmp_path: Path) -> None:
    train, val = cppd_sets
    shipped = CppdSiteHead(head_dir(None, CPPD_SITE_HEAD_DIR))
    rows = read_manifest(val / "manifest.csv")
    crops = collect_crops(rows, lesion_cppd_site, shipped.card.classes, field_mm=shipped.card.field_mm,
                          crop_spacing_mm=shipped.card.crop_spacing_mm, per_lesion=1)
    assert crops.lesions >= 10 and "tendon" in shipped.card.classes
    probabilities = site_probabilities(shipped.net, crops, shipped.card.classes, shipped.card.classes_by_body_part)
    assert site_metrics(crops, probabilities, shipped.card.threshold)["accuracy"] >= CPPD_SITE_ACCURACY_FLOOR

    model = tmp_path / "model"
    shutil.copytree(shipped_model_dir(), model, ignore=shutil.ignore_patterns(CPPD_SITE_HEAD_DIR))
    result = _run("train-head", "cppd-site", str(train / "manifest.csv"), "--val", str(val / "manifest.csv"),
                  "--out", str(model / CPPD_SITE_HEAD_DIR), "--epochs", "1", "--width", "4", "--crops-per-lesion", "1")
    assert result.returncode == 0, result.stderr
    card = json.loads((model / CPPD_SITE_HEAD_DIR / "head_card.json").read_text())
    assert card["task"] == "cppd_site" and "tendon" in card["classes"]
    predictor = Predictor(model)
    assert predictor.identity["cppd_site_head"]["weights_sha256"] == card["weights_sha256"]
    out = tmp_path / "results"
    images = [str(r.path) for r in rows if r.labels][:4]
    assert _run("predict", *images, "--out", str(out), "--model", str(model), "--no-progress", "--no-sr",
                "--no-overlay").returncode == 0
    cppd = [f for p in out.glob("1.*.json") for im in json.loads(p.read_text())["images"] for f in im["findings"]
            if f["pattern"] == "cppd"]
    assert cppd
    for finding in cppd:  # a named site decides the location class; a generic one keeps intra-articular
        named = finding["site_probability"] is not None
        assert (finding["location_class"] == "tendon") == (named and finding["site"] == "tendon")
        if named:
            assert finding["site"] in card["classes"] and finding["site_probability"] >= card["threshold"]


def test_crop_is_centred_on_the_deposit_at_the_head_spacing() -> None:
    spacing = (0.1, 0.1)
    image = np.zeros((600, 700), np.float32)
    rows, cols = np.indices(image.shape)
    image[np.hypot(rows - 250, cols - 400) <= 30] = 1.0  # a 6 mm disc
    size = round(FIELD_MM / CROP_SPACING_MM)
    crop = field_crop(image, (250.0, 400.0), spacing, FIELD_MM, size)
    assert crop.shape == (size, size)
    bright = crop > crop.max() / 2
    r, c = np.nonzero(bright)
    assert abs(r.mean() - (size - 1) / 2) < 1.0 and abs(c.mean() - (size - 1) / 2) < 1.0
    assert abs(np.sqrt(bright.sum() / np.pi) - 3.0 / CROP_SPACING_MM) < 1.0  # 3 mm radius
    corner = field_crop(image, (2.0, 3.0), spacing, FIELD_MM, size)  # the field runs off the image
    assert corner.shape == (size, size) and np.isfinite(corner).all()


def test_lesion_labels_come_from_the_annotations() -> None:
    assert lesion_margin({"kind": "hadd", "variant": "resorptive"}) == "ill_defined"
    assert lesion_margin({"kind": "hadd", "variant": "formative_resting"}) == "well_defined"
    assert lesion_margin({"kind": "cppd", "margin": "ill_defined"}) == "ill_defined"
    assert lesion_margin({"kind": "hadd", "variant": "formative_resting", "margin": "ill_defined"}) == "ill_defined"
    assert lesion_margin({"kind": "phlebolith", "variant": "single"}) is None
    assert lesion_cppd_site({"kind": "cppd", "location_class": "tendon", "site": "patellar tendon"}) == "tendon"
    assert lesion_cppd_site({"kind": "cppd", "location_class": "intra_articular", "site": "meniscus"}) == "meniscus"
    assert lesion_cppd_site({"kind": "hadd", "site": "supraspinatus tendon"}) is None
    assert lesion_site({"kind": "hadd", "site": "supraspinatus tendon"}) == "supraspinatus tendon"
    assert lesion_site({"kind": "cppd", "site": "hyaline cartilage"}) is None


def test_shipped_heads_read_margin_and_tendon_of_fresh_hadd(hadd_sets: tuple[Path, Path]) -> None:
    _, val = hadd_sets
    rows = read_manifest(val / "manifest.csv")
    margin = MarginHead(head_dir(None, MARGIN_HEAD_DIR))
    crops = collect_crops(rows, lesion_margin, CLASSES, field_mm=margin.card.field_mm,
                          crop_spacing_mm=margin.card.crop_spacing_mm, per_lesion=1)
    assert crops.lesions >= 15 and len(np.unique(crops.labels)) == 2
    metrics = margin_metrics(crops.labels, probabilities_ill_defined(margin.net, crops.crops), margin.card.threshold)
    assert metrics["auroc"] >= 0.85, metrics
    assert metrics["balanced_accuracy"] >= 0.75, metrics

    site = SiteHead(head_dir(None, SITE_HEAD_DIR))
    crops = collect_crops(rows, lesion_site, site.card.classes, field_mm=site.card.field_mm,
                          crop_spacing_mm=site.card.crop_spacing_mm, per_lesion=1)
    assert crops.lesions >= 15
    probabilities = site_probabilities(site.net, crops, site.card.classes, site.card.classes_by_body_part)
    metrics = site_metrics(crops, probabilities, site.card.threshold)
    assert metrics["accuracy"] >= SITE_ACCURACY_FLOOR, metrics

    extent = ExtentHead(head_dir(None, EXTENT_HEAD_DIR))
    crops = collect_crops(rows, lesion_is_hadd, ["deposit"], field_mm=extent.card.field_mm,
                          crop_spacing_mm=extent.card.crop_spacing_mm, per_lesion=1, with_masks=True)
    assert crops.lesions >= 15 and crops.masks is not None and crops.masks.shape == crops.crops.shape
    # every deposit the simulator draws (2 mm and longer): the shipped head is trained on 2-30 mm since 2026-12-07
    # (docs/model.md, "The HADD extent head")
    spacing = (extent.card.crop_spacing_mm, extent.card.crop_spacing_mm)
    trained_range = np.array([axes_mm(mask, spacing)[0] >= 2.0 for mask in crops.masks])
    assert trained_range.sum() >= 15
    metrics = extent_metrics(outline_probabilities(extent.net, crops.crops[trained_range]),
                             crops.masks[trained_range], extent.card.threshold)
    assert 0.85 <= metrics["long"]["median"] <= 1.15, metrics
    assert metrics["long"]["log_sd"] <= EXTENT_LOG_SD_CEILING, metrics


def test_extent_is_measured_on_the_central_piece() -> None:
    spacing = 0.4
    rows, cols = np.indices((80, 80))
    probability = np.zeros((80, 80), np.float32)
    probability[((rows - 39.5) / (2.0 / spacing)) ** 2 + ((cols - 39.5) / (5.0 / spacing)) ** 2 <= 1] = 0.9
    probability[2:6, 2:30] = 0.9  # something else at the field's edge
    found = extent_of(probability, 0.5, spacing)
    assert found is not None
    assert abs(found.long_mm - 10.0) <= 2 * spacing and abs(found.short_mm - 4.0) <= 2 * spacing
    assert abs(found.area_mm2 - np.pi * 5.0 * 2.0) < 3.0
    assert extent_of(np.zeros((80, 80), np.float32), 0.5, spacing) is None


def test_a_deposit_broken_by_the_threshold_is_measured_whole() -> None:
    """A fluffy (resorptive) deposit falls apart at the threshold: pieces within ``JOIN_GAP_MM`` of the
    central one are measured with it; a neighbour farther away is not."""
    spacing = 0.4
    probability = np.zeros((80, 80), np.float32)
    probability[37:43, 30:40] = 0.9  # 4 mm: the central piece
    probability[37:43, 44:54] = 0.9  # 4 mm more, beyond a 1.6 mm gap
    probability[37:43, 10:16] = 0.9  # 5.6 mm away: something else
    assert JOIN_GAP_MM >= 2.0
    whole = extent_of(probability, 0.5, spacing)
    central = extent_of(probability, 0.5, spacing, join_gap_mm=0.0)
    assert whole is not None and central is not None
    assert abs(central.long_mm - 4.0) <= 2 * spacing
    assert abs(whole.long_mm - 9.6) <= 2 * spacing  # both pieces and the gap between them
    assert abs(whole.area_mm2 - 2 * 60 * spacing**2) < 1e-6  # the pieces' area only, not the gap's


def test_train_head_cli_writes_heads_that_predict_uses(hadd_sets: tuple[Path, Path], tmp_path: Path) -> None:
    train, val = hadd_sets
    model = tmp_path / "model"
    shutil.copytree(shipped_model_dir(), model,
                    ignore=shutil.ignore_patterns(MARGIN_HEAD_DIR, SITE_HEAD_DIR, EXTENT_HEAD_DIR))
    cards = {}
    for task, folder in (("margin", MARGIN_HEAD_DIR), ("site", SITE_HEAD_DIR), ("extent", EXTENT_HEAD_DIR)):
        result = _run("train-head", task, str(train / "manifest.csv"), "--val", str(val / "manifest.csv"),
                      "--out", str(model / folder), "--epochs", "1", "--width", "4", "--crops-per-lesion", "2")
        assert result.returncode == 0, result.stderr
        assert "validation (" in result.stdout
        cards[task] = json.loads((model / folder / "head_card.json").read_text())
        assert cards[task]["task"] == task and cards[task]["training"]["manifests"][0]["sha256"]
    by_body_part = cards["site"]["classes_by_body_part"]
    assert set(by_body_part["shoulder"]) <= {"supraspinatus tendon", "infraspinatus tendon", "subscapularis tendon"}
    assert all(set(v) <= set(cards["site"]["classes"]) for v in by_body_part.values())
    predictor = Predictor(model)
    assert predictor.margin_head is not None and predictor.margin_head.head_dir == model / MARGIN_HEAD_DIR
    assert predictor.identity["margin_head"]["weights_sha256"] == cards["margin"]["weights_sha256"]
    assert predictor.identity["site_head"]["weights_sha256"] == cards["site"]["weights_sha256"]
    assert predictor.identity["extent_head"]["weights_sha256"] == cards["extent"]["weights_sha256"]
    assert cards["extent"]["validation"]["centred_crops"]["lesions"] > 0
    assert Predictor().identity["margin_head"]["weights_sha256"] != cards["margin"]["weights_sha256"]

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
        assert finding["margin"] == (Margin.ILL_DEFINED if p >= cards["margin"]["threshold"] else Margin.WELL_DEFINED)
        if finding["site_probability"] is not None:
            assert finding["site"] in cards["site"]["classes"]
            assert finding["site_probability"] >= cards["site"]["threshold"]
    # the sizes are the extent head's, measured on its outline around the finding's centroid
    sources = {json.loads(p.read_text())["images"][0]["source"] for p in out.glob("1.*.json")}
    measured = 0
    for source in sources:
        radiograph = read_radiograph(source)
        findings = [f for p in out.glob("1.*.json") for im in json.loads(p.read_text())["images"]
                    if im["source"] == source for f in im["findings"] if f["pattern"] == "hadd"]
        for finding in findings:
            outline = predictor.extent_head.extent(radiograph.image, tuple(finding["centroid_px"]),
                                                   radiograph.pixel_spacing_mm)
            if outline is not None:
                assert finding["long_axis_mm"] == round(outline.long_mm, 2)
                measured += 1
    assert measured

    summary = [r for r in csv.DictReader((out / "summary.csv").open()) if r["pattern"] == "hadd"]
    assert len(summary) == len(hadd) and all(0.0 <= float(r["margin_probability"]) <= 1.0 for r in summary)
    # results made with other heads are stale: a re-run with the shipped heads redoes every study
    assert _done_studies(out, predictor.identity) and not _done_studies(out, Predictor().identity)


def test_validation_patients_must_be_other_patients(hadd_sets: tuple[Path, Path], tmp_path: Path) -> None:
    train, _ = hadd_sets
    result = _run("train-head", "margin", str(train / "manifest.csv"), "--val", str(train / "manifest.csv"),
                  "--out", str(tmp_path / "head"))
    assert result.returncode == 2
    assert "patients are in both manifests" in result.stderr


def test_a_tampered_head_is_refused_naming_the_file(tmp_path: Path) -> None:
    head = tmp_path / "head"
    shutil.copytree(head_dir(None, MARGIN_HEAD_DIR), head)
    with pytest.raises(ModelIntegrityError, match="task 'margin', expected 'site'"):
        SiteHead(head)
    weights = head / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256") as info:
        MarginHead(head)
    assert str(weights) in str(info.value)
    (head / "head_card.json").unlink()
    with pytest.raises(ModelIntegrityError, match="missing"):
        MarginHead(head)


def test_a_sliver_of_a_large_deposit_keeps_the_classical_measurement() -> None:
    from calcdx.inference.findings import _head_missed_large_deposit

    assert _head_missed_large_deposit(0.4, 19.5)  # seed 8484: a 27 mm deposit, the head found one pixel
    assert not _head_missed_large_deposit(5.7, 13.2)  # a short box: the head is trusted
    assert not _head_missed_large_deposit(7.5, 16.5)  # the box overestimated a 7.8 mm deposit; the head was right


@pytest.mark.parametrize(("head_class", "folder"), [(SiteHead, SITE_HEAD_DIR), (MarginHead, MARGIN_HEAD_DIR),
                                                    (ExtentHead, EXTENT_HEAD_DIR)])
def test_a_single_crop_gives_what_it_gives_in_a_batch(head_class: type, folder: str) -> None:
    """A head runs a single crop's one-channel convolutions as a batch of two (``PairedConv``: faster on a
    CPU); its logits are those of the same crop in a batch of three, and the paired convolutions hold the
    head's own weights."""
    import torch

    from calcdx.inference.crop_head import PairedConv

    head = head_class(head_dir(None, folder))
    paired = [m for m in head.net.modules() if isinstance(m, PairedConv)]
    assert len(paired) == 1 and paired[0].conv.in_channels == 1
    crops = np.random.default_rng(5).normal(size=(3, 1, head.card.crop_size, head.card.crop_size)).astype(np.float32)
    with torch.inference_mode():
        together = head.net(torch.from_numpy(crops))
    alone = np.stack([head.logits(crop[0]).numpy() for crop in crops])
    np.testing.assert_allclose(alone, together.numpy(), atol=1e-4)
