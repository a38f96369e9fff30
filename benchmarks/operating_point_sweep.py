"""What each "definite" target costs: points placed on validation predictions, read off on a test set.

    python benchmarks/operating_point_sweep.py VAL_EVAL VAL_MANIFEST TEST_EVAL TEST_MANIFEST \\
        [--targets 0.98 0.99 0.995] [--sensitivity 0.95]

VAL_EVAL / TEST_EVAL: ``calcdx evaluate`` output folders (their ``predictions.csv``; evaluate the model
on both manifests first).  For each specificity target the "definite" points are placed on the
validation predictions as training places them (``operating_points``), then the test set gives the
sensitivity at "definite" per pattern, the share of pattern-free images holding a look-alike other than
the lead marker that get a "definite" call anywhere, and the share of all pattern-free images.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from calcdx.datasets.manifest import read_manifest
from calcdx.taxonomy import PATTERNS
from calcdx.training.calibration import operating_points
from calcdx.training.report import any_call_rate, hard_negative_report, look_alikes

CLASSES = [p.value for p in PATTERNS]


def load(eval_dir: Path, manifest: Path) -> tuple[np.ndarray, np.ndarray, list[set[str]]]:
    """(probabilities [N, C], labels [N, C], look-alike kinds per pattern-free image) in manifest order."""
    with open(eval_dir / "predictions.csv", newline="") as fh:
        rows = {str(Path(r["path"]).resolve()): r for r in csv.DictReader(fh)}
    probs, labels, kinds = [], [], []
    for row in read_manifest(manifest, check_files=False):
        pred = rows[str(row.path.resolve())]
        probs.append([float(pred[f"p_{c}"]) for c in CLASSES])
        labels.append([int(pred[f"y_{c}"]) for c in CLASSES])
        kinds.append(look_alikes(row))
    return np.array(probs), np.array(labels), kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("val_eval", type=Path)
    parser.add_argument("val_manifest", type=Path)
    parser.add_argument("test_eval", type=Path)
    parser.add_argument("test_manifest", type=Path)
    parser.add_argument("--targets", type=float, nargs="+", default=[0.98, 0.99, 0.995])
    parser.add_argument("--sensitivity", type=float, default=0.95, help="the 'possible' target (default 0.95)")
    args = parser.parse_args()
    vp, vy, _ = load(args.val_eval, args.val_manifest)
    tp, ty, kinds = load(args.test_eval, args.test_manifest)
    free = ty.sum(axis=1) == 0
    n_beyond = hard_negative_report(kinds, tp > 1, tp > 1, CLASSES)["beyond_lead_marker"]["n_images"]
    print(f"validation {len(vp)} images; test {len(tp)} images, {free.sum()} pattern-free, "
          f"{n_beyond} of them holding a look-alike other than the lead marker")
    print("target  " + "  ".join(f"{c[:6]:>6s}" for c in CLASSES) + "  look-alike  pattern-free")
    for target in args.targets:
        points = operating_points(vy, vp, CLASSES, sensitivity=args.sensitivity, specificity=target)
        definite = tp >= np.array([points[c]["definite"] for c in CLASSES])[None, :]
        sens = [definite[ty[:, i] == 1, i].mean() if (ty[:, i] == 1).any() else float("nan")
                for i in range(len(CLASSES))]
        look_alike = hard_negative_report(kinds, definite, definite, CLASSES)["beyond_lead_marker"]["any_definite_rate"]
        print(f"{target:<6}  " + "  ".join(f"{s:6.2f}" for s in sens)
              + f"  {look_alike:10.1%}  {any_call_rate(definite, free):12.1%}")


if __name__ == "__main__":
    main()
