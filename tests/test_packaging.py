"""The package installs as one import name and its torch/torchvision pair works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import calcdx

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["models", "datasets", "training", "inference"])
def test_design_folders_do_not_install_top_level_modules(name: str, tmp_path: Path) -> None:
    # Run from an unrelated folder so the repository root is not on sys.path.
    code = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({name!r}) is None else 1)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    if name == "datasets" and result.returncode == 1:
        # Hugging Face's `datasets` might legitimately be installed; it must not be ours.
        where = subprocess.run(
            [sys.executable, "-c", "import datasets; print(datasets.__file__)"],
            cwd=tmp_path, capture_output=True, text=True,
        ).stdout
        assert str(REPO) not in where
        return
    assert result.returncode == 0, f"a top-level module {name!r} is importable"


@pytest.mark.parametrize("sub", ["models", "datasets", "training", "inference"])
def test_design_folders_import_as_calcdx_subpackages(sub: str, tmp_path: Path) -> None:
    code = f"import calcdx.{sub} as m, pathlib; print(pathlib.Path(m.__file__).parent.name)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == sub


def test_torchvision_imports_and_builds_a_model() -> None:
    import torch
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=6)
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 6)
    assert torchvision.ops.nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([1.0]), 0.5).tolist() == [0]


def test_version_is_exposed() -> None:
    assert calcdx.__version__.count(".") == 2


def test_console_script_version_and_help() -> None:
    exe = Path(sys.executable).with_name("calcdx")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"calcdx {calcdx.__version__}"
    helptext = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("info", "simulate", "train", "evaluate", "predict", "score", "followup", "train-head", "rules",
                    "serve"):
        assert command in helptext
    assert "not a medical device" in helptext
