"""How right the findings are: simulate, predict, score, in one run.

    python benchmarks/finding_accuracy.py [--n 300] [--seed 4242] [--patterns ...] [--keep DIR]

Renders ``n`` radiographs at native detector spacing (0.1-0.2 mm) with the simulator's per-lesion ground
truth, runs ``calcdx predict`` (the shipped model, no SR or overlays) and ``calcdx score`` on them, and
prints per pattern: lesion sensitivity and false-positive findings per image at the "possible" and
"definite" operating points, and for the lesions found the median (90th percentile) of found / true long
and short axis, the centroid error in mm, and how often the margin (HADD), the tendon (HADD: share of
lesions whose finding names one, and share of those named right), the location class and the
count agree.  The same three commands by hand::

    calcdx simulate --n 300 --seed 4242 --out sim/
    calcdx predict sim/ --out results/ --no-sr --no-overlay
    calcdx score results/ sim/manifest.csv --out score/
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from calcdx.cli.score import format_table, measurement_lines
from calcdx.datasets.manifest import read_manifest
from calcdx.datasets.simulator import simulate_dataset
from calcdx.inference import Predictor, run_batch
from calcdx.training.finding_accuracy import score_results, summarise, write_tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--patterns", nargs="+", default=None, help="simulate only these patterns")
    parser.add_argument("--keep", default=None, help="keep the simulated files, results and report here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep or tmp)
        sim, results, score = base / "sim", base / "results", base / "score"
        manifest = simulate_dataset(sim, args.n, seed=args.seed, workers=2, patterns=args.patterns)
        run_batch([sim], results, Predictor(), write_sr=False, write_overlays=False, progress=True)
        findings, lesions, statuses = score_results(results, read_manifest(manifest))
        report = summarise(findings, lesions, statuses)
        score.mkdir(parents=True, exist_ok=True)
        (score / "findings_report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        write_tables(score, findings, lesions)
    print(f"\nseed {args.seed}, shipped model, native spacing\n" + format_table(report))
    print("\nmedian (90th percentile) over the lesions found at 'possible' or above; margin, site, location class "
          "and count: share that agree\n" + "\n".join(measurement_lines(report)))


if __name__ == "__main__":
    main()
