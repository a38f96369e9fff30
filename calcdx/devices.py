"""Which torch device a command runs on: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""

from __future__ import annotations

import torch

from calcdx.errors import ConfigError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """"auto" -> cuda:<local_rank> when available else cpu; "cuda" -> cuda:<local_rank>.

    Raises:
        ConfigError: CUDA asked for but not available, or a name torch does not know.
    """
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but CUDA is not available")
    if name == "cuda":
        return torch.device(f"cuda:{local_rank}")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from exc
