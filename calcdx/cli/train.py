"""``calcdx train CONFIG.yaml [key=value ...]``: train, calibrate and save a model.

Under ``torchrun --nproc_per_node N`` the same command runs as DDP (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """\
examples:
  calcdx train configs/tiny.yaml data.manifest=sim/manifest.csv out_dir=runs/tiny
  calcdx train configs/shipped.yaml optim.epochs=30 optim.lr=1e-3
  torchrun --nproc_per_node 2 -m calcdx train configs/tiny.yaml   (DDP)
an interrupted run resumes from OUT_DIR/last.pt when started again with the same out_dir.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model from a manifest (YAML config + key=value overrides)",
        description="Train, calibrate on the validation split and save model.safetensors + model_card.json "
                    "into OUT_DIR/model.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML config file (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, e.g. optim.lr=1e-3 data.spacing_mm=0.5")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calcdx.training.config import load_config
    from calcdx.training.trainer import fit

    overrides = list(args.overrides)
    if args.no_progress:
        overrides.append("progress=false")
    cfg = load_config(args.config, overrides)
    result = fit(cfg)
    if result.card is not None and result.model_dir is not None:
        val = result.card.metrics.get("validation", {})
        print(f"model saved to {result.model_dir}")
        print(f"validation macro AUROC {val.get('macro_auroc')}, ECE {val.get('ece')}, "
              f"temperature {result.card.temperature:.3f}")
    return 0
