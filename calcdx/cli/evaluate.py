"""``calcdx evaluate MODEL_DIR MANIFEST --out DIR``: metrics, ROC curves and reliability diagram."""

from __future__ import annotations

import argparse
import json
from typing import Any

from calcdx.cli.options import add_device_option


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="evaluate a saved model on a labelled manifest",
        description="Writes DIR/report.json (per-pattern AUROC, AP, sensitivity/specificity at the card's "
                    "operating points, ECE, Brier, hard-negative call rate, OOD), DIR/predictions.csv, "
                    "DIR/roc_curves.png and DIR/reliability.png.")
    parser.add_argument("model_dir", help="folder with model.safetensors + model_card.json "
                        "('shipped' = the model shipped with calcdx)")
    parser.add_argument("manifest", help="manifest CSV with labels")
    parser.add_argument("--out", required=True, help="output folder")
    add_device_option(parser)
    parser.add_argument("--cache-dir", default=None, help="cache of preprocessed images")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--group-by", action="append", default=[], metavar="COLUMN",
                        help="also report metrics per value of a manifest column (repeatable)")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="patient-level bootstrap resamples for 95%% AUROC intervals (default 1000; 0: none)")
    parser.add_argument("--attach", metavar="KEY", default=None,
                        help="also store the metrics in the model card under metrics[KEY] (e.g. test)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calcdx.models import shipped_model_dir
    from calcdx.training.report import attach_to_card, evaluate_model

    model_dir = shipped_model_dir() if args.model_dir == "shipped" else args.model_dir
    report = evaluate_model(model_dir, args.manifest, args.out, device=args.device, cache_dir=args.cache_dir,
                            num_workers=args.workers, group_by=args.group_by, bootstrap=args.bootstrap)
    m = report["metrics"]
    summary = {"macro_auroc": m["macro_auroc"], "macro_auroc_ci95": m.get("ci95", {}).get("macro_auroc"),
               "macro_ap": m["macro_ap"], "ece": m["ece"],
               "brier": m["brier"],
               "auroc": {k: v["auroc"] for k, v in m["per_class"].items()},
               "hard_negative_definite_rate": report["hard_negatives"]["any_definite_rate"],
               "look_alike_definite_rate": report["hard_negatives"]["beyond_lead_marker"]["any_definite_rate"],
               "pattern_free_definite_rate": report["negatives"]["any_definite_rate"],
               "ood_flagged_fraction": report["ood"]["flagged_fraction"],
               "ood_refused_fraction": report["ood"]["refused_fraction"]}
    print(json.dumps(summary, indent=1))
    print(f"report written to {args.out}")
    if args.attach:
        attach_to_card(model_dir, args.attach, report)
        print(f"metrics stored in {model_dir}/model_card.json under metrics[{args.attach!r}]")
    return 0
