"""Simulator throughput: radiographs per second (rendering + DICOM writing) on this machine.

    python benchmarks/simulator_throughput.py [--n 20] [--workers 2] [--stages]

Prints radiographs/s at native detector spacing (0.1-0.2 mm) and at the model grid (0.4 mm): over the
whole run, and once started (the marginal rate between a run of n/4 and one of n images, which is what a
long ``calcdx simulate --n 5000`` sees: its workers start once).
``--stages`` then renders the native images again in this process under cProfile and prints
the seconds per image spent in each stage (anatomy, lesions, exposure, processing, writing and
its compression), so the remaining cost can be read off.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from calcdx.datasets.simulator import SimulationConfig, simulate_dataset

STAGES: dict[str, tuple[str, str]] = {  # label: (file name ending, function name)
    "anatomy (build_phantom)": ("anatomy.py", "build_phantom"),
    "exposure (transmission, scatter, noise)": ("physics.py", "expose"),
    "  of which primary attenuation": ("transmission.py", "attenuation"),
    "processing (log, window, style)": ("physics.py", "process"),
    "DICOM writing": ("dicom_writer.py", "write_radiograph"),
    "  of which JPEG 2000 encoding": ("utils.py", "encode_buffer"),
    "  of which JPEG-LS encoding": ("CharLS.py", "encode_pixel_data"),
    "masks (.npz)": ("dataset.py", "save_mask"),
}


def stage_seconds(n: int, seed: int = 99) -> dict[str, float]:
    """Seconds per image in each stage for ``n`` native-spacing images rendered in this process."""
    from calcdx.allocator import retain_freed_memory
    from calcdx.datasets.simulator.dataset import _job

    retain_freed_memory()  # as the workers do
    cfg = SimulationConfig()
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        _job((Path(tmp), seed, n, cfg))  # imports and caches outside the measurement
        start = time.perf_counter()
        profile.enable()
        for index in range(n):
            _job((Path(tmp), seed, index, cfg))
        profile.disable()
        total = time.perf_counter() - start
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    seconds = {"total": total / n}
    for label, (file_end, name) in STAGES.items():
        seconds[label] = sum(cumulative for (file, _line, func), (_cc, _nc, _tt, cumulative, _callers) in stats.items()
                             if func == name and file.endswith(file_end)) / n
    return seconds


def render_seconds(n: int, workers: int, spacing_mm: float | None) -> float:
    """Wall-clock seconds of ``simulate_dataset`` for ``n`` images (seed 99), worker start-up included."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        simulate_dataset(tmp, n, seed=99, workers=workers, spacing_mm=spacing_mm)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stages", action="store_true", help="also print seconds per image per stage (1 process)")
    args = parser.parse_args()
    for label, spacing in (("native 0.1-0.2 mm", None), ("model grid 0.4 mm", 0.4)):
        seconds = {n: render_seconds(n, args.workers, spacing) for n in (args.n // 4, args.n)}
        steady = (args.n - args.n // 4) / max(seconds[args.n] - seconds[args.n // 4], 1e-9)
        print(f"{label:20s} {args.n} radiographs, {args.workers} workers: {args.n / seconds[args.n]:6.2f} "
              f"radiographs/s ({steady:.2f} once started: the last {args.n - args.n // 4} of {args.n} against a run of "
              f"{args.n // 4}, so the workers' start-up and imports cancel)")
    if args.stages:
        print(f"\nseconds per native image, one process, {args.n} images (cProfile adds a little):")
        for label, value in stage_seconds(args.n).items():
            print(f"  {label:42s} {value:6.3f}")


if __name__ == "__main__":
    main()
