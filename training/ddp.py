"""Distributed data parallel via ``torchrun``: gloo on CPU, nccl on CUDA.

``torchrun --nproc_per_node N -m calcdx.cli.main train CONFIG.yaml`` sets ``WORLD_SIZE`` /
``RANK`` / ``LOCAL_RANK``; ``init_distributed`` reads them.  Without them the run is one
process and every helper here is a no-op.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from calcdx.devices import resolve_device

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise the process group if launched by torchrun (idempotent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend)
        logger.info("DDP rank %d/%d on %s (%s)", rank, world, dev, backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` when distributed, else ``model``."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """Rank 0's ``flag`` on every rank."""
    if not info.distributed:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64,
                     device=info.device if info.device.type == "cuda" else "cpu")
    dist.broadcast(t, src=0)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in one process)."""
    if info.distributed:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Destroy the process group if this module created one."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(values: list[float], info: DistInfo) -> list[float]:
    """Mean over ranks of each value (identity in one process)."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) / info.world_size for v in t.tolist()]
