"""Inference throughput side by side on the same DICOM files.

    python benchmarks/inference_throughput.py [--n 100] [--workers W] [--uncompressed]

Prints, for N copies of the bundled example radiographs (JPEG 2000 lossless as bundled, or
decompressed to Explicit VR Little Endian with ``--uncompressed``: the decoder's share):
  * calcdx end to end (`calcdx predict` pipeline: read, resample, model, findings, rules, JSON; no SR/overlay)
    images/s, peak RSS of the main process and of the largest decoding worker;
  * calcdx forward-pass-only bound: the model alone on the same model-grid images, batch 1;
  * TorchXRayVision: its DICOM reader + DenseNet-121 (weights=None) at 224 px, if installed
    (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import copy
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from calcdx.datasets.reader import read_radiograph
from calcdx.inference import Predictor, run_batch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def copies(n: int, folder: Path, *, uncompressed: bool = False) -> list[Path]:
    import pydicom
    from pydicom.uid import generate_uid

    sources = [pydicom.dcmread(p) for p in sorted(EXAMPLES.glob("*.dcm"))]
    if uncompressed:
        for source in sources:
            source.decompress()
    out = []
    for i in range(n):
        ds = copy.deepcopy(sources[i % len(sources)])
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / f"c{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size in MB of this process (or, with RUSAGE_CHILDREN, its largest child)."""
    return resource.getrusage(who).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--workers", type=int, default=None, help="decoding workers (default: calcdx predict's)")
    parser.add_argument("--uncompressed", action="store_true", help="decompress the copies first")
    parser.add_argument("--fast-decode", action="store_true", help="as calcdx predict --fast-decode")
    parser.add_argument("--threads", type=int, default=None,
                        help="model threads (default: calcdx predict's, the cores the workers leave)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        (tmp / "in").mkdir()
        paths = copies(args.n, tmp / "in", uncompressed=args.uncompressed)
        predictor = Predictor(fast_decode=args.fast_decode)
        start = time.perf_counter()
        report = run_batch(
            paths, tmp / "out", predictor, workers=args.workers, write_sr=False, write_overlays=False, progress=False,
            threads=args.threads,
        )
        e2e = report.n_images / (time.perf_counter() - start)
        grids = [predictor.to_grid(read_radiograph(p)) for p in paths[: min(20, len(paths))]]
        passes = []
        with torch.inference_mode():
            for _ in range(4):  # the first pass warms up; the median of the other three is reported
                start = time.perf_counter()
                for g in grids:
                    predictor.model(torch.from_numpy(g)[None, None])
                passes.append(len(grids) / (time.perf_counter() - start))
        forward = float(np.median(passes[1:]))
        shape = np.mean([g.shape for g in grids], axis=0)
        syntax = "uncompressed" if args.uncompressed else "JPEG 2000 lossless"
        print(
            f"images: {args.n} ({syntax}), model grid {predictor.card.input_spacing_mm} mm/px "
            f"(mean {shape[0]:.0f}x{shape[1]:.0f} px)"
        )
        print(f"calcdx end to end      {e2e:7.2f} images/s   peak RSS {peak_rss_mb():7.0f} MB "
              f"(largest worker {peak_rss_mb(resource.RUSAGE_CHILDREN):.0f} MB; {report.n_images} images)")
        print(f"calcdx forward only    {forward:7.2f} images/s   (end to end = {e2e / forward:.2f} x forward)")
        try:
            import torchxrayvision as xrv
        except ImportError:
            print("TorchXRayVision        not installed (pip install -e '.[bench]')")
            return
        model = xrv.models.DenseNet(weights=None).eval()
        start = time.perf_counter()
        with torch.inference_mode():
            for p in paths[: min(50, len(paths))]:
                img = xrv.utils.read_xray_dcm(str(p))
                img = xrv.datasets.XRayResizer(224)(xrv.datasets.XRayCenterCrop()(img[None]))
                model(torch.from_numpy(img)[None].float())
        txrv = min(50, len(paths)) / (time.perf_counter() - start)
        print(f"TorchXRayVision 224 px {txrv:7.2f} images/s   (calcdx / TXRV = {e2e / txrv:.2f})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
