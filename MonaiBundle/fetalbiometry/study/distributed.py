"""Sharding a study across processes started by ``torchrun`` (one GPU each, or CPU with gloo).

``torchrun --nproc_per_node=N -m fetalbiometry.study ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; rank r takes manifest rows r, r + N, r + 2N, ... . The processes only exchange
small Python objects (the per-volume records), so the process group always uses the gloo
backend, on CPU and GPU machines alike; the GPUs are used by the segmenters only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

Item = TypeVar("Item")

#: Ranks that finish their shard early wait for the slowest one in the final gather.
GATHER_TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class Shard:
    """This process's part of a study.

    Attributes:
        rank: global rank of the process.
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> "Shard":
        """Read the ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` variables that torchrun sets (default: 1 process)."""
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )

    @property
    def is_main(self) -> bool:
        """Rank 0 gathers the results and writes the study's tables and report."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def take(self, items: Sequence[Item]) -> list[Item]:
        """Items r, r + N, r + 2N, ... of ``items`` (round robin, balanced within one item)."""
        return list(items[self.rank :: self.world_size])

    def device(self, requested: str) -> str:
        """Device of this process's segmenter: ``cuda:LOCAL_RANK`` for CUDA when sharded.

        Args:
            requested: ``"auto"``, ``"cpu"`` or ``"cuda"``.

        Returns:
            ``requested`` unchanged for one process or without CUDA; otherwise
            ``"cuda:<local_rank>"``, also made the current CUDA device.
        """
        wants_cuda = requested in ("auto", "cuda") and torch.cuda.is_available()
        if not self.is_distributed or not wants_cuda:
            return requested
        torch.cuda.set_device(self.local_rank)
        return f"cuda:{self.local_rank}"


@contextmanager
def process_group(shard: Shard) -> Iterator[None]:
    """Join the torchrun process group (gloo) for the duration of a sharded study; no-op for 1 process."""
    if not shard.is_distributed or dist.is_initialized():
        yield
        return
    dist.init_process_group(backend="gloo", rank=shard.rank, world_size=shard.world_size, timeout=GATHER_TIMEOUT)
    try:
        yield
        dist.barrier()  # no rank tears the group down while another one still talks to it
    finally:
        dist.destroy_process_group()


def barrier(shard: Shard) -> None:
    """Wait for every rank (no-op for 1 process)."""
    if shard.is_distributed:
        dist.barrier()


def all_gather(shard: Shard, payload: Any) -> list[Any]:
    """Every rank's ``payload``, in rank order (``[payload]`` for 1 process)."""
    if not shard.is_distributed:
        return [payload]
    gathered: list[Any] = [None] * shard.world_size
    dist.all_gather_object(gathered, payload)
    return gathered
