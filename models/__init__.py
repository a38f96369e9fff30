"""calcdx.models: model registry, network, output type, model card and checkpoint format.

    from calcdx.models import create_model, ModelOutput
    model = create_model("resnet18", num_classes=6)
    out = model(torch.zeros(1, 1, 256, 256))   # ModelOutput(maps, logits, features)
"""

from pathlib import Path

from calcdx.models.output import ModelOutput
from calcdx.models.registry import create_model, list_models, register_model

__all__ = ["ModelOutput", "create_model", "list_models", "register_model", "shipped_model_dir"]


def shipped_model_dir() -> Path:
    """Folder of the model shipped with calcdx (``model.safetensors`` + ``model_card.json``)."""
    return Path(__file__).resolve().parent / "shipped"
