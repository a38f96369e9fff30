"""Decode throughput of the calcdx reader per transfer syntax on real radiographs (pydicom-data RG1/RG3).

    python benchmarks/decode_throughput.py [--repeat 3]

Prints images/s and MB/s (decoded float32 megabytes) per file and transfer syntax.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import JPEGLSLossless, RLELossless

from calcdx.datasets.reader import read_radiograph


def files(tmp: Path) -> list[tuple[str, Path]]:
    out = []
    for name in ("RG1_UNCR", "RG1_J2KR", "RG1_J2KI", "RG3_UNCR", "RG3_J2KR", "RG3_J2KI"):
        out.append((name, Path(get_testdata_file(f"{name}.dcm"))))
    base = pydicom.dcmread(get_testdata_file("RG3_UNCR.dcm"))
    for label, syntax in (("RG3_RLE", RLELossless), ("RG3_JLSL", JPEGLSLossless)):
        ds = copy.deepcopy(base)
        ds.compress(syntax)
        path = tmp / f"{label}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append((label, path))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'file':10s} {'transfer syntax':48s} {'img/s':>7s} {'MB/s':>7s}")
        for label, path in files(Path(tmp)):
            r = read_radiograph(path)
            start = time.perf_counter()
            for _ in range(args.repeat):
                r = read_radiograph(path)
            seconds = (time.perf_counter() - start) / args.repeat
            mb = r.image.nbytes / 1e6
            print(
                f"{label:10s} {pydicom.uid.UID(r.transfer_syntax_uid).name:48s} {1 / seconds:7.2f} {mb / seconds:7.1f}"
            )


if __name__ == "__main__":
    main()
