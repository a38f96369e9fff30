"""``calcdx train-margin TRAIN_MANIFEST --val VAL_MANIFEST --out DIR``: the HADD margin head."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train-margin", help="train the HADD margin head (well / ill defined) on annotated lesions",
        description="Trains the small CNN that reports a HADD finding's margin (well defined: formative or "
                    "resting phase; ill defined: resorptive) from crops around each annotated HADD lesion. "
                    "A lesion's label is its annotation's 'margin' (well_defined / ill_defined), else what its "
                    "simulated 'variant' implies. The threshold is chosen on the validation manifest; the "
                    "folder written (model.safetensors + margin_card.json) is used by 'calcdx predict' when "
                    "placed as margin_head/ inside a model folder.",
        epilog="example:\n  calcdx simulate --n 2400 --patterns hadd --seed 6001 --workers 2 --out hadd_train/\n"
               "  calcdx simulate --n 200 --patterns hadd --seed 5151 --out hadd_val/\n"
               "  calcdx train-margin hadd_train/manifest.csv --val hadd_val/manifest.csv --out my_model/margin_head",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", help="training manifest CSV whose rows have an 'annotations' file")
    parser.add_argument("--val", required=True, metavar="MANIFEST", help="validation manifest (other patients)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--width", type=int, default=8, help="channels of the first stage (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crops-per-lesion", type=int, default=4, metavar="N",
                        help="crops per lesion: one centred, the others jittered (default 4)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calcdx.datasets.manifest import manifest_sha256, read_manifest
    from calcdx.errors import ConfigError
    from calcdx.training.margin_head import train_margin_head

    if args.epochs < 1 or args.width < 1 or args.crops_per_lesion < 1:
        raise ConfigError("--epochs, --width and --crops-per-lesion must be 1 or more")
    train_rows, val_rows = read_manifest(args.manifest), read_manifest(args.val)
    train_ids = {r.patient_id for r in train_rows}
    shared = sorted(train_ids & {r.patient_id for r in val_rows})
    if shared:
        raise ConfigError(f"{len(shared)} patients are in both manifests (e.g. {shared[0]}): the validation "
                          "patients must be others")
    provenance = {"manifest": str(args.manifest), "manifest_sha256": manifest_sha256(args.manifest),
                  "val_manifest": str(args.val), "val_manifest_sha256": manifest_sha256(args.val)}
    out, metrics = train_margin_head(train_rows, val_rows, args.out, epochs=args.epochs, width=args.width,
                                     seed=args.seed, per_lesion=args.crops_per_lesion, provenance=provenance,
                                     log=print)
    m = metrics["centred_crops"]
    print(f"validation ({metrics['lesions']} lesions, centred crops): AUROC {m['auroc']}, balanced accuracy "
          f"{m['balanced_accuracy']} (well defined {m['well_defined_accuracy']}, ill defined "
          f"{m['ill_defined_accuracy']}); jittered crops AUROC {metrics['crops']['auroc']}")
    print(f"margin head written to {out}")
    return 0
