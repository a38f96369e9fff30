"""Options several commands share."""

from __future__ import annotations

import argparse

DEVICE_HELP = "auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N"


def add_device_option(parser: argparse.ArgumentParser, more_help: str = "") -> None:
    """``--device``, resolved by ``calcdx.devices.resolve_device`` (default ``auto``)."""
    parser.add_argument("--device", default="auto", help=DEVICE_HELP + more_help)
