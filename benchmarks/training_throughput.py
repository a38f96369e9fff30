"""Training throughput on this machine: time per epoch and images/s (forward + backward + step).

    .venv/bin/python benchmarks/training_throughput.py                     # shipped settings
    .venv/bin/python benchmarks/training_throughput.py --arch resnet18 mobilenet_v3_large --size 256 320
    .venv/bin/python benchmarks/training_throughput.py --manifest /work/simdata/train/manifest.csv

Without ``--manifest`` the batches are random tensors (pure model cost); with one, a real
epoch of ``calcdx.training.train_one_epoch`` over the first ``--images`` rows is timed
(data loading, augmentation and mask loss included; preprocessing is cached beforehand).
"""

from __future__ import annotations

import argparse
import time

import torch


def synthetic(arch: str, size: int, batch: int, steps: int, threads: int) -> float:
    from calcdx.models import create_model
    from calcdx.training.losses import CalcLoss

    torch.set_num_threads(threads)
    model = create_model(arch)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = CalcLoss(mask_weight=1.0)
    x = torch.rand(batch, 1, size, size)
    y = (torch.rand(batch, 6) < 0.2).float()
    masks = (torch.rand(batch, 6, size, size) < 0.01).to(torch.uint8)
    has = torch.ones(batch, dtype=torch.bool)
    done = 0
    t0 = 0.0
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        out = model(x)
        parts = loss_fn(out, y, None, masks, has)
        opt.zero_grad()
        parts.total.backward()
        opt.step()
        done += batch if i else 0
    return done / (time.perf_counter() - t0)


def real(manifest: str, arch: str, size: int, batch: int, images: int, spacing: float, threads: int) -> None:
    from torch.utils.data import DataLoader

    from calcdx.datasets.augment import build_augment
    from calcdx.datasets.manifest import read_manifest
    from calcdx.datasets.torch_dataset import ManifestDataset, pad_collate
    from calcdx.models import create_model
    from calcdx.training.loop import train_one_epoch
    from calcdx.training.losses import CalcLoss

    torch.set_num_threads(threads)
    rows = read_manifest(manifest)[:images]
    ds = ManifestDataset(rows, spacing, size_px=size, augment=build_augment("default"))
    t0 = time.perf_counter()
    ds.preload()
    prep = time.perf_counter() - t0
    loader = DataLoader(ds, batch_size=batch, shuffle=True, collate_fn=pad_collate, drop_last=True)
    model = create_model(arch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    stats = train_one_epoch(model, loader, opt, CalcLoss(), device=torch.device("cpu"), epoch=0)
    print(
        f"{arch:20s} {size:4d}px  real epoch of {stats.n_images} images: {stats.seconds:.1f} s/epoch, "
        f"{stats.images_per_second:.1f} img/s (preprocessing once: {prep:.1f} s, "
        f"{len(rows) / prep:.1f} img/s)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", nargs="+", default=["mobilenet_v3_small"])
    p.add_argument("--size", nargs="+", type=int, default=[320])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--manifest", default=None)
    p.add_argument("--images", type=int, default=128)
    p.add_argument("--spacing", type=float, default=0.4)
    p.add_argument("--epoch-images", type=int, default=2000, help="epoch size for the s/epoch estimate")
    a = p.parse_args()
    print(f"torch {torch.__version__}, {a.threads} threads, batch {a.batch}")
    for arch in a.arch:
        for size in a.size:
            if a.manifest:
                real(a.manifest, arch, size, a.batch, a.images, a.spacing, a.threads)
            else:
                ips = synthetic(arch, size, a.batch, a.steps, a.threads)
                print(
                    f"{arch:20s} {size:4d}px  train {ips:6.1f} img/s  "
                    f"-> {a.epoch_images / ips:7.1f} s per epoch of {a.epoch_images} images"
                )


if __name__ == "__main__":
    main()
