"""Which labelled lesions can be seen at all, and does the model miss the ones that cannot?

    python benchmarks/lesion_conspicuity.py PREDICTIONS.csv [--seed 2] [--spacing-mm 0.4] [--shifted]

``PREDICTIONS.csv`` is the ``predictions.csv`` that ``calcdx evaluate`` wrote for a simulated set; the
set is rendered again here from its seed (the simulator is deterministic), once as written and once
as its twin without the patterns (same anatomy, look-alikes and noise draws).  The difference of the
two processed images is each pattern lesion's own signal.  Its conspicuity is the 90th percentile of
that signal's magnitude inside the lesion's mask over the standard deviation of the twin's fine detail
(the image minus a Gaussian of sigma 2 px: quantum noise and trabecular texture) in a 30-pixel margin
around it.  Printed: the images' model probability for the pattern per conspicuity band, the lowest
scored positives, and macro AUROC with the images whose positive lies below a conspicuity cut left out.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from calcdx.datasets.simulator.dataset import SimulationConfig, render_case
from calcdx.taxonomy import PATTERNS

MARGIN_PX = 30
DETAIL_SIGMA_PX = 2.0
BANDS = ((0.0, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 16.0), (16.0, np.inf))


@dataclass(frozen=True)
class Job:
    seed: int
    index: int
    config: SimulationConfig


def conspicuity(signal: np.ndarray, background: np.ndarray, mask: np.ndarray) -> float:
    """Peak signal in ``mask`` over the fine-detail fluctuation of ``background`` around it."""
    rows, cols = np.nonzero(mask)
    r0, c0 = max(int(rows.min()) - MARGIN_PX, 0), max(int(cols.min()) - MARGIN_PX, 0)
    r1, c1 = int(rows.max()) + MARGIN_PX + 1, int(cols.max()) + MARGIN_PX + 1
    local = np.ascontiguousarray(background[r0:r1, c0:c1], dtype=np.float32)
    detail = local - cv2.GaussianBlur(local, (0, 0), DETAIL_SIGMA_PX)
    fluctuation = float(detail[~mask[r0:r1, c0:c1]].std())
    peak = float(np.percentile(np.abs(signal[mask]), 90))
    return peak / max(fluctuation, 1e-12)


def measure(job: Job) -> list[tuple[int, str, float]]:
    case = render_case(job.seed, job.index, job.config)
    if not case.labels:
        return []
    twin = render_case(job.seed, job.index, job.config, drop_patterns=True)
    signal = case.image.astype(np.float32) - twin.image.astype(np.float32)
    return [(job.index, lesion.kind, conspicuity(signal, twin.image, mask))
            for lesion, mask in zip(case.lesions, case.masks, strict=True) if lesion.is_pattern]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", help="predictions.csv written by calcdx evaluate for the simulated set")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--spacing-mm", type=float, default=0.4)
    parser.add_argument("--shifted", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    predictions = pd.read_csv(args.predictions)
    predictions.index = [int(re.search(r"img(\d+)", p).group(1)) for p in predictions["path"]]  # type: ignore[union-attr]
    config = SimulationConfig(spacing_mm=args.spacing_mm, shifted=args.shifted)
    jobs = [Job(args.seed, int(i), config) for i in predictions.index]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        measured = [row for rows in pool.imap(measure, jobs, chunksize=4) for row in rows]
    lesions = pd.DataFrame(measured, columns=["index", "pattern", "conspicuity"])
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


if __name__ == "__main__":
    main()
