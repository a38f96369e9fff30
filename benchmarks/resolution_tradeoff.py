"""Resolution trade-off: the same network trained for the same number of steps at several model-grid
spacings (mm per pixel), each with crops of the same physical size; prints validation AUROC per
pattern and training images/s.

    .venv/bin/python benchmarks/resolution_tradeoff.py --manifest /work/simdata/train/manifest.csv
    .venv/bin/python benchmarks/resolution_tradeoff.py --proxy /tmp/proxy --n 480   # no simulator needed

``--proxy`` writes a physical phantom set first (millimetre-sized lesions in a textured
background at 0.2 mm per pixel: oval deposits, thin 0.5-1 mm lines, lobule clusters, rings,
large rimmed masses, streak sheets, plus dot and tram-track look-alikes).  It is a proxy for
the question "how small a structure survives at this spacing", not a substitute for the simulator.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

FIELD_MM = 160.0
PROXY_SPACING = 0.2


def _ellipse(rr: np.ndarray, cc: np.ndarray, r: float, c: float, a: float, b: float, th: float) -> np.ndarray:
    y, x = rr - r, cc - c
    u = x * np.cos(th) + y * np.sin(th)
    v = -x * np.sin(th) + y * np.cos(th)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _lesion(kind: str, rr: np.ndarray, cc: np.ndarray, rng: np.random.Generator, px: float) -> tuple[np.ndarray, float]:
    """(mask, attenuation contrast) of one lesion; sizes drawn in mm and converted by ``px``."""
    n = rr.shape[0]
    r, c = rng.uniform(0.15, 0.85, 2) * n
    th = rng.uniform(0, np.pi)
    mm = 1.0 / px
    if kind == "hadd":
        mask = _ellipse(rr, cc, r, c, rng.uniform(2, 6) * mm, rng.uniform(1.2, 3) * mm, th)
        return mask, rng.uniform(0.25, 0.5)
    if kind == "cppd":
        length, thick = rng.uniform(8, 25) * mm, rng.uniform(0.5, 1.0) * mm
        return _ellipse(rr, cc, r, c, length / 2, thick / 2, th), rng.uniform(0.25, 0.45)
    if kind == "tumoral_calcinosis":
        m = np.zeros(rr.shape, bool)
        for _ in range(rng.integers(5, 10)):
            dr, dc = rng.normal(0, 6 * mm, 2)
            m |= _ellipse(rr, cc, r + dr, c + dc, rng.uniform(2, 4) * mm, rng.uniform(2, 4) * mm, th)
        return m, rng.uniform(0.4, 0.7)
    if kind == "phlebolith":
        rad = rng.uniform(1.5, 3) * mm
        d = np.hypot(rr - r, cc - c)
        return (d <= rad) & (d >= 0.45 * rad), rng.uniform(0.35, 0.6)
    if kind == "myositis_ossificans":
        a, b = rng.uniform(12, 22) * mm, rng.uniform(6, 12) * mm
        outer = _ellipse(rr, cc, r, c, a, b, th)
        inner = _ellipse(rr, cc, r, c, a * 0.8, b * 0.7, th)
        return outer & ~inner, rng.uniform(0.3, 0.5)
    # calcinosis universalis: several long streaks
    m = np.zeros(rr.shape, bool)
    for _ in range(rng.integers(4, 8)):
        rs, cs = rng.uniform(0.1, 0.9, 2) * n
        m |= _ellipse(rr, cc, rs, cs, rng.uniform(10, 30) * mm, rng.uniform(0.6, 1.5) * mm, th + rng.normal(0, 0.2))
    return m, rng.uniform(0.2, 0.4)


def make_proxy(out: Path, n: int, seed: int) -> Path:
    """Write ``n`` proxy radiographs as DICOM + masks + manifest; returns the manifest."""
    import sys

    from scipy.ndimage import gaussian_filter

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from calcdx.datasets.manifest import ManifestRow, write_manifest
    from calcdx.taxonomy import PATTERNS, Pattern
    from tests.models_fixtures import write_dx

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    size = round(FIELD_MM / PROXY_SPACING)
    rr, cc = np.mgrid[:size, :size].astype(np.float32)
    rows = []
    for i in range(n):
        base = gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), 40) * 8
        mu = 0.35 + base
        for _ in range(rng.integers(1, 3)):  # bone-like bands with a cortex
            c0, w = rng.uniform(0.2, 0.8) * size, rng.uniform(15, 30) / PROXY_SPACING
            d = np.abs((cc - c0) * np.cos(rng.normal(0, 0.2)) + (rr - size / 2) * np.sin(rng.normal(0, 0.2)))
            mu += 0.25 * (d < w / 2) + 0.2 * ((d < w / 2) & (d > w / 2 - 2 / PROXY_SPACING))
        kinds = [p.value for p in PATTERNS if rng.random() < 0.17]
        lesions = []
        for k, kind in enumerate(kinds):
            m, contrast = _lesion(kind, rr, cc, rng, PROXY_SPACING)
            mu += contrast * m
            mp = out / f"img{i:04d}_{k}.npz"
            np.savez_compressed(mp, mask=m)
            r_, c_ = np.nonzero(m)
            lesions.append(
                {
                    "kind": kind,
                    "bbox_px": [int(r_.min()), int(c_.min()), int(r_.max()) + 1, int(c_.max()) + 1],
                    "mask": mp.name,
                }
            )
        for _ in range(rng.integers(0, 3)):  # look-alikes: dense dots and tram tracks
            if rng.random() < 0.5:
                d = np.hypot(rr - rng.uniform(0, size), cc - rng.uniform(0, size))
                mu += 0.5 * (d < 1.2 / PROXY_SPACING)
            else:
                r0, c0, th = rng.uniform(0.2, 0.8) * size, rng.uniform(0.2, 0.8) * size, rng.uniform(0, np.pi)
                for off in (-1.5, 1.5):
                    mu += 0.3 * _ellipse(
                        rr,
                        cc,
                        r0 + off / PROXY_SPACING * np.cos(th),
                        c0 - off / PROXY_SPACING * np.sin(th),
                        25 / PROXY_SPACING,
                        0.3 / PROXY_SPACING,
                        th,
                    )
                lesions.append({"kind": "arterial_medial", "bbox_px": [0, 0, 1, 1]})
        img = gaussian_filter(mu, 1.0) + rng.normal(0, 0.03, mu.shape)
        img = (img - img.min()) / (img.max() - img.min())
        dcm = out / f"img{i:04d}.dcm"
        write_dx(dcm, img, PROXY_SPACING, f"P{i:04d}")
        ann = out / f"img{i:04d}.json"
        ann.write_text(json.dumps({"lesions": lesions}))
        rows.append(
            ManifestRow(path=dcm, patient_id=f"P{i:04d}", labels=frozenset(Pattern(k) for k in kinds), annotations=ann)
        )
    return write_manifest(out / "manifest.csv", rows)


def run(
    manifest: str, spacings: list[float], crop_mm: float, steps: int, arch: str, out: Path, workers: int
) -> list[dict[str, object]]:
    from calcdx.datasets.manifest import read_manifest
    from calcdx.training.config import load_config
    from calcdx.training.trainer import fit

    n_train = 0.8 * len(read_manifest(manifest, check_files=False))
    epochs = max(1, round(steps * 16 / n_train))
    results = []
    for s in spacings:
        size = int(round(crop_mm / s / 8) * 8)
        run_dir = out / f"{arch}_{s:.2f}mm"
        cfg = load_config(
            None,
            [
                f"data.manifest={manifest}",
                f"out_dir={run_dir}",
                f"data.spacing_mm={s}",
                f"data.input_size_px={size}",
                f"model.architecture={arch}",
                f"optim.epochs={epochs}",
                f"optim.max_steps_per_epoch={steps}",
                "optim.batch_size=16",
                "optim.lr=0.003",
                "optim.warmup_steps=30",
                "progress=false",
                "threads=2",
                f"data.num_workers={workers}",
                "calibration.enabled=false",
                f"data.cache_dir={out / 'cache'}",
            ],
        )
        t0 = time.perf_counter()
        res = fit(cfg)
        val = res.card.metrics["validation"] if res.card else {}
        row = {
            "spacing_mm": s,
            "arch": arch,
            "steps": epochs * int(n_train // 16),
            "crop_px": size,
            "train_img_s": float(np.mean([h["images_per_second"] for h in res.history])),
            "epoch_seconds": res.history[-1]["seconds"],
            "val_macro_auroc": val.get("macro_auroc"),
            "val_auroc": {k: v["auroc"] for k, v in val.get("per_class", {}).items()},
            "wall_seconds": time.perf_counter() - t0,
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", default=None)
    p.add_argument("--proxy", default=None, help="write a proxy phantom set into this folder and use it")
    p.add_argument("--n", type=int, default=480)
    p.add_argument("--spacing", nargs="+", type=float, default=[0.4, 0.5, 0.7])
    p.add_argument("--crop-mm", type=float, default=128.0)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--arch", default="mobilenet_v3_small")
    p.add_argument("--out", default="runs/resolution")
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args()
    manifest = a.manifest
    if a.proxy:
        manifest = str(make_proxy(Path(a.proxy), a.n, seed=0))
    if not manifest:
        p.error("give --manifest or --proxy")
    run(manifest, a.spacing, a.crop_mm, a.steps, a.arch, Path(a.out), a.workers)


if __name__ == "__main__":
    main()
