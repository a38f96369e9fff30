"""What ``calcdx predict --fast-decode`` costs: the same simulated JPEG 2000 files analysed both ways.

    python benchmarks/fast_decode_accuracy.py [--n 200] [--seed 2] [--keep DIR]

Renders ``n`` radiographs at native detector spacing (0.1-0.2 mm), re-encodes every file as JPEG 2000
lossless, runs the shipped model with and without ``fast_decode``, and prints against the manifest's
labels: AUROC per pattern, "definite" calls (true / false), how much the image probabilities differ, and
for patterns called "definite" both ways how far the strongest finding's centroid and long axis moved.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import JPEG2000Lossless
from sklearn.metrics import roc_auc_score

from calcdx.datasets.simulator import simulate_dataset
from calcdx.inference import Predictor, run_batch
from calcdx.taxonomy import Pattern

PATTERNS = [p.value for p in Pattern]


def to_jpeg_2000(folder: Path) -> None:
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        if ds.file_meta.TransferSyntaxUID != JPEG2000Lossless:
            if ds.file_meta.TransferSyntaxUID.is_compressed:
                ds.decompress()
            ds.compress(JPEG2000Lossless)
            ds.save_as(path)


def images(out: Path) -> dict[str, dict]:
    found = {}
    for path in out.glob("*.json"):
        for image in json.loads(path.read_text()).get("images", []):
            found[Path(image["source"]).name] = image
    return found


def strongest_definite(image: dict) -> dict[str, dict]:
    calls: dict[str, dict] = {}
    for finding in image["findings"]:
        if finding["operating_point"] == "definite":
            calls.setdefault(finding["pattern"], finding)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temporary one)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp())
    data = work / "images"
    if not (data / "manifest.csv").exists():
        simulate_dataset(data, args.n, seed=args.seed, workers=2)
        to_jpeg_2000(data)
    with open(data / "manifest.csv", newline="") as fh:
        labels = {Path(r["path"]).name: r for r in csv.DictReader(fh)}
    runs = {}
    for name, fast in (("default", False), ("fast", True)):
        shutil.rmtree(work / name, ignore_errors=True)  # a kept folder would resume, not measure
        start = time.perf_counter()
        run_batch([data], work / name, Predictor(fast_decode=fast), write_sr=False, write_overlays=False,
                  progress=False)
        runs[name] = images(work / name)
        print(f"{name:8s} {len(runs[name]) / (time.perf_counter() - start):.2f} images/s end to end")
    names = sorted(set(runs["default"]) & set(runs["fast"]) & set(labels))
    definite = {name: {n: strongest_definite(found[n]) for n in names} for name, found in runs.items()}
    for name, found in runs.items():
        aucs = []
        true = false = 0
        for pattern in PATTERNS:
            truth = [int(labels[n][pattern]) for n in names]
            score = [found[n]["probabilities"][pattern] for n in names]
            aucs.append(roc_auc_score(truth, score) if 0 < sum(truth) < len(truth) else float("nan"))
            for n in names:
                if pattern in definite[name][n]:
                    true, false = (true + 1, false) if int(labels[n][pattern]) else (true, false + 1)
        positives = sum(int(labels[n][p]) for n in names for p in PATTERNS)
        print(f"{name:8s} macro AUROC {np.nanmean(aucs):.3f} ({', '.join(f'{a:.3f}' for a in aucs)}); definite: "
              f"{true} true of {positives} labelled patterns, {false} false")
    diff = np.array([abs(runs["fast"][n]["probabilities"][p] - runs["default"][n]["probabilities"][p])
                     for n in names for p in PATTERNS])
    print(f"|p fast - p default|: mean {diff.mean():.4f}, median {np.median(diff):.4f}, "
          f"99th percentile {np.percentile(diff, 99):.3f}, max {diff.max():.3f}")
    moved, resized = [], []
    for n in names:
        a, b = definite["fast"][n], definite["default"][n]
        for pattern in set(a) & set(b):
            moved.append(float(np.hypot(*np.subtract(a[pattern]["centroid_mm"], b[pattern]["centroid_mm"]))))
            resized.append(abs(a[pattern]["long_axis_mm"] - b[pattern]["long_axis_mm"]))
    if moved:
        print(f"called definite both ways ({len(moved)}): centroid moved median {np.median(moved):.2f} mm "
              f"(90th percentile {np.percentile(moved, 90):.2f}), long axis changed median {np.median(resized):.2f} mm "
              f"(90th percentile {np.percentile(resized, 90):.2f})")
    levels = [runs["fast"][n].get("levels_discarded", 0) for n in names]
    print("levels discarded with --fast-decode:", {k: levels.count(k) for k in sorted(set(levels))})


if __name__ == "__main__":
    main()
