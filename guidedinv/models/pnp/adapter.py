"""A Gaussian denoiser D(z, sigma) on [0, 1] images as an x0-predictor of the VP sampler.

The sampler's x_t = sqrt(ab) x0 + sqrt(1 - ab) eps with x0 in [-1, 1], so
z = (x_t / sqrt(ab) + 1) / 2 = (x0 + 1) / 2 + (sigma_t / 2) eps: the [0, 1] image plus Gaussian noise
of standard deviation sigma = sigma_t / 2, sigma_t = sqrt((1 - ab) / ab) (the model-range level,
guidedinv.schedule). Hence x0 = 2 D(z, sigma_t / 2) - 1, and a network trained for sigma <= s on
[0, 1] serves the sampler up to sigma_t = 2 s (its ``max_sigma``, model range).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...schedule import VPSchedule

__all__ = ["PnPAdapter", "model_sigma"]


def model_sigma(sigma01: float) -> float:
    """A noise level on the [0, 1] image scale as the sampler's model-range sigma_t."""
    return 2.0 * sigma01


class PnPAdapter(nn.Module):
    """``net(x_t, t) -> x0`` (model range) from ``core(z, sigma)`` ([0, 1] range, sigma (B,)).

    A grey core denoises each channel of a colour image on its own; sides are reflect-padded to the
    core's ``multiple`` and cropped back."""

    def __init__(self, core: nn.Module, schedule: VPSchedule) -> None:
        super().__init__()
        self.core, self.schedule = core, schedule

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = self.schedule.alpha_bar_tensor(t.to(x.device)).to(x.dtype).view(-1, 1, 1, 1)
        sigma = ((1 - ab) / ab).sqrt().view(-1) / 2
        z = (x / ab.sqrt() + 1) / 2
        b, c, h, w = z.shape
        if self.core.channels == 1 and c != 1:
            z, sigma = z.reshape(b * c, 1, h, w), sigma.repeat_interleave(c)
        m = self.core.multiple
        pad_h, pad_w = -h % m, -w % m
        if pad_h or pad_w:
            z = F.pad(z, (0, pad_w, 0, pad_h), mode="reflect" if pad_h < h and pad_w < w else "replicate")
        out = self.core(z, sigma)[..., :h, :w]
        return (2 * out - 1).reshape(b, c, h, w)
