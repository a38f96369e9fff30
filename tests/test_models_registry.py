"""Registry: every registered model builds and gives ModelOutput of the documented shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from calcdx.errors import ConfigError
from calcdx.models import ModelOutput, create_model, list_models


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_builds_and_runs(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=6)
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 64, 96))
    assert isinstance(out, ModelOutput)
    s = model.stride
    assert s in (8, 16)
    assert out.maps.shape == (2, 6, 64 // s, 96 // s)
    assert out.logits.shape == (2, 6)
    assert out.features.shape == (2, model.feature_dim)
    assert torch.isfinite(out.logits).all()


def test_stride_16_and_pooling_options() -> None:
    x = torch.rand(1, 1, 64, 64)
    for pooling in ("lse", "max", "attention"):
        m = create_model("tiny", num_classes=3, output_stride=16, pooling=pooling).eval()
        with torch.no_grad():
            out = m(x)
        assert out.maps.shape == (1, 3, 4, 4)
        assert out.logits.shape == (1, 3)
    # max pooling of the maps equals the image logit
    m = create_model("tiny", pooling="max").eval()
    with torch.no_grad():
        out = m(x)
    assert torch.allclose(out.logits, out.maps.flatten(2).amax(2))


def test_lse_pooling_lies_between_mean_and_max() -> None:
    m = create_model("tiny").eval()
    with torch.no_grad():
        out = m(torch.rand(2, 1, 64, 64))
    flat = out.maps.flatten(2)
    assert (out.logits <= flat.amax(2) + 1e-5).all()
    assert (out.logits >= flat.mean(2) - 1e-5).all()


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(ConfigError, match="resnet18"):
        create_model("resnet81")
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("tiny", num_classes=0)
    with pytest.raises(ConfigError, match="output_stride"):
        create_model("tiny", output_stride=4)


def test_torchvision_backbone_is_adapted_to_one_channel(tmp_path) -> None:
    import torchvision

    tv = torchvision.models.resnet18(weights=None)
    assert tv.conv1.in_channels == 3
    # a local "pretrained" file (what a user with ImageNet weights would pass)
    weights = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), weights)
    model = create_model("resnet18", pretrained=str(weights))
    first = model.backbone.stages[0][0]
    assert first.in_channels == 1
    expected = tv.conv1.weight.sum(dim=1, keepdim=True)
    assert torch.allclose(first.weight, expected)


def test_local_contrast_front_end_highlights_small_dense_spots() -> None:
    from calcdx.models.net import LocalContrast

    x = torch.full((1, 1, 96, 96), 0.5)
    x[..., :, 48:] = 0.8  # a broad edge (anatomy)
    x[..., 30:33, 20:23] = 0.6  # a faint 3-px spot (calcification)
    z = LocalContrast(sigma_px=6.0)(x)
    assert z.shape == (1, 2, 96, 96)
    assert torch.equal(z[:, :1], x)
    assert z[0, 1, 31, 21] > 0.5  # the spot stands out in the high-pass channel
    model = create_model("tiny", local_contrast=6.0).eval()
    with torch.no_grad():
        out = model(x)
    assert out.maps.shape == (1, 6, 12, 12)


def test_running_sum_box_mean_equals_average_pooling() -> None:
    import torch.nn.functional as F  # noqa: N812 (torch convention)

    from calcdx.models.net import _box_mean

    x = torch.rand(2, 1, 70, 53) ** 4  # squared high-pass energies: small, skewed, non-negative
    for dim, kernel, pad in ((3, (1, 41), (20, 20, 0, 0)), (2, (41, 1), (0, 0, 20, 20))):
        pooled = F.avg_pool2d(F.pad(x, pad, mode="replicate"), kernel, stride=1)
        assert torch.allclose(_box_mean(x, 41, dim=dim), pooled, atol=1e-7, rtol=1e-5)


def test_local_contrast_through_opencv_equals_the_torch_filters() -> None:
    from calcdx.datasets.reader import read_radiograph
    from calcdx.datasets.transforms import to_model_grid
    from calcdx.models.net import LocalContrast

    example = sorted((Path(__file__).parents[1] / "examples").glob("*.dcm"))[0]
    grid = to_model_grid(read_radiograph(example), 0.4)
    x = torch.stack([torch.from_numpy(grid[:320, :288]), torch.rand(320, 288) ** 3])[:, None].contiguous()
    front = LocalContrast(sigma_px=8.0)
    fast = front(x)  # CPU, float32, no gradient: OpenCV
    exact = front(x.clone().requires_grad_(True)).detach()  # the torch filters
    assert fast.shape == exact.shape == (2, 2, 320, 288)
    assert torch.equal(fast[:, :1], x)
    assert torch.allclose(fast, exact, atol=1e-5)
