"""The ``calcdx`` console script: one CLI with subcommands.

Each subcommand lives in its own module under ``calcdx.cli`` and exposes
``register(subparsers)``; heavy imports (torch, pynetdicom) happen inside the command's
run function so ``calcdx --help`` stays fast.  Only this module configures logging.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import import_module

from calcdx.errors import CalcdxError
from calcdx.version import __version__

SUBCOMMAND_MODULES: tuple[str, ...] = (
    "info",
    "simulate",
    "train",
    "evaluate",
    "calibrate",
    "predict",
    "score",
    "followup",
    "train_head",
    "rules",
    "serve",
)

DESCRIPTION = """\
calcdx finds soft-tissue calcifications on DICOM radiographs, labels each by pattern
(HADD, CPPD, tumoral calcinosis, phleboliths, myositis ossificans, calcinosis
universalis) and maps every finding to a cited differential diagnosis.

Research software, not a medical device.
"""

EPILOG = """\
examples:
  calcdx info examples/                       what the reader sees in each file
  calcdx predict examples/ --out results/     findings, differential, JSON/CSV/SR/overlays
  calcdx simulate --n 100 --out sim/          simulated radiographs with ground truth
  calcdx score results/ sim/manifest.csv --out score/   findings against the lesions' ground truth
  calcdx followup results/                    each HADD deposit against the patient's prior study
  calcdx rules explain --pattern hadd --site "supraspinatus tendon"
run 'calcdx COMMAND --help' for the options of each command.
"""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every subcommand registered)."""
    parser = argparse.ArgumentParser(
        prog="calcdx",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"calcdx {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        module = import_module(f"calcdx.cli.{name}")
        module.register(subparsers)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = (
        logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    )
    logging.basicConfig(
        level=logging.WARNING if verbose < 2 else logging.DEBUG,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("calcdx").setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 1 some inputs failed, 2 usage/error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _configure_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except CalcdxError as exc:
        print(f"calcdx {args.command}: error [{exc.code}]: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("calcdx: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the file system refused (an output folder that is a file, no space, no right)
        logging.getLogger("calcdx").debug("%s", exc, exc_info=exc)
        where = " -> ".join(str(name) for name in (exc.filename, exc.filename2) if name is not None)
        print(f"calcdx {args.command}: error: {exc.strerror or exc}" + (f": {where}" if where else ""),
              file=sys.stderr)
        return 2
