"""``calcdx calibrate MODEL_DIR MANIFEST --out DIR``: calibrate a saved model again on labelled images."""

from __future__ import annotations

import argparse
import json
from typing import Any

from calcdx.cli.options import add_device_option


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "calibrate", help="calibrate a saved model again on labelled images (temperature, operating points)",
        description="Refits the calibration temperature and per-pattern offsets on MANIFEST (validation "
                    "images the model never trained on, e.g. a site's own) and places the 'possible' and "
                    "'definite' operating points again; writes the calibrated model to DIR. Nothing is "
                    "trained. Evaluate the result on a separate test manifest with 'calcdx evaluate'.",
        epilog="example:\n  calcdx calibrate shipped site_val.csv --definite-specificity 0.99 --out site_model/",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="folder with model.safetensors + model_card.json "
                        "('shipped' = the model shipped with calcdx)")
    parser.add_argument("manifest", help="manifest CSV with labels (positives and negatives of every pattern)")
    parser.add_argument("--out", required=True, help="folder for the calibrated model (not the source's)")
    parser.add_argument("--possible-sensitivity", type=float, default=None, metavar="S",
                        help="sensitivity the 'possible' point keeps (default: the model card's own target)")
    parser.add_argument("--definite-specificity", type=float, default=None, metavar="S",
                        help="specificity the 'definite' point keeps (default: the model card's own target; "
                             "the shipped model's is 0.995)")
    parser.add_argument("--keep-temperature", action="store_true",
                        help="keep the temperature and weights; only place the operating points")
    add_device_option(parser)
    parser.add_argument("--cache-dir", default=None, help="cache of preprocessed images")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calcdx.models import shipped_model_dir
    from calcdx.training.recalibrate import recalibrate_model

    model_dir = shipped_model_dir() if args.model_dir == "shipped" else args.model_dir
    card = recalibrate_model(model_dir, args.manifest, args.out, possible_sensitivity=args.possible_sensitivity,
                             definite_specificity=args.definite_specificity,
                             refit_temperature=not args.keep_temperature, device=args.device,
                             cache_dir=args.cache_dir, num_workers=args.workers)
    m = card.metrics["validation"]
    print(json.dumps({"temperature": card.temperature, "thresholds": card.thresholds,
                      "macro_auroc": m["macro_auroc"], "ece": m["ece"],
                      "weights_sha256": card.weights_sha256}, indent=1))
    print(f"calibrated model written to {args.out}")
    return 0
