"""``calcdx simulate``: simulated radiographs with ground truth (the default data set)."""

from __future__ import annotations

import argparse
from typing import Any

from calcdx.taxonomy import LOOK_ALIKE_GROUPS, PATTERNS, Region


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate radiographs with ground truth (DICOM + manifest + masks)",
        description="Render physics-based radiographs of five regions with the six calcification patterns and "
        "hard negatives; writes CR/DX DICOM files, per-lesion masks and annotations, and a manifest.csv in the "
        "same format researchers use for their own data (docs/simulator.md).",
        epilog="examples:\n  calcdx simulate --n 5000 --out sim/ --seed 1 --workers 2\n"
        "  calcdx simulate --n 200 --out sim-knee/ --regions knee --patterns cppd hadd --spacing-mm 0.5\n"
        "  calcdx simulate --gallery docs/img/simulator_grid.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=100, help="number of radiographs (default 100)")
    parser.add_argument("--out", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="data-set seed: same seed, same files (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (results do not depend on it)")
    parser.add_argument("--regions", nargs="+", choices=[r.value for r in Region], help="regions (default all)")
    parser.add_argument("--patterns", nargs="+", choices=[p.value for p in PATTERNS], help="patterns (default all)")
    parser.add_argument("--hard-negative-rate", type=float, default=0.6, metavar="P",
                        help="share of images that draw 0-3 look-alikes (default 0.6)")
    parser.add_argument("--look-alikes", nargs="+", choices=LOOK_ALIKE_GROUPS,
                        help="look-alike kinds drawn (default all)")
    parser.add_argument("--spacing-mm", type=float, default=None,
                        help="render at this pixel spacing (default: native detector spacing 0.1-0.2 mm)")
    parser.add_argument("--twins", action="store_true", help="also render each positive without its patterns")
    parser.add_argument("--follow-ups", action="store_true",
                        help="also render a follow-up study of each case with HADD: the same patient 2-13 months "
                        "later, the deposit stable, larger, smaller, resolved or resorbing (its course is in the "
                        "annotations and the manifest)")
    parser.add_argument("--shifted", action="store_true",
                        help="acquisition outside the training range (kVp 92-110, low dose, more blur)")
    parser.add_argument("--hadd-length-mm", type=float, nargs=2, metavar=("LOW", "HIGH"), default=None,
                        help="range of HADD deposits' long axes in mm (default 2 18, the standard data set; the "
                        "literature's reach 30)")
    parser.add_argument("--gallery", metavar="PNG", help="write a picture of every pattern in every region instead")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.gallery:
        from calcdx.datasets.simulator.gallery import make_gallery

        print(make_gallery(args.gallery))
        return 0
    if not args.out:
        raise SystemExit("calcdx simulate: --out is required")
    from calcdx.datasets.simulator import simulate_dataset
    from calcdx.datasets.simulator.patterns import HADD_LENGTH_MM

    manifest = simulate_dataset(args.out, args.n, seed=args.seed, workers=args.workers, regions=args.regions,
                                patterns=args.patterns, spacing_mm=args.spacing_mm, twins=args.twins,
                                follow_ups=args.follow_ups, shifted=args.shifted,
                                hard_negative_rate=args.hard_negative_rate,
                                look_alikes=args.look_alikes,
                                hadd_length_mm=tuple(args.hadd_length_mm or HADD_LENGTH_MM), progress=True)
    print(f"wrote {manifest}")
    return 0
