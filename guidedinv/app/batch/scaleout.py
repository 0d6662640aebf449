"""Several processes on one batch (torchrun, or any launcher that sets WORLD_SIZE and RANK).

Each rank takes the deterministic share ``items[rank::world]`` of the id-sorted item list, so the
shares are disjoint and cover every item. With MASTER_ADDR set (torchrun sets it) the ranks join a
gloo process group (it works on CPU and beside CUDA) to wait for each other before rank 0 merges
the report, and to agree on the exit code. Without it they run independently and every rank merges
what it finds when it ends (the last one to finish writes the complete report).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ...errors import InputError

__all__ = ["Ranks", "join"]


@dataclass
class Ranks:
    """This process's place among the batch's processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    grouped: bool = False  # a torch.distributed process group is up (barrier and all-reduce work)
    owned: bool = False  # ... and this module started it (so it shuts it down)

    def share(self, items: list) -> list:
        return items[self.rank :: self.world]

    def barrier(self) -> None:
        if self.grouped:
            dist.barrier()

    def total(self, value: int) -> int:
        """The sum of ``value`` over the ranks (this rank's own value without a process group)."""
        if not self.grouped:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t)
        return int(t.item())

    def close(self) -> None:
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()
            self.owned = self.grouped = False


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise InputError(f"environment variable {name}={text!r} is not an integer") from None


def join() -> Ranks:
    """Find (and where needed start) the process group; a single process gives Ranks()."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0), grouped=True)
    world, rank = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"RANK={rank} and WORLD_SIZE={world}: need WORLD_SIZE >= 1 and 0 <= RANK < WORLD_SIZE")
    ranks = Ranks(rank, world, _env_int("LOCAL_RANK", 0))
    if world > 1 and os.environ.get("MASTER_ADDR") and dist.is_available():
        # a long timeout: ranks wait at the final barrier while the others finish their shares
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(days=7))
        ranks.grouped = ranks.owned = True
    return ranks
