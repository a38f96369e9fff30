"""Backbone + dense per-pattern head: logit maps at stride 8 or 16 and pooled image logits.

Any torchvision classification backbone is cut after its last stage at stride 16 (deeper
stages are dropped: calcifications are millimetres wide and the deep stages cost most of
the parameters).  A small top-down fusion adds the stride-8 stage, a 3x3 conv block and a
1x1 classifier give one logit map per pattern, and the image-level logit of each pattern
is pooled from its map (log-sum-exp, max or attention pooling), so the same network gives
labels and locations and trains from image labels alone or with masks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn
from torchvision import models as tvm

from calcdx.errors import ConfigError, ModelIntegrityError
from calcdx.models.output import ModelOutput
from calcdx.models.registry import register_model

logger = logging.getLogger(__name__)

POOLINGS = ("lse", "max", "attention")


def _first_conv(module: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    for name, child in module.named_modules():
        if isinstance(child, nn.Conv2d):
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            return parent, attr, child
    raise ConfigError("backbone has no Conv2d layer")


def adapt_to_grayscale(module: nn.Module, in_channels: int = 1) -> None:
    """Replace the first conv (3 input channels) by an ``in_channels`` conv.

    Channel 0 gets the sum of the RGB weights (so local ImageNet weights still see a grey
    image); further channels (the local-contrast channel) start at zero.
    """
    parent, attr, conv = _first_conv(module)
    if conv.in_channels == in_channels:
        return
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride,  # type: ignore[arg-type]
                    conv.padding, conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :1].copy_(conv.weight.sum(dim=1, keepdim=True))
        if in_channels > 1:
            nn.init.kaiming_normal_(new.weight[:, 1:], mode="fan_out", nonlinearity="relu")
        if conv.bias is not None and new.bias is not None:
            new.bias.copy_(conv.bias)
    setattr(parent, attr, new)


class LocalContrast(nn.Module):
    """Fixed front end: the image plus its locally normalised high-pass, ``[B, 1] -> [B, 2]``.

    ``z = (x - gaussian(x, sigma)) / local_rms``, squashed by ``tanh(z / 3)``: small dense
    structures (calcifications) stand out whatever the vendor processing, so a network
    trained from scratch finds them in far fewer steps.

    Args:
        sigma_px: Gaussian sigma in model-grid pixels.
        window_px: side of the box over which the local RMS is taken.
    """

    def __init__(self, sigma_px: float, window_px: int = 41) -> None:
        super().__init__()
        radius = max(1, round(3 * sigma_px))
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        k = torch.exp(-0.5 * (t / sigma_px) ** 2)
        self.register_buffer("kernel", (k / k.sum()).view(1, 1, 1, -1), persistent=False)
        self.radius = radius
        self.sigma_px = float(sigma_px)
        self.window = window_px | 1

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad:
            return torch.cat([x, self._high_pass_opencv(x)], dim=1)
        r = self.radius
        blur = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), self.kernel)
        blur = F.conv2d(F.pad(blur, (0, 0, r, r), mode="replicate"), self.kernel.transpose(2, 3))
        hp = x - blur
        energy = _box_mean(_box_mean(hp * hp, self.window, dim=3), self.window, dim=2)
        z = hp / (energy.clamp_min(0.0).sqrt() + 1e-3)
        return torch.cat([x, torch.tanh(z / 3.0)], dim=1)

    def _high_pass_opencv(self, x: Tensor) -> Tensor:
        """The same channel through OpenCV, image by image: on the CPU its separable Gaussian and box
        filter cost a quarter of the single-channel convolutions and running sums above (3 against
        12 ms on a 672 x 528 grid, one thread; 5e-7 apart, within the test's 1e-5).  The front end has no
        parameters and its input needs no gradient, so training and inference both take this path."""
        import cv2
        import numpy as np

        size = 2 * self.radius + 1
        out = torch.empty_like(x)
        for i in range(x.shape[0]):
            image = x[i, 0].contiguous().numpy()
            hp = image - cv2.GaussianBlur(image, (size, size), sigmaX=self.sigma_px, sigmaY=self.sigma_px,
                                          borderType=cv2.BORDER_REPLICATE)
            energy = cv2.boxFilter(hp * hp, -1, (self.window, self.window), normalize=True,
                                   borderType=cv2.BORDER_REPLICATE)
            np.maximum(energy, 0.0, out=energy)
            np.sqrt(energy, out=energy)
            energy += np.float32(1e-3)
            hp /= energy
            hp *= np.float32(1.0 / 3.0)
            out[i, 0] = torch.from_numpy(np.tanh(hp, out=hp))
        return out


def _box_mean(x: Tensor, window: int, dim: int) -> Tensor:
    """Mean over ``window`` (odd) samples centred on each sample along ``dim``, replicate borders.

    A running sum (float64 cumsum) costs the same whatever the window, ~3x less than
    ``avg_pool2d`` with a 41-sample kernel; equal to it to ~1e-9.
    """
    w = window // 2
    padded = F.pad(x, (w, w, 0, 0) if dim == 3 else (0, 0, w, w), mode="replicate").double()
    sums = torch.cumsum(padded, dim)
    sums = torch.cat([torch.zeros_like(sums.narrow(dim, 0, 1)), sums], dim)
    n = x.shape[dim]
    return ((sums.narrow(dim, window, n) - sums.narrow(dim, 0, n)) / window).to(x.dtype)


def load_local_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local torchvision state dict (``.pth`` via ``weights_only=True`` or ``.safetensors``).

    Keys that do not exist in ``model`` (e.g. the ImageNet classifier) are ignored; a
    shape mismatch raises.

    Raises:
        ModelIntegrityError: unreadable file or no matching keys.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader error becomes one integrity error
        raise ModelIntegrityError(f"cannot read pretrained weights: {exc}", path=path) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ModelIntegrityError("no parameter of the file matches the backbone", path=path)
    model.load_state_dict(usable, strict=False)
    logger.info("loaded %d/%d tensors from %s", len(usable), len(own), path)


class Backbone(nn.Module):
    """The stages of a torchvision feature extractor up to stride 16.

    Attributes:
        channels8, channels16: channel counts of the stride-8 and stride-16 outputs.
    """

    def __init__(self, stages: nn.Sequential, in_channels: int = 1) -> None:
        super().__init__()
        strides, channels = _probe(stages, in_channels)
        idx16 = max((i for i, s in enumerate(strides) if s == 16), default=None)
        idx8 = max((i for i, s in enumerate(strides) if s == 8), default=None)
        if idx16 is None or idx8 is None:
            raise ConfigError(f"backbone has no stride-8/16 stages (strides {strides})")
        self.stages = nn.Sequential(*list(stages.children())[: idx16 + 1])
        self.idx8 = idx8
        self.channels8 = channels[idx8]
        self.channels16 = channels[idx16]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f8 = x
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i == self.idx8:
                f8 = x
        return f8, x


def _probe(stages: nn.Sequential, in_channels: int = 1) -> tuple[list[int], list[int]]:
    """Output stride and channels after each stage (one dummy forward in eval mode)."""
    was_training = stages.training
    stages.eval()
    strides: list[int] = []
    channels: list[int] = []
    size = 64
    x = torch.zeros(1, in_channels, size, size)
    with torch.no_grad():
        for stage in stages:
            x = stage(x)
            strides.append(size // x.shape[-1])
            channels.append(x.shape[1])
    stages.train(was_training)
    return strides, channels


class CalcNet(nn.Module):
    """Backbone + fusion + per-pattern logit maps + pooled image logits.

    Args:
        stages: backbone stages (1-channel input), cut automatically at stride 16.
        num_classes: number of patterns.
        output_stride: 8 (fuses the stride-8 stage, default) or 16.
        head_channels: width of the dense head.
        pooling: "lse" (log-sum-exp, default), "max" or "attention".
        lse_r: sharpness of LSE pooling (large = close to max).

    Raises:
        ConfigError: invalid stride, pooling or r.
    """

    def __init__(self, stages: nn.Sequential, num_classes: int, *, output_stride: int = 8,
                 head_channels: int = 96, pooling: str = "lse", lse_r: float = 8.0,
                 prior: float = 0.1, local_contrast: float = 0.0) -> None:
        super().__init__()
        self.front = LocalContrast(local_contrast) if local_contrast > 0 else None
        if output_stride not in (8, 16):
            raise ConfigError(f'Argument "output_stride" should be 8 or 16, got {output_stride!r}')
        if pooling not in POOLINGS:
            raise ConfigError(f'Argument "pooling" should be one of {POOLINGS}, got {pooling!r}')
        if lse_r <= 0:
            raise ConfigError(f'Argument "lse_r" should be positive, got {lse_r!r}')
        self.backbone = Backbone(stages, 2 if self.front is not None else 1)
        self.stride = output_stride
        self.pooling = pooling
        self.lse_r = float(lse_r)
        self.num_classes = num_classes
        self.feature_dim = self.backbone.channels16
        d = head_channels
        self.lateral16 = nn.Conv2d(self.backbone.channels16, d, 1)
        self.lateral8 = nn.Conv2d(self.backbone.channels8, d, 1) if output_stride == 8 else None
        self.head = nn.Sequential(
            nn.Conv2d(d, d, 3, padding=1, bias=False), nn.BatchNorm2d(d), nn.ReLU(inplace=True),
            nn.Conv2d(d, d, 3, padding=1, bias=False), nn.BatchNorm2d(d), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(d, num_classes, 1)
        nn.init.constant_(self.classifier.bias, math.log(prior / (1 - prior)))
        self.attention = nn.Conv2d(d, num_classes, 1) if pooling == "attention" else None
        for m in self.modules():
            # torchvision's MobileNet/EfficientNet use momentum 0.01: from scratch and on short CPU
            # schedules the running statistics then lag far behind and eval mode breaks
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.1

    def forward(self, x: Tensor) -> ModelOutput:
        """``x: Tensor[B, 1, H, W]`` model-grid image in [0, 1] -> ``ModelOutput``."""
        if self.front is not None:
            x = self.front(x)
        f8, f16 = self.backbone(x)
        features = f16.mean(dim=(2, 3))
        y = self.lateral16(f16)
        if self.lateral8 is not None:
            y = self.lateral8(f8) + F.interpolate(y, size=f8.shape[-2:], mode="bilinear", align_corners=False)
        y = self.head(y)
        maps = self.classifier(y)
        return ModelOutput(maps=maps, logits=self.pool(maps, y), features=features)

    def pool(self, maps: Tensor, hidden: Tensor | None = None) -> Tensor:
        """Image logits ``[B, C]`` from logit maps ``[B, C, h, w]``."""
        flat = maps.flatten(2)
        if self.pooling == "max":
            return flat.amax(dim=2)
        if self.pooling == "attention" and self.attention is not None and hidden is not None:
            weights = torch.softmax(self.attention(hidden).flatten(2), dim=2)
            return (weights * flat).sum(dim=2)
        r = self.lse_r
        n_cells = torch.ones_like(flat).sum(dim=2)  # a tensor, so traced exports stay size-generic
        return (torch.logsumexp(r * flat, dim=2) - torch.log(n_cells)) / r


def _with_local_weights(model: nn.Module, pretrained: str | Path | None, in_channels: int = 1) -> nn.Module:
    if pretrained is not None:
        load_local_weights(model, pretrained)
    adapt_to_grayscale(model, in_channels)
    return model


def _resnet_stages(model: nn.Module) -> nn.Sequential:
    m: Any = model
    stem = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool)
    return nn.Sequential(stem, m.layer1, m.layer2, m.layer3, m.layer4)


def _features_stages(model: nn.Module) -> nn.Sequential:
    features = model.features  # type: ignore[attr-defined]
    return features if isinstance(features, nn.Sequential) else nn.Sequential(features)


def _builder(factory: Callable[..., nn.Module], to_stages: Callable[[nn.Module], nn.Sequential],
             **factory_kw: Any) -> Callable[..., nn.Module]:
    def build(num_classes: int = 6, *, pretrained: str | Path | None = None, output_stride: int = 8,
              head_channels: int = 96, pooling: str = "lse", lse_r: float = 8.0, local_contrast: float = 0.0,
              **kw: Any) -> nn.Module:
        backbone = _with_local_weights(factory(weights=None, **factory_kw, **kw), pretrained,
                                       2 if local_contrast > 0 else 1)
        return CalcNet(to_stages(backbone), num_classes, output_stride=output_stride,
                       head_channels=head_channels, pooling=pooling, lse_r=lse_r, local_contrast=local_contrast)

    return build


def _resnet10(weights: None = None, **kw: Any) -> nn.Module:
    return tvm.ResNet(tvm.resnet.BasicBlock, [1, 1, 1, 1], **kw)


_BUILTIN: dict[str, Callable[..., nn.Module]] = {
    "resnet10": _builder(_resnet10, _resnet_stages),
    "resnet18": _builder(tvm.resnet18, _resnet_stages),
    "resnet34": _builder(tvm.resnet34, _resnet_stages),
    "resnet50": _builder(tvm.resnet50, _resnet_stages),
    "efficientnet_b0": _builder(tvm.efficientnet_b0, _features_stages),
    "efficientnet_b1": _builder(tvm.efficientnet_b1, _features_stages),
    "mobilenet_v3_small": _builder(tvm.mobilenet_v3_small, _features_stages),
    "mobilenet_v3_large": _builder(tvm.mobilenet_v3_large, _features_stages),
    "convnext_tiny": _builder(tvm.convnext_tiny, _features_stages),
    "densenet121": _builder(tvm.densenet121, _features_stages),
    # a very small network for tests and smoke runs (MobileNetV3-Small at a quarter width)
    "tiny": _builder(tvm.mobilenet_v3_small, _features_stages, width_mult=0.25),
}

for _name, _build in _BUILTIN.items():
    register_model(_name)(_build)
