"""Decode throughput of the calcdx reader per transfer syntax on real radiographs (pydicom-data RG1/RG3).

    python benchmarks/decode_throughput.py [--repeat 3] [--series RG1 RG3]

RG1 (1955 x 1841 px chest, 15 bits) and RG3 (1760 x 1760 px leg, 10 bits) as shipped
(uncompressed, JPEG 2000 lossless and lossy), plus each re-encoded by pydicom's encoders
into implicit VR, big endian, deflate, RLE and JPEG-LS lossless.  Every figure is the full
``read_radiograph`` call (parse, checks, decode, LUTs, normalisation): images/s, and MB/s
of decoded stored pixels (rows x columns x 2 bytes).  Peak traced memory (tracemalloc) is
printed once per file.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
)

from calcdx.datasets.reader import decoder_of, read_radiograph


def _write(ds: pydicom.Dataset, syntax: UID, path: Path) -> Path:
    out = copy.deepcopy(ds)
    if syntax.is_compressed:
        out.compress(syntax)
    elif syntax == ExplicitVRBigEndian:
        out.PixelData = np.frombuffer(out.PixelData, "<u2").byteswap().tobytes()
        out.file_meta.TransferSyntaxUID = syntax
        pydicom.dcmwrite(path, out, implicit_vr=False, little_endian=False, force_encoding=True)
        return path
    else:
        out.file_meta.TransferSyntaxUID = syntax
    out.save_as(path, enforce_file_format=True)
    return path


def files(tmp: Path, series: list[str]) -> list[tuple[str, Path]]:
    """(label, path) of the shipped files and the re-encoded variants."""
    out: list[tuple[str, Path]] = []
    for name in series:
        for variant in ("UNCR", "J2KR", "J2KI"):
            path = get_testdata_file(f"{name}_{variant}.dcm")
            if path is None:
                raise SystemExit(f"{name}_{variant}.dcm not installed: pip install pydicom-data")
            out.append((f"{name}_{variant}", Path(path)))
        base = pydicom.dcmread(get_testdata_file(f"{name}_UNCR.dcm"))
        for label, syntax in (("IMPL", ImplicitVRLittleEndian), ("BIGE", ExplicitVRBigEndian),
                              ("DEFL", DeflatedExplicitVRLittleEndian), ("RLE", RLELossless),
                              ("JLSL", JPEGLSLossless)):
            out.append((f"{name}_{label}", _write(base, syntax, tmp / f"{name}_{label}.dcm")))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="timed reads per file (after one warm-up)")
    parser.add_argument("--series", nargs="+", default=["RG1", "RG3"], choices=["RG1", "RG3"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'file':9s} {'transfer syntax':45s} {'decoder':9s} {'size':>9s} {'file MB':>7s} "
              f"{'img/s':>6s} {'MB/s':>6s} {'peak MB':>7s}")
        for label, path in files(Path(tmp), args.series):
            r = read_radiograph(path)  # warm-up
            tracemalloc.start()
            read_radiograph(path)
            peak = tracemalloc.get_traced_memory()[1] / 1e6
            tracemalloc.stop()
            start = time.perf_counter()
            for _ in range(args.repeat):
                r = read_radiograph(path)
            seconds = (time.perf_counter() - start) / args.repeat
            stored_mb = r.shape[0] * r.shape[1] * 2 / 1e6
            syntax = UID(r.transfer_syntax_uid or "").name
            print(f"{label:9s} {syntax[:45]:45s} {decoder_of(r) or '-':9s} {r.shape[0]:4d}x{r.shape[1]:<4d} "
                  f"{path.stat().st_size / 1e6:7.2f} {1 / seconds:6.2f} {stored_mb / seconds:6.1f} {peak:7.1f}")


if __name__ == "__main__":
    main()
