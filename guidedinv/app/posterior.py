"""Posterior samples of a restoration: N draws per image, kept as a running mean and spread.

A stochastic method's result is one draw from (an approximation of) p(x | y); ``samples = N`` in a
request draws N per image and returns their mean (the minimum mean-squared-error estimate) and
their per-pixel standard deviation, where the data leave the image uncertain.

Seeds: sample k of an image whose seed is s runs with :func:`sample_seed` (s, k): k = 0 is s itself
(the first sample is the one-sample result), k >= 1 a splitmix64 hash of (s, k), so an image's
samples never reuse another image's seed s + 1, ... The sampler draws one random stream per item,
so sample k is the same whether it is drawn alone, beside other samples or in another group.

Memory: samples run in groups of at most ``group`` per image (one :func:`~guidedinv.app.solve.restore`
call on the batch repeated; its network calls are chunked under the memory budget as usual) and
only the running moments stay: mean and M2 per image in float64, updated group by group with
Welford's update in Chan et al.'s pairwise form (1979), exact up to rounding whatever the grouping.
The samples themselves are kept only when asked for (``keep``).

std: the unbiased sample standard deviation (divisor N - 1), per channel, of the results as
written ([0, 1], after the clamp every result gets). :meth:`Posterior.uncertainty` is one value per
pixel: the root mean square of the channels' standard deviations (sqrt of the mean variance), so a
grey image's map is its std and a colour map is on the same scale.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..errors import InputError

__all__ = ["Posterior", "RunningMoments", "sample_seed", "draw_samples", "group_size", "check_sample_flags",
           "GROUP_VALUES"]

GROUP_VALUES = 2**22  # result values per group (all images): 16 MiB of float32 per state tensor of the sampler
_MASK = 2**64 - 1


def sample_seed(seed: int, k: int) -> int:
    """The seed of sample ``k`` of an image whose seed is ``seed``: ``seed`` for k = 0, else the
    splitmix64 finaliser of seed + k * golden ratio, cut to [0, 2^63) (the requests' seed range)."""
    if k == 0:
        return int(seed)
    z = (int(seed) + k * 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) >> 1


def check_sample_flags(samples: int, uncertainty: bool, save_samples: bool) -> None:
    """--uncertainty and --save-samples need two samples or more, checked before any model loads (the
    restore commands and the batch); a deterministic method's --samples is refused when the recipe is
    checked, :func:`guidedinv.app.request.check_samples`."""
    for flag, asked in (("--uncertainty", uncertainty), ("--save-samples", save_samples)):
        if asked and samples < 2:
            raise InputError(f"{flag} needs --samples N with N >= 2 (the spread of one sample is unknown)")


class RunningMoments:
    """Mean and sum of squared deviations (M2) of samples arriving in groups, per item.

    ``update(x)`` takes (B, m, ...) : m new samples of each of B items. Chan et al.'s merge of the
    group's own mean and M2 into the running ones keeps float64 accuracy without holding samples."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().to(torch.float64)
        m = x.shape[1]
        mean_b = x.mean(1)
        m2_b = ((x - mean_b.unsqueeze(1)) ** 2).sum(1)
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = m, mean_b, m2_b
            return
        total = self.count + m
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (m / total)
        self.m2 = self.m2 + m2_b + delta**2 * (self.count * m / total)
        self.count = total

    def variance(self) -> torch.Tensor:
        """Unbiased (divisor N - 1); zeros for a single sample."""
        assert self.m2 is not None, "no samples yet"
        return self.m2 / (self.count - 1) if self.count > 1 else torch.zeros_like(self.m2)


@dataclass
class Posterior:
    """N posterior samples of each image, summarised. mean, std: (B, C, H, W) in [0, 1] (for a list
    of images: one Posterior per image with (C, H, W)); count: N; samples: (B, N, C, H, W) when kept."""

    mean: torch.Tensor
    std: torch.Tensor
    count: int
    samples: torch.Tensor | None = None

    def uncertainty(self) -> torch.Tensor:
        """One standard deviation per pixel, (B, H, W) (or (H, W)): sqrt of the channels' mean variance."""
        return self.std.square().mean(-3).sqrt()

    def __getitem__(self, i: int) -> Posterior:
        """Image i of a batch: mean and std (C, H, W), samples (N, C, H, W)."""
        return Posterior(self.mean[i], self.std[i], self.count, None if self.samples is None else self.samples[i])


def group_size(samples: int, batch: int, values_per_image: int, limit: int = GROUP_VALUES) -> int:
    """Samples drawn together per image: all of them if ``batch`` x that many results of
    ``values_per_image`` values fit in ``limit`` values, else as many as fit (at least one)."""
    return max(1, min(samples, limit // max(1, batch * values_per_image)))


def draw_samples(run: Callable[..., torch.Tensor], y: torch.Tensor, seeds: list[int], count: int, *,
                 mask: torch.Tensor | None = None, group: int = 1, keep: bool = False,
                 callback: Callable[[Any], None] | None = None) -> Posterior:
    """``count`` samples of each image of ``y`` (B, C, h, w) by ``run(y, seeds=..., mask=..., callback=...)``
    (one sample per item: :func:`guidedinv.app.solve.restore` with one sample), ``group`` per image
    per call. mask: None, one for all (h, w), or one per image (B, ...). The callback sees the steps of all
    groups as one run (index and num_steps over the groups)."""
    batch = y.shape[0]
    moments, kept = RunningMoments(), []
    starts = list(range(0, count, group))
    for g, k0 in enumerate(starts):
        ks = list(range(k0, min(count, k0 + group)))
        m = len(ks)
        ys = y.repeat_interleave(m, 0)
        ms = mask.repeat_interleave(m, 0) if mask is not None and mask.ndim >= 3 else mask
        step = None
        if callback is not None:
            def step(info: Any, g: int = g) -> None:
                callback(replace(info, index=g * info.num_steps + info.index, num_steps=len(starts) * info.num_steps))
        x = run(ys, seeds=[sample_seed(s, k) for s in seeds for k in ks], mask=ms, callback=step)
        x = x.reshape(batch, m, *x.shape[1:])
        moments.update(x)
        if keep:
            kept.append(x.detach().cpu())
    assert moments.mean is not None
    dtype = y.dtype if y.is_floating_point() else torch.float32
    return Posterior(moments.mean.to(dtype), moments.variance().sqrt().to(dtype), moments.count,
                     torch.cat(kept, 1) if keep else None)
