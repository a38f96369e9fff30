"""``calcdx train-head margin|site TRAIN_MANIFEST --val VAL_MANIFEST --out DIR``: the HADD crop heads."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train-head", help="train a HADD head (margin: well / ill defined; site: which tendon; extent: the outline) "
                           "on annotated lesions",
        description="Trains one of the small CNNs that read a field of the source image around a HADD finding: "
                    "'margin' (well defined: formative or resting phase; ill defined: resorptive; label: the "
                    "annotation's 'margin', else what its simulated 'variant' implies) or 'site' (the tendon; "
                    "label: the annotation's 'site') or 'extent' (the deposit's outline, whence its long and short "
                    "axis and area; label: the lesion's 'mask' file), or for CPPD 'cppd-site' (hyaline cartilage, a "
                    "fibrocartilage or a tendon; label: the CPPD lesion's 'site' and 'location_class'). The "
                    "threshold is chosen on the validation manifests. 'calcdx predict' uses the folder written "
                    "(model.safetensors + head_card.json) when it is placed as margin_head/, site_head/, "
                    "extent_head/ or cppd_site_head/ inside a model folder.",
        epilog="example:\n  calcdx simulate --n 2400 --patterns hadd --seed 6001 --workers 2 --out hadd_train/\n"
               "  calcdx simulate --n 200 --patterns hadd --seed 5151 --out hadd_val/\n"
               "  calcdx train-head margin hadd_train/manifest.csv --val hadd_val/manifest.csv "
               "--out my_model/margin_head\n"
               "  calcdx train-head site hadd_train/manifest.csv --val hadd_val/manifest.csv --out my_model/site_head",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=("margin", "site", "extent", "cppd-site"), help="which head")
    parser.add_argument("manifest", nargs="+", help="training manifest CSVs whose rows have an 'annotations' file")
    parser.add_argument("--val", required=True, nargs="+", metavar="MANIFEST",
                        help="validation manifests (other patients)")
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

    if args.epochs < 1 or args.width < 1 or args.crops_per_lesion < 1:
        raise ConfigError("--epochs, --width and --crops-per-lesion must be 1 or more")
    train_rows = [row for path in args.manifest for row in read_manifest(path)]
    val_rows = [row for path in args.val for row in read_manifest(path)]
    shared = sorted({r.patient_id for r in train_rows} & {r.patient_id for r in val_rows})
    if shared:
        raise ConfigError(f"{len(shared)} patients are in both manifests (e.g. {shared[0]}): the validation "
                          "patients must be others")
    provenance = {"manifests": [{"path": str(p), "sha256": manifest_sha256(p)} for p in args.manifest],
                  "val_manifests": [{"path": str(p), "sha256": manifest_sha256(p)} for p in args.val]}
    kw = {"epochs": args.epochs, "width": args.width, "seed": args.seed, "per_lesion": args.crops_per_lesion,
          "provenance": provenance, "log": print}
    if args.task == "margin":
        from calcdx.training.margin_head import train_margin_head

        out, metrics = train_margin_head(train_rows, val_rows, args.out, **kw)
        m = metrics["centred_crops"]
        print(f"validation ({metrics['lesions']} lesions, centred crops): AUROC {m['auroc']}, balanced accuracy "
              f"{m['balanced_accuracy']} (well defined {m['well_defined_accuracy']}, ill defined "
              f"{m['ill_defined_accuracy']}); jittered crops AUROC {metrics['crops']['auroc']}")
    elif args.task == "extent":
        from calcdx.training.extent_head import train_extent_head

        out, metrics = train_extent_head(train_rows, val_rows, args.out, **kw)
        m = metrics["centred_crops"]
        long = m["long"]
        print(f"validation ({metrics['lesions']} lesions, centred crops): long axis found/true median "
              f"{long['median']} (p10 {long['p10']}, p90 {long['p90']}, sd of log {long['log_sd']}); "
              f"short axis median {m['short']['median']}; Dice {m['dice']}; missed {m['missed']}")
    else:
        from calcdx.training.site_head import train_site_head

        out, metrics = train_site_head(train_rows, val_rows, args.out,
                                       pattern="cppd" if args.task == "cppd-site" else "hadd", **kw)
        m = metrics["centred_crops"]
        print(f"validation ({metrics['lesions']} lesions, centred crops): accuracy {m['accuracy']}; site named "
              f"for {m['named_share']} of them, right in {m['named_precision']}; per body part "
              + ", ".join(f"{b} {v['accuracy']} (n={v['n']})" for b, v in m["per_body_part"].items()))
    print(f"head written to {out}")
    return 0
