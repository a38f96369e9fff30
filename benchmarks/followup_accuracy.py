"""How right the HADD follow-up comparison is: simulate pairs, predict, compare, score, in one run.

    python benchmarks/followup_accuracy.py [--n 300] [--seed 6161] [--model DIR] [--keep DIR]

Renders ``n`` radiographs with HADD only (native detector spacing) and, for each with a deposit, the same
patient's follow-up study with a known course (``calcdx simulate --follow-ups``), runs ``calcdx predict``
(the shipped model or ``--model``, no SR or overlays) and ``calcdx followup`` on them, and prints per course how the
deposit's tendon was called (``calcdx.training.followup_accuracy``).  By hand::

    calcdx simulate --n 300 --seed 6161 --patterns hadd --follow-ups --workers 2 --out sim/
    calcdx predict sim/ --out results/ --no-sr --no-overlay
    calcdx followup results/
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from calcdx.datasets.manifest import read_manifest
from calcdx.datasets.simulator import simulate_dataset
from calcdx.inference import Predictor, run_batch
from calcdx.inference.followup import compare_patients, study_results
from calcdx.training.followup_accuracy import format_report, pair_truths, score_followup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=6161)
    parser.add_argument("--keep", default=None, help="keep the simulated files, results and report here")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep or tmp)
        sim, results = base / "sim", base / "results"
        manifest = sim / "manifest.csv"
        if not manifest.is_file():  # with --keep, a second model is scored on the same files
            simulate_dataset(sim, args.n, seed=args.seed, workers=2, patterns=["hadd"], follow_ups=True, progress=True)
        shutil.rmtree(results, ignore_errors=True)
        run_batch([sim], results, Predictor(args.model), write_sr=False, write_overlays=False, progress=True)
        report = score_followup(pair_truths(read_manifest(manifest)), compare_patients(study_results([results])))
        (base / "followup_report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"\nseed {args.seed}, {args.model or 'shipped model'}, native spacing, HADD pairs\n" + format_report(report))


if __name__ == "__main__":
    main()
