"""Training runs end to end on a tiny synthetic DICOM set: loss falls, resume repeats the
uninterrupted run exactly, the saved model evaluates, and 2-process DDP matches 1 process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from calcdx.cli.main import main as cli_main
from calcdx.datasets.manifest import read_manifest
from calcdx.datasets.torch_dataset import ManifestDataset, pad_collate
from calcdx.models import create_model
from calcdx.models.checkpoint import load_checkpoint
from calcdx.training.config import load_config
from calcdx.training.loop import evaluate, train_one_epoch
from calcdx.training.losses import CalcLoss
from calcdx.training.trainer import fit
from tests.models_fixtures import make_tiny_dataset


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data", n=32, size=128)


def _config(tmp: Path, manifest: Path, name: str, **over: object) -> Path:
    cfg = {
        "name": "tiny-test", "out_dir": str(tmp / name), "progress": False, "seed": 3, "threads": 1,
        "data": {"manifest": str(manifest), "spacing_mm": 0.6, "input_size_px": 64, "augment": "light",
                 "num_workers": 0, "cache_dir": str(tmp / "cache")},
        "model": {"architecture": "tiny"},
        "optim": {"epochs": 3, "batch_size": 8, "lr": 0.005, "warmup_steps": 2},
    }
    for key, value in over.items():
        section, _, field = key.partition("__")
        if field:
            cfg[section][field] = value  # type: ignore[index]
        else:
            cfg[section] = value
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_one_epoch_reduces_loss(tiny_manifest: Path) -> None:
    torch.manual_seed(0)
    rows = read_manifest(tiny_manifest)[:16]
    ds = ManifestDataset(rows, 0.6, size_px=None)
    loader = DataLoader(ds, batch_size=8, shuffle=False, collate_fn=pad_collate)
    model = create_model("tiny")
    loss_fn = CalcLoss(mask_weight=1.0)
    cpu = torch.device("cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    stats = [train_one_epoch(model, loader, opt, loss_fn, device=cpu, epoch=e) for e in range(8)]
    assert stats[-1].loss < 0.8 * stats[0].loss
    result = evaluate(model, loader, device=cpu, loss_fn=loss_fn)
    assert result.logits.shape == (16, 6) and result.features.shape[0] == 16
    assert stats[0].n_images == 16 and stats[0].images_per_second > 0


def test_tiny_run_saves_a_loadable_model(tmp_path: Path, tiny_manifest: Path) -> None:
    cfg = load_config(_config(tmp_path, tiny_manifest, "run", optim__epochs=2))
    result = fit(cfg)
    assert len(result.history) == 2
    assert result.model_dir is not None and result.card is not None
    loaded = load_checkpoint(result.model_dir)
    assert loaded.card.temperature > 0
    assert set(loaded.card.thresholds) == set(loaded.card.classes)
    assert loaded.card.training_data["n_images"] == len(json.loads(
        (result.run_dir / "split.json").read_text())["train"])
    assert loaded.card.ood["dim"] == loaded.model.feature_dim
    # the resolved config travels with the run and loads back to the same config
    assert load_config(result.run_dir / "config.yaml") == cfg


def test_resume_after_interruption_gives_the_same_model(tmp_path: Path, tiny_manifest: Path) -> None:
    full = fit(load_config(_config(tmp_path, tiny_manifest, "full")))
    cfg = load_config(_config(tmp_path, tiny_manifest, "cut"))
    first = fit(cfg, stop_after_epochs=1)
    assert first.model_dir is None and len(first.history) == 1
    second = fit(cfg)
    assert [h["epoch"] for h in second.history] == [0, 1, 2]
    assert full.model_dir is not None and second.model_dir is not None
    a = load_checkpoint(full.model_dir).model.state_dict()
    b = load_checkpoint(second.model_dir).model.state_dict()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    assert [round(h["loss"], 6) for h in full.history] == [round(h["loss"], 6) for h in second.history]


def test_hard_negative_report_counts_calls_per_look_alike_kind() -> None:
    from calcdx.training.report import hard_negative_report

    kinds = [{"lead_marker"}, {"lead_marker", "cysticercosis"}, set(), {"cysticercosis"}]
    definite = np.array([[0, 0], [0, 1], [1, 0], [0, 1]], bool)  # row 2 (no look-alike) is not counted
    report = hard_negative_report(kinds, definite, definite | True, ["hadd", "phlebolith"])
    assert report["n_images"] == 3 and report["any_definite_rate"] == pytest.approx(2 / 3)
    assert report["by_kind"]["cysticercosis"] == {"n_images": 2, "any_definite_rate": 1.0,
                                                  "definite_calls": {"phlebolith": 2}}
    assert report["by_kind"]["lead_marker"]["any_definite_rate"] == 0.5
    assert report["beyond_lead_marker"]["n_images"] == 2 and report["beyond_lead_marker"]["any_definite_rate"] == 1.0


def test_cli_train_and_evaluate(tmp_path: Path, tiny_manifest: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, tiny_manifest, "cli", optim__epochs=1)
    assert cli_main(["-q", "train", str(cfg), "optim.lr=0.002", "--no-progress"]) == 0
    model_dir = tmp_path / "cli" / "model"
    assert yaml.safe_load((tmp_path / "cli" / "config.yaml").read_text())["optim"]["lr"] == 0.002
    out = tmp_path / "eval"
    assert cli_main(["-q", "evaluate", str(model_dir), str(tiny_manifest), "--out", str(out),
                     "--attach", "test"]) == 0
    assert load_checkpoint(model_dir).card.metrics["test"]["n_images"] == 32
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["n_images"] == 32
    assert set(report["metrics"]["per_class"]) == set(load_checkpoint(model_dir).card.classes)
    for png in ("roc_curves.png", "reliability.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "macro_auroc" in capsys.readouterr().out
    # a bad override is a usage error naming the key
    assert cli_main(["-q", "train", str(cfg), "optim.lrr=1"]) == 2
    # the default device is auto; a GPU the machine lacks is a usage error naming it, before any file is written
    if not torch.cuda.is_available():
        assert cli_main(["-q", "evaluate", str(model_dir), str(tiny_manifest), "--out", str(tmp_path / "gpu"),
                         "--device", "cuda:1"]) == 2
        assert "'cuda:1' asked for but CUDA is not available" in capsys.readouterr().err
        assert not (tmp_path / "gpu").exists()


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path: Path, tiny_manifest: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed beside the interpreter")
    common = {"data__augment": "none", "optim__epochs": 2, "calibration": {"enabled": False}}
    single = load_config(_config(tmp_path, tiny_manifest, "single", **common))
    one = fit(single)
    ddp_cfg = _config(tmp_path, tiny_manifest, "ddp", **common)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "calcdx", "-q", "train", str(ddp_cfg),
           "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "ddp" / "history.json").read_text())
    assert len(two) == len(one.history) == 2
    for h1, h2 in zip(one.history, two, strict=True):
        # same global batch and sample order; BatchNorm statistics are per rank (no SyncBN on
        # CPU), so the two runs agree closely but not bit for bit
        assert h2["loss"] == pytest.approx(h1["loss"], rel=0.08)
        assert h2["val_loss"] == pytest.approx(h1["val_loss"], rel=0.08)
    a = dict(load_checkpoint(tmp_path / "single" / "model").model.named_parameters())
    b = dict(load_checkpoint(tmp_path / "ddp" / "model").model.named_parameters())
    with torch.no_grad():
        num = sum(float((a[k] - b[k]).norm()) for k in a)
        den = sum(float(a[k].norm()) for k in a)
    # measured 0.057 (per-rank BatchNorm statistics); with --nproc_per_node 1 it is exactly 0
    assert num / den < 0.1


def test_cli_calibrate_places_the_operating_points_on_new_images(tmp_path: Path, tiny_manifest: Path) -> None:
    from calcdx.datasets.manifest import write_manifest
    from calcdx.training.report import evaluate_model

    cfg = _config(tmp_path, tiny_manifest, "src", optim__epochs=1)
    assert cli_main(["-q", "train", str(cfg), "--no-progress"]) == 0
    source = tmp_path / "src" / "model"
    source_card = (source / "model_card.json").read_text()
    out = tmp_path / "site"
    assert cli_main(["-q", "calibrate", str(source), str(tiny_manifest), "--out", str(out),
                     "--possible-sensitivity", "0.9", "--definite-specificity", "0.85"]) == 0
    assert (source / "model_card.json").read_text() == source_card  # the source is untouched
    card = load_checkpoint(out).card  # loads: the weights' hash matches the new card
    assert card.training_data["recalibration"]["definite_specificity"] == 0.85
    assert card.training_data["recalibration"]["n_images"] == 32
    assert set(card.metrics) == {"validation"}
    report = evaluate_model(out, tiny_manifest, tmp_path / "eval", bootstrap=0)
    for name, m in report["metrics"]["per_class"].items():
        assert m["possible_sensitivity"] >= 0.9, name
        assert m["definite_specificity"] >= 0.85, name
        assert card.thresholds[name]["definite"] >= card.thresholds[name]["possible"]
    # without targets, the card's own are kept: calibrating the result again on the same images changes nothing
    again = tmp_path / "again"
    assert cli_main(["-q", "calibrate", str(out), str(tiny_manifest), "--out", str(again), "--keep-temperature"]) == 0
    again_card = load_checkpoint(again).card
    for name, ops in card.thresholds.items():  # within float32 rounding of the folded bias
        assert again_card.thresholds[name] == {op: pytest.approx(t, rel=1e-5) for op, t in ops.items()}
    assert again_card.training_data["recalibration"]["definite_specificity"] == 0.85
    # --keep-temperature leaves the weights as they were
    kept = tmp_path / "kept"
    assert cli_main(["-q", "calibrate", str(source), str(tiny_manifest), "--out", str(kept),
                     "--keep-temperature"]) == 0
    assert (kept / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
    # errors name the problem: the source folder as --out, a manifest lacking a pattern's positives
    assert cli_main(["-q", "calibrate", str(source), str(tiny_manifest), "--out", str(source)]) == 2
    rows = [r for r in read_manifest(tiny_manifest) if "hadd" not in {p.value for p in r.labels}]
    lacking = tmp_path / "no_hadd.csv"
    write_manifest(lacking, rows)
    assert cli_main(["-q", "calibrate", str(source), str(lacking), "--out", str(tmp_path / "x")]) == 2
