"""Per-item random streams, so an image's result never depends on which batch it shares.

One ``torch.Generator`` per item: the k-th draw of item i is the same whether it is sampled alone
or beside a hundred others. Draws happen on each generator's device (CPU by default) and are then
moved, so a seed gives the same noise on CPU and CUDA.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["NoiseSource"]


class NoiseSource:
    """Standard-normal draws for a batch, one independent stream per item."""

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        if len(generators) == 0:
            raise ValueError("NoiseSource needs at least one generator")
        self.generators = list(generators)

    @classmethod
    def from_seeds(cls, seeds: Sequence[int] | int, device: str | torch.device = "cpu") -> NoiseSource:
        """One generator per seed (an int gives a batch of one)."""
        seeds = [seeds] if isinstance(seeds, int) else list(seeds)
        return cls([torch.Generator(device).manual_seed(int(s)) for s in seeds])

    @classmethod
    def from_generator(cls, generator: torch.Generator, batch: int) -> NoiseSource:
        """Item i gets the i-th seed drawn from ``generator``: item 0 is the same for every batch size."""
        seeds = torch.randint(0, 2**62, (batch,), generator=generator, device=generator.device).tolist()
        return cls.from_seeds(seeds, generator.device)

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> torch.Tensor:
        """(B, *shape) where B = number of items; shape is one item's shape."""
        draws = [torch.randn(tuple(shape), generator=g, dtype=dtype, device=g.device) for g in self.generators]
        return torch.stack(draws).to(device)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != len(self.generators):
            raise ValueError(f"batch of {x.shape[0]} but {len(self.generators)} random streams")
        return self.randn(x.shape[1:], x.dtype, x.device)
