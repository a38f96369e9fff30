"""Config: YAML + dotted overrides + validation errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from calcdx.errors import ConfigError
from calcdx.training.config import TrainConfig, apply_overrides, load_config, save_config

REPO = Path(__file__).resolve().parents[1]


def test_yaml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\noptim:\n  lr: 0.01\n  epochs: 3\nmodel:\n  architecture: tiny\n")
    cfg = load_config(path, ["optim.lr=1e-3", "data.spacing_mm=0.5", "model.kwargs.pooling=max",
                             "deterministic=false"])
    assert cfg.optim.lr == 0.001 and cfg.optim.epochs == 3
    assert cfg.data.spacing_mm == 0.5
    assert cfg.model.kwargs == {"pooling": "max"}
    assert cfg.deterministic is False
    out = save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(out) == cfg
    with pytest.raises(AttributeError):
        cfg.seed = 3  # type: ignore[misc]  # frozen


@pytest.mark.parametrize(("override", "message"), [
    ("optim.lrr=1", "did you mean optim.lr"),
    ("optim.epochs=ten", "optim.epochs: expected an integer"),
    ("optim.epochs=0", "optim.epochs must be >= 1"),
    ("data.augment=wild", "data.augment"),
    ("deterministic=maybe", "deterministic: expected true/false"),
    ("nonsense", "key.sub=value"),
    ("data=3", "data: expected a mapping"),
])
def test_invalid_values_raise_config_error(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.path == str(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_overrides_do_not_mutate_input() -> None:
    base = {"optim": {"lr": 0.1}}
    apply_overrides(base, ["optim.lr=0.2"])
    assert base == {"optim": {"lr": 0.1}}


@pytest.mark.parametrize("name", ["shipped.yaml", "tiny.yaml"])
def test_repository_configs_load(name: str) -> None:
    cfg = load_config(REPO / "configs" / name)
    assert isinstance(cfg, TrainConfig)
