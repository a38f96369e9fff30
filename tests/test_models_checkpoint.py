"""Checkpoint: save/load round trip, sha256 check, model card JSON round trip, shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from calcdx.errors import ModelIntegrityError
from calcdx.models import create_model, shipped_model_dir
from calcdx.models.card import ModelCard
from calcdx.models.checkpoint import CARD_NAME, WEIGHTS_NAME, load_checkpoint, save_checkpoint
from calcdx.models.ood import fit_ood, is_ood, is_refused, ood_score, thresholds


def _card(**kw) -> ModelCard:
    base = dict(name="test", version="0.0.1", architecture="tiny",
                thresholds={"hadd": {"possible": 0.2, "definite": 0.8}}, temperature=1.3)
    base.update(kw)
    return ModelCard(**base)


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = create_model("tiny", pooling="attention").eval()
    card = save_checkpoint(tmp_path, model, _card(architecture_kwargs={"pooling": "attention"}))
    assert len(card.weights_sha256) == 64
    loaded = load_checkpoint(tmp_path)
    assert loaded.card == card
    assert not loaded.model.training
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        a, b = model(x), loaded.model(x)
    for t1, t2 in zip(a, b, strict=True):
        assert torch.equal(t1, t2)


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, create_model("tiny"), _card())
    w = tmp_path / WEIGHTS_NAME
    data = bytearray(w.read_bytes())
    data[-5] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256 mismatch") as exc:
        load_checkpoint(tmp_path)
    assert exc.value.code == "E_MODEL_INTEGRITY"


def test_card_without_hash_or_missing_files_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, create_model("tiny"), _card())
    card = json.loads((tmp_path / CARD_NAME).read_text())
    card["weights_sha256"] = ""
    (tmp_path / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError, match="no weights_sha256"):
        load_checkpoint(tmp_path)
    with pytest.raises(ModelIntegrityError, match="not found"):
        load_checkpoint(tmp_path / "nowhere")


def test_weights_of_another_architecture_refused(tmp_path: Path) -> None:
    card = save_checkpoint(tmp_path, create_model("tiny"), _card())
    (tmp_path / CARD_NAME).write_text(card.with_updates(architecture="mobilenet_v3_small").to_json())
    with pytest.raises(ModelIntegrityError, match="do not fit"):
        load_checkpoint(tmp_path)


def test_card_json_round_trip_and_validation(tmp_path: Path) -> None:
    card = _card(metrics={"macro_auroc": float("nan")}, ood={"threshold": 3.0})
    path = tmp_path / "card.json"
    card.to_json(path)
    back = ModelCard.from_json(path)
    assert back.metrics == {"macro_auroc": None}  # NaN is written as null (strict JSON)
    assert back.with_updates(metrics=card.metrics).to_dict() == json.loads(card.to_json()) | {
        "metrics": {"macro_auroc": None}}
    assert back.threshold("hadd", "definite") == 0.8
    assert back.threshold("cppd", "possible") == 0.5
    with pytest.raises(ModelIntegrityError, match="threshold"):
        _card(thresholds={"hadd": {"possible": 1.5}})
    with pytest.raises(ModelIntegrityError, match="unknown class"):
        _card(thresholds={"gout": {"possible": 0.5}})
    path.write_text('{"name": "x"}')
    with pytest.raises(ModelIntegrityError, match="version"):
        ModelCard.from_json(path)


def test_ood_statistics_flag_shifted_features() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 8))
    stats = fit_ood(train, percentile=99)
    assert 0.005 <= is_ood(train, stats).mean() <= 0.02
    shifted = rng.normal(loc=4.0, size=(50, 8))
    assert is_ood(shifted, stats).all()
    assert np.isnan(ood_score(train[:2], {})).all()
    # two bands: flagged above the threshold, refused only above twice it
    assert stats["refuse_threshold"] == pytest.approx(2 * stats["threshold"])
    assert not is_refused(train, stats).any() and is_refused(rng.normal(loc=12.0, size=(5, 8)), stats).all()
    assert thresholds({}) == (np.inf, np.inf)
    assert thresholds({"threshold": 3.0}) == (3.0, 6.0)  # cards written before the refusal band


def test_ood_threshold_from_held_out_images_declines_about_the_chosen_share_of_new_images() -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    mixing = rng.normal(size=(48, 48)) * np.logspace(0, 2, 48)[None, :]  # correlated features of unequal scale
    train, held_out, new = (rng.normal(size=(n, 48)) @ mixing for n in (300, 1000, 5000))
    stats = fit_ood(train, percentile=99, held_out=held_out)
    assert stats["threshold_from"] == "1000 held-out images"
    assert 0.004 <= is_ood(new, stats).mean() <= 0.025  # about the 1 % chosen, on images never seen


def test_heavy_disease_is_not_out_of_distribution_but_a_new_kind_of_image_is() -> None:
    import numpy as np

    rng = np.random.default_rng(2)

    def images(n: int, disease: bool) -> np.ndarray:
        feats = rng.normal(size=(n, 16))
        if disease:  # extensive calcification: far from the negatives, and more varied
            feats[:, :4] = feats[:, :4] * 3.0 + 6.0
        return feats

    train = np.concatenate([images(400, False), images(60, True)])
    labels = np.zeros((460, 2))
    labels[400:, 1] = 1
    held_out = np.concatenate([images(200, False), images(30, True)])
    stats = fit_ood(train, labels, class_names=["a", "b"], percentile=99, held_out=held_out)
    assert stats["groups"] == {"negative": 400, "b": 60}  # "a" has no images: no group of its own
    assert is_ood(images(200, True), stats).mean() <= 0.05
    assert is_ood(rng.normal(loc=-5.0, size=(50, 16)), stats).all()
    single = fit_ood(train, percentile=99, held_out=held_out)  # one Gaussian: declines the disease
    assert is_ood(images(200, True), single).mean() > is_ood(images(200, True), stats).mean()
    with pytest.raises(ValueError, match="class names"):
        fit_ood(train, labels, class_names=["a"])


def test_shipped_model_loads_and_is_small() -> None:
    d = shipped_model_dir()
    assert (d / WEIGHTS_NAME).stat().st_size <= 25 * 1024 * 1024
    loaded = load_checkpoint(d)
    card = loaded.card
    assert list(card.classes) == ["hadd", "cppd", "tumoral_calcinosis", "phlebolith", "myositis_ossificans",
                                  "calcinosis_universalis"]
    assert set(card.thresholds) == set(card.classes)
    with torch.no_grad():
        out = loaded.model(torch.rand(1, 1, 128, 128))
    assert out.logits.shape == (1, len(card.classes))
    assert out.maps.shape[-1] == 128 // card.stride
