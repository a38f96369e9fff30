"""Which labelled lesions can be seen at all, and does the model miss the ones that cannot?

    python benchmarks/lesion_conspicuity.py --predictions PREDICTIONS.csv [--seed 2] [--shifted]
    python benchmarks/lesion_conspicuity.py --n 240 --seed 50 --patterns cppd

Each image is rendered (the simulator is deterministic) once as written and once as its twin without
the patterns, and each labelled lesion gets its conspicuity (``calcdx.datasets.simulator.conspicuity``:
its own peak signal over the fine detail around it).  Always printed: the conspicuity per pattern,
variant and visibility class (median and how many below 2).  With ``--predictions`` (the
``predictions.csv`` that ``calcdx evaluate`` wrote for a simulated set of that seed) also: the images'
model probability for the pattern per conspicuity band, the lowest scored positives, and macro AUROC
with the images whose positive lies below a conspicuity cut left out.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from calcdx.datasets.simulator.conspicuity import pattern_conspicuity
from calcdx.datasets.simulator.dataset import SimulationConfig
from calcdx.taxonomy import PATTERNS, Pattern

BANDS = ((0.0, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 16.0), (16.0, np.inf))


@dataclass(frozen=True)
class Job:
    seed: int
    index: int
    config: SimulationConfig


def measure(job: Job) -> list[tuple[int, str, str, str, float]]:
    return [(job.index, lesion.kind, lesion.variant, lesion.visibility, value)
            for lesion, value in pattern_conspicuity(job.seed, job.index, job.config)]


def print_variants(lesions: pd.DataFrame) -> None:
    print("pattern / variant / visibility: lesions, median conspicuity, below 2")
    for (pattern, variant, visibility), group in lesions.groupby(["pattern", "variant", "visibility"]):
        print(f"  {pattern} / {variant} / {visibility}: {len(group)}, {group.conspicuity.median():.1f}, "
              f"{int((group.conspicuity < 2).sum())}")


def print_against_model(lesions: pd.DataFrame, predictions: pd.DataFrame) -> None:
    # an image's pattern is as conspicuous as its most conspicuous lesion of that pattern
    images = lesions.groupby(["index", "pattern"]).conspicuity.max().reset_index()
    images["p"] = [predictions.at[r.index, f"p_{r.pattern}"] for r in images.itertuples()]
    print(f"{len(images)} labelled patterns in {images['index'].nunique()} images")
    print("conspicuity  n    median p  p < 0.2")
    for low, high in BANDS:
        band = images[(images.conspicuity >= low) & (images.conspicuity < high)]
        if len(band):
            print(f"[{low:g}, {high:g})".ljust(12), f"{len(band):<4d} {band.p.median():.3f}     {(band.p < 0.2).sum()}")
    print("lowest scored positives:")
    print(images.sort_values("p").head(12).round(3).to_string(index=False))
    for cut in (0.0, 2.0, 3.0):
        below = set(images[images.conspicuity < cut]["index"])
        kept = predictions[~predictions.index.isin(below)]
        scores = {p.value: roc_auc_score(kept[f"y_{p.value}"], kept[f"p_{p.value}"]) for p in PATTERNS}
        print(f"without images whose positive is below {cut:g} ({len(below)}): macro AUROC "
              f"{np.mean(list(scores.values())):.4f} ({', '.join(f'{v:.3f}' for v in scores.values())})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", help="predictions.csv written by calcdx evaluate for the simulated set")
    parser.add_argument("--n", type=int, default=400, help="images to render without --predictions")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--patterns", nargs="*", default=None, help="patterns to draw (default: all)")
    parser.add_argument("--spacing-mm", type=float, default=0.4)
    parser.add_argument("--shifted", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    predictions = None
    indices = range(args.n)
    if args.predictions:
        predictions = pd.read_csv(args.predictions)
        predictions.index = [int(re.search(r"img(\d+)", p).group(1)) for p in predictions["path"]]  # type: ignore[union-attr]
        indices = [int(i) for i in predictions.index]
    patterns = tuple(Pattern(p) for p in args.patterns) if args.patterns else PATTERNS
    config = SimulationConfig(spacing_mm=args.spacing_mm, shifted=args.shifted, patterns=patterns)
    jobs = [Job(args.seed, index, config) for index in indices]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        measured = [row for rows in pool.imap(measure, jobs, chunksize=4) for row in rows]
    lesions = pd.DataFrame(measured, columns=["index", "pattern", "variant", "visibility", "conspicuity"])
    print_variants(lesions)
    if predictions is not None:
        print_against_model(lesions, predictions)


if __name__ == "__main__":
    main()
