"""Reference inference on the model grid: padding, tiling and calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calcdx.models import create_model
from calcdx.models.apply import fold_batch_norm, prepare_for_inference, run_on_grid
from calcdx.models.card import ModelCard
from calcdx.models.ood import fit_ood


def test_run_on_grid_whole_and_tiled_agree_on_shapes_and_calibration() -> None:
    torch.manual_seed(0)
    model = create_model("tiny", pooling="max").eval()
    grid = np.random.default_rng(0).random((200, 150)).astype(np.float32)
    with torch.no_grad():
        feats = model(torch.rand(20, 1, 64, 64)).features.numpy()
    card = ModelCard(name="t", version="0", architecture="tiny", temperature=2.0, ood=fit_ood(feats))
    whole = run_on_grid(model, card, grid)
    assert whole.probabilities.shape == (6,)
    assert whole.prob_maps.shape == (6, 25, 19)  # ceil(200/8), ceil(150/8)
    expected = 1 / (1 + np.exp(-whole.logits / 2.0))
    assert np.allclose(whole.probabilities, expected, atol=1e-6)
    assert np.isfinite(whole.ood_distance)
    tiled = run_on_grid(model, card.with_updates(max_size_px=96), grid)
    assert tiled.prob_maps.shape == whole.prob_maps.shape
    # with max pooling the image probability is the top map cell
    assert np.allclose(tiled.probabilities, tiled.prob_maps.reshape(6, -1).max(1), atol=1e-5)


@pytest.mark.parametrize("prepare", [fold_batch_norm, prepare_for_inference])
def test_preparing_for_inference_keeps_the_outputs(prepare) -> None:
    """Folding batch norm, and channels-last order on top of it (what ``Predictor`` runs)."""
    import copy

    torch.manual_seed(0)
    model = create_model("mobilenet_v3_small", local_contrast=4.0)
    model.train()
    with torch.no_grad():  # running statistics away from their initial values
        for _ in range(3):
            model(torch.rand(4, 1, 96, 96))
    model.eval()
    prepared = prepare(copy.deepcopy(model))
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules()) < n_bn // 2
    if prepare is prepare_for_inference:
        conv = next(m for m in prepared.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 1, 128, 96)
    with torch.no_grad():
        a, b = model(x), prepared(x)
    assert torch.allclose(a.maps, b.maps, atol=1e-4)
    assert torch.allclose(a.logits, b.logits, atol=1e-4)
    assert torch.allclose(a.features, b.features, atol=1e-4)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norm(model.train())


def test_torchscript_export_matches_and_stays_size_generic(tmp_path) -> None:
    from calcdx.models.checkpoint import load_checkpoint, save_checkpoint
    from calcdx.models.export import export_model

    card = ModelCard(name="t", version="0", architecture="tiny")
    save_checkpoint(tmp_path / "m", create_model("tiny"), card)
    path = export_model(tmp_path / "m", tmp_path / "m.pt", example_size=(64, 64))
    assert path.with_suffix(".card.json").is_file()
    scripted = torch.jit.load(str(path))
    model = load_checkpoint(tmp_path / "m").model
    x = torch.rand(1, 1, 96, 128)  # not the example size
    with torch.no_grad():
        assert torch.allclose(scripted(x)[1], model(x).logits, atol=1e-5)
