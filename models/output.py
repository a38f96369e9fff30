"""The one output type of every calcdx model."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class ModelOutput(NamedTuple):
    """What ``model(x)`` returns for ``x: Tensor[B, 1, H, W]`` (model-grid image in [0, 1]).

    Attributes:
        maps: ``Tensor[B, C, H/s, W/s]`` per-pattern logit maps (uncalibrated logits) at the
            model's stride ``s`` (``model.stride`` pixels of the model grid per map cell).
        logits: ``Tensor[B, C]`` image-level logits pooled from ``maps``.  Calibrated
            probability = ``sigmoid(logits / card.temperature)``.
        features: ``Tensor[B, F]`` pooled embedding (for the out-of-distribution score).
    """

    maps: Tensor
    logits: Tensor
    features: Tensor
