"""Optional export of a loaded model: TorchScript (always available) or ONNX (needs ``onnx``).

The exported graph takes ``x: [B, 1, H, W]`` (H, W multiples of 32) and returns the tuple
``(maps, logits, features)``; apply ``card.temperature`` yourself.  The model card is
copied beside the export so the temperature, thresholds and input spacing travel with it.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from calcdx.errors import ConfigError
from calcdx.models.checkpoint import CARD_NAME, load_checkpoint

logger = logging.getLogger(__name__)


class _TupleOutput(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.model(x)
        return out.maps, out.logits, out.features


def export_model(model_dir: str | Path, out_path: str | Path, fmt: str = "torchscript",
                 example_size: tuple[int, int] = (256, 256)) -> Path:
    """Export the model in ``model_dir`` to ``out_path`` (``.pt`` TorchScript or ``.onnx``).

    Raises:
        ModelIntegrityError: the checkpoint fails its checks.
        ConfigError: unknown format, or ONNX asked for without the ``onnx`` package.
    """
    loaded = load_checkpoint(model_dir)
    wrapped = _TupleOutput(loaded.model).eval()
    example = torch.zeros(1, 1, *example_size)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # trace still works; export() is stricter
            traced = torch.jit.trace(wrapped, example, check_trace=False)
        traced.save(str(out_path))
    elif fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError as exc:
            raise ConfigError("ONNX export needs the 'onnx' package (pip install onnx onnxscript)") from exc
        torch.onnx.export(wrapped, (example,), str(out_path), input_names=["image"],
                          output_names=["maps", "logits", "features"],
                          dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}})
    else:
        raise ConfigError(f'Argument "fmt" should be "torchscript" or "onnx", got {fmt!r}')
    shutil.copyfile(Path(model_dir) / CARD_NAME, out_path.with_suffix(".card.json"))
    logger.info("exported %s to %s", model_dir, out_path)
    return out_path
