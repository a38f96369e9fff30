"""``calcdx predict``: batch inference over files, folders, DICOMDIRs and list files."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from calcdx.cli.options import add_device_option


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="find and label calcifications; write JSON, CSV, DICOM SR and overlays per study",
        description="Analyse every study under PATH (files, folders, DICOMDIRs, list files). Per study: a JSON "
        "result (versioned schema), a DICOM Structured Report and overlays (PNG + Secondary Capture); across the "
        "batch: summary.csv and failures.csv. Re-running resumes: finished studies are skipped. One bad file never "
        "stops the batch. Research software, not a medical device.",
        epilog="examples:\n  calcdx predict examples/ --out results/\n"
        "  calcdx predict studies.txt --out results/ --workers 2 --context patient.yaml\n"
        "  torchrun --nproc_per_node 2 -m calcdx predict /data/studies --out results/   (rank-sharded)\n"
        "exit code: 0 all analysed, 1 some files failed or were refused, 2 usage or model error",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument("--out", required=True, help="output folder (created; re-use it to resume)")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader worker processes that decode and, on the CPU, run the model (one thread "
                        "each) and measure the findings (default on the CPU 2, or 1 on one core; beside a GPU every "
                        "core but one; 0 = all in the main process)")
    add_device_option(parser, "; under torchrun each rank takes its local GPU")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for the model when it runs in the main process (--workers 0; default: "
                        "the cores the workers leave)")
    parser.add_argument("--context", default=None, metavar="YAML", help="clinical context for the rule layer")
    parser.add_argument("--default-spacing", type=float, default=None, metavar="MM",
                        help="pixel spacing to assume when a file has none (flagged in the results)")
    parser.add_argument("--fast-decode", action="store_true",
                        help="decode JPEG 2000 at the coarsest resolution level no coarser than the model grid: about "
                        "2x faster on JPEG 2000 files; sizes measured at that spacing, slightly more false 'definite' "
                        "calls (docs/inference.md)")
    parser.add_argument("--no-sr", action="store_true", help="do not write DICOM SR")
    parser.add_argument("--no-overlay", action="store_true", help="do not write overlays")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calcdx.inference import Predictor, run_batch
    from calcdx.rules import ClinicalContext

    context = ClinicalContext.from_yaml(args.context) if args.context else None
    predictor = Predictor(args.model, device=args.device, threads=args.threads, fast_decode=args.fast_decode)
    report = run_batch(args.paths, args.out, predictor, workers=args.workers, context=context,
                       write_sr=not args.no_sr, write_overlays=not args.no_overlay,
                       default_spacing_mm=args.default_spacing, progress=not args.no_progress,
                       threads=args.threads)
    print(f"{report.n_studies} studies analysed ({report.n_studies_skipped} already done), {report.n_images} "
          f"images ({report.n_not_analyzed} not analysed: out of distribution; {report.n_low_confidence} low "
          f"confidence: unusual for the training data), {report.n_failures} failed files; "
          f"{report.images_per_second:.2f} images/s; results in {args.out}", file=sys.stderr)
    if report.n_duplicates:
        print(f"  passed over {report.n_duplicates} further cop{'y' if report.n_duplicates == 1 else 'ies'} of "
              "instances found before (same SOP Instance UID; -v names them)", file=sys.stderr)
    if report.n_own_outputs:
        print(f"  passed over {report.n_own_outputs} SR and overlay file(s) that calcdx wrote (not radiographs)",
              file=sys.stderr)
    for failure in report.failures[:10]:
        print(f"  FAILED {failure['path']}: [{failure['code']}] {failure['reason']}", file=sys.stderr)
    return 1 if report.n_failures else 0
