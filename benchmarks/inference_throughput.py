"""Inference throughput side by side on the same DICOM files.

    python benchmarks/inference_throughput.py [--n 100] [--workers W] [--uncompressed | --fast-decode] [--stages]
        [--device auto|cpu|cuda] [--model-in-main] [--outputs]

Prints, for N copies of the bundled example radiographs (JPEG 2000 lossless as bundled, or
decompressed to Explicit VR Little Endian with ``--uncompressed``: the decoder's share):
  * calcdx end to end (`calcdx predict` pipeline: read, resample, model, findings, rules, JSON; with
    ``--outputs`` also the SR and the overlays, PNG and Secondary Capture, as ``calcdx predict`` writes by
    default) images/s, peak RSS of the main process and of the largest decoding worker, and the CPU time per
    image of each (what caps the rate: all cores together, or the main process alone);
  * calcdx forward-pass-only bound: the pipeline's model step alone (padding, forward pass, probability
    maps, out-of-distribution score) on the same model-grid images, batch 1; on the CPU with one thread
    and with every core (median of five passes after a warm-up, measured before the batch); and every network
    of the model alone: the same passes plus the crop heads (margin, site, extent) on the fields the findings of
    those images gave them, batch 1 as ``calcdx predict`` runs them (the two bounds' passes alternate, so a
    machine whose speed drifts moves both alike);
  * with ``--stages``: milliseconds per image of each stage, one after the other on one thread, and the
    ceilings they set (the helper thread's; on the CPU, this many cores even if every stage overlapped);
  * TorchXRayVision: its DICOM reader + DenseNet-121 (weights=None) at 224 px on the same device, if installed
    (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from calcdx.datasets.reader import read_radiograph
from calcdx.inference import Predictor, run_batch
from calcdx.inference.predictor import HEAD_NAMES

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


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) so far of this process and of its finished children (the batch's
    decoding workers, once it has ended)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def head_inputs(predictor: Predictor, paths: list[Path], grids: list[np.ndarray]) -> list[list[tuple[Any, np.ndarray]]]:
    """Per image of ``grids`` (read from ``paths``), each crop head's input field as ``calcdx predict`` gives
    it (the findings measured once, each head's ``logits`` call recorded): (head, field) pairs."""
    heads = [head for name in HEAD_NAMES if (head := getattr(predictor, name)) is not None]
    recorded: list[list[tuple[Any, np.ndarray]]] = []

    def recording(head: Any) -> Any:
        def logits(field: np.ndarray) -> torch.Tensor:
            recorded[-1].append((head, field))
            return type(head).logits(head, field)
        return logits

    for head in heads:
        head.logits = recording(head)
    try:
        with torch.inference_mode():
            for path, grid in zip(paths, grids, strict=False):
                recorded.append([])
                radiograph = read_radiograph(path, coarsest_spacing_mm=predictor.decode_spacing_mm)
                predictor.result(radiograph, predictor.forward(grid))
    finally:
        for head in heads:
            del head.logits
    return recorded


def model_bounds(predictor: Predictor, grids: list[np.ndarray], fields: list[list[tuple[Any, np.ndarray]]],
                 threads: int, passes: int = 5) -> tuple[float, float]:
    """Images/s (batch 1, ``threads`` torch threads) of the detection model alone on ``grids``, and of every
    network alone: the detection model on each grid and the crop heads on the fields its findings gave them
    (``head_inputs``).  The two alternate pass by pass, so both see the machine at the same speed; each is
    the median of ``passes`` passes after a warm-up pass."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    detector, networks = [], []
    try:
        with torch.inference_mode():
            for _ in range(passes + 1):
                start = time.perf_counter()
                for grid in grids:
                    predictor.forward(grid)
                detector.append(len(grids) / (time.perf_counter() - start))
                start = time.perf_counter()
                for grid, pairs in zip(grids, fields, strict=True):
                    predictor.forward(grid)
                    for head, field in pairs:
                        head.logits(field)
                networks.append(len(grids) / (time.perf_counter() - start))
    finally:
        torch.set_num_threads(previous)
    return float(np.median(detector[1:])), float(np.median(networks[1:]))


def stage_milliseconds(predictor: Predictor, paths: list[Path], out: Path) -> dict[str, float]:
    """Milliseconds per image in each stage of `calcdx predict` (no SR or overlay), one after the other
    on one thread (the model on its device)."""
    from calcdx.inference.study import finalize_study

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    spent = dict.fromkeys(("read", "resample", "forward", "findings", "rules and JSON"), 0.0)
    try:
        with torch.inference_mode():
            for path in paths:
                t0 = time.perf_counter()
                radiograph = read_radiograph(path, coarsest_spacing_mm=predictor.decode_spacing_mm)
                t1 = time.perf_counter()
                grid = predictor.to_grid(radiograph)
                t2 = time.perf_counter()
                outputs = predictor.forward(grid)
                t3 = time.perf_counter()
                image = predictor.result(radiograph, outputs)
                t4 = time.perf_counter()
                uid = radiograph.sop_instance_uid
                finalize_study(radiograph.study_instance_uid, [image], {(uid, 0): radiograph}, {uid: path}, [],
                               predictor, out, write_sr=False, write_overlays=False)
                t5 = time.perf_counter()
                for stage, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                    spent[stage] += seconds
    finally:
        torch.set_num_threads(previous)
    return {stage: 1000.0 * seconds / len(paths) for stage, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--workers", type=int, default=None, help="decoding workers (default: calcdx predict's)")
    parser.add_argument("--uncompressed", action="store_true", help="decompress the copies first")
    parser.add_argument("--fast-decode", action="store_true", help="as calcdx predict --fast-decode")
    parser.add_argument("--device", default="auto", help="as calcdx predict --device (auto: a GPU when there is one)")
    parser.add_argument("--stages", action="store_true",
                        help="also print the milliseconds per image of each stage, one after the other on one "
                        "thread, and the ceilings they set")
    parser.add_argument("--model-in-main", action="store_true",
                        help="run the model in the main process, not in the decoding workers (the default on "
                        "the CPU since 2026-12-07), to compare")
    parser.add_argument("--outputs", action="store_true",
                        help="write the SR and the overlays too (calcdx predict's default outputs)")
    parser.add_argument("--threads", type=int, default=None,
                        help="model threads (default: calcdx predict's, the cores the workers leave)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        (tmp / "in").mkdir()
        paths = copies(args.n, tmp / "in", uncompressed=args.uncompressed)
        predictor = Predictor(device=args.device, fast_decode=args.fast_decode)
        grids = [predictor.to_grid(read_radiograph(p, coarsest_spacing_mm=predictor.decode_spacing_mm))
                 for p in paths[: min(20, len(paths))]]
        cores = len(os.sched_getaffinity(0))
        on_cpu = predictor.device == "cpu"
        thread_counts = sorted({1, cores}) if on_cpu else [torch.get_num_threads()]
        fields = head_inputs(predictor, paths[: len(grids)], grids)
        measured = {threads: model_bounds(predictor, grids, fields, threads) for threads in thread_counts}
        bounds = {threads: pair[0] for threads, pair in measured.items()}
        with_heads = {threads: pair[1] for threads, pair in measured.items()}
        before = cpu_seconds()
        start = time.perf_counter()
        report = run_batch(
            paths, tmp / "out", predictor, workers=args.workers, write_sr=args.outputs, write_overlays=args.outputs,
            progress=False, threads=args.threads, model_in_workers=False if args.model_in_main else None,
        )
        e2e = report.n_images / (time.perf_counter() - start)
        main_ms, workers_ms = (1000.0 * (after - earlier) / max(report.n_images, 1)
                               for after, earlier in zip(cpu_seconds(), before, strict=True))
        forward = bounds[max(bounds)]
        shape = np.mean([g.shape for g in grids], axis=0)
        syntax = "uncompressed" if args.uncompressed else "JPEG 2000 lossless"
        print(
            f"images: {args.n} ({syntax}{', fast decode' if args.fast_decode else ''}), model grid "
            f"{predictor.card.input_spacing_mm} mm/px (mean {shape[0]:.0f}x{shape[1]:.0f} px), {cores} cores, "
            f"model on {predictor.device}"
        )
        print(f"calcdx end to end      {e2e:7.2f} images/s   peak RSS {peak_rss_mb():7.0f} MB "
              f"(largest worker {peak_rss_mb(resource.RUSAGE_CHILDREN):.0f} MB; {report.n_images} images; "
              f"{'JSON, SR and overlays' if args.outputs else 'JSON'})")
        print(f"  CPU per image: main process {main_ms:.1f} ms, decoding workers {workers_ms:.1f} ms (all cores "
              f"together: at most {1000.0 * cores / (main_ms + workers_ms):.2f} images/s; the main process alone: "
              f"{1000.0 / main_ms:.2f})")
        for threads, rate in bounds.items():
            where = f"{threads} thread{'s' if threads > 1 else ''}" if on_cpu else predictor.device
            print(f"calcdx forward only    {rate:7.2f} images/s   ({where}, batch 1, median of 5 passes over "
                  f"{len(grids)} grids; end to end = {e2e / rate:.2f} x)")
        n_fields = sum(len(pairs) for pairs in fields)
        for threads, rate in with_heads.items():
            where = (f"{threads} thread{'s' if threads > 1 else ''}" if on_cpu
                     else f"{predictor.device}, heads on the CPU")
            print(f"  and the crop heads   {rate:7.2f} images/s   ({where}: every network alone, the detection model "
                  f"and the heads on the {n_fields} fields its findings gave them; end to end = {e2e / rate:.2f} x)")
        if args.stages:
            stages = stage_milliseconds(predictor, paths[: min(28, len(paths))], tmp / "stages")
            total = sum(stages.values())
            print(f"ms per image, stage by stage on one thread ({min(28, len(paths))} images): "
                  + ", ".join(f"{stage} {ms:.1f} ms" for stage, ms in stages.items()) + f"; total {total:.1f} ms")
            finishing = stages["findings"] + stages["rules and JSON"]
            print(f"  one helper thread finishes at most {1000.0 / finishing:.2f} images/s (findings, rules, JSON)")
            if on_cpu:
                print(f"  ceiling on {cores} cores if every stage overlapped perfectly: {1000.0 * cores / total:.2f} "
                      f"images/s ({1000.0 * cores / total / forward:.2f} x the {cores}-thread forward bound)")
        try:
            import torchxrayvision as xrv
        except ImportError:
            print("TorchXRayVision        not installed (pip install -e '.[bench]')")
            return
        model = xrv.models.DenseNet(weights=None).eval().to(predictor.device)
        start = time.perf_counter()
        with torch.inference_mode():
            for p in paths[: min(50, len(paths))]:
                img = xrv.utils.read_xray_dcm(str(p))
                img = xrv.datasets.XRayResizer(224)(xrv.datasets.XRayCenterCrop()(img[None]))
                model(torch.from_numpy(img)[None].float().to(predictor.device)).cpu()
        txrv = min(50, len(paths)) / (time.perf_counter() - start)
        print(f"TorchXRayVision 224 px {txrv:7.2f} images/s   (model on {predictor.device}; calcdx / TXRV = "
              f"{e2e / txrv:.2f})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
