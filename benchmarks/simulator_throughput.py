"""Simulator throughput: radiographs per second (rendering + DICOM writing) on this machine.

    python benchmarks/simulator_throughput.py [--n 20] [--workers 2]

Prints radiographs/s at native detector spacing (0.1-0.2 mm) and at the model grid (0.4 mm).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from calcdx.datasets.simulator import simulate_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for label, spacing in (("native 0.1-0.2 mm", None), ("model grid 0.4 mm", 0.4)):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            simulate_dataset(tmp, args.n, seed=99, workers=args.workers, spacing_mm=spacing)
            seconds = time.perf_counter() - start
        print(f"{label:20s} {args.n} radiographs, {args.workers} workers: {args.n / seconds:6.2f} radiographs/s")


if __name__ == "__main__":
    main()
