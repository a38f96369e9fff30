"""Model registry: ``register_model`` decorates a builder, ``create_model`` builds by name.

Follows timm's pattern: the name in the model card is enough to rebuild the network.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from calcdx.errors import ConfigError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[F], F]:
    """Decorator registering ``builder(num_classes=..., **kw) -> nn.Module`` under ``name``.

    Raises:
        ConfigError: ``name`` is already registered.
    """

    def decorator(builder: F) -> F:
        if name in _REGISTRY:
            raise ConfigError(f"model name {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorator


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _ensure_builtin()
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int = 6, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: a registered name (see ``list_models()``).
        num_classes: number of pattern classes (6 = ``calcdx.taxonomy.PATTERNS``).
        **kwargs: passed to the builder (e.g. ``output_stride``, ``pooling``, ``lse_r``,
            ``pretrained`` = path to a local torchvision weights file).

    Raises:
        ConfigError: unknown name (the message lists close matches) or invalid arguments.
    """
    _ensure_builtin()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint} (registered: {', '.join(sorted(_REGISTRY))})")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f'Argument "num_classes" should be a positive integer, got {num_classes!r}')
    try:
        return _REGISTRY[name](num_classes=num_classes, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for model {name!r}: {exc}") from exc


def _ensure_builtin() -> None:
    # importing the module registers the built-in architectures
    from calcdx.models import net  # noqa: F401
