"""Which noise levels a prior trains on, and how much each one's error counts.

sigma is the VE-equivalent noise level of the schedule, sqrt((1 - ab) / ab), on the model's [-1, 1]
range (an image noise of s on [0, 1] is sigma = 2 s).

Noise distribution (``noise``):
  uniform    t uniform over the schedule's T integer steps (Ho et al. 2020): most of the mass is at
             high noise (on the linear schedule only 27 % of the steps have sigma < 1).
  lognormal  ln sigma ~ N(mean, std^2) (Karras et al. 2022, "EDM": mean -1.2, std 1.2 for data in
             [-1, 1]), mapped to the integer step whose sigma is nearest in log space (the steps the
             sampler feeds), with a share ``uniform_share`` of each batch still drawn uniform over t,
             since the sampling methods start from pure noise.
Loss weighting (``weighting``), on the v-prediction error (x0 error = sqrt(1 - ab) (v_hat - v)):
  v          plain v-MSE (Salimans & Ho 2022).
  edm        EDM's lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 on the x0 error, i.e. the v-MSE
             weighted by w(sigma) = (sigma^2 + sd^2) / (sd^2 (1 + sigma^2)), sd = sigma_data. With
             sd = 1 it is exactly the plain v-MSE (v-prediction is EDM's preconditioning for unit
             data variance); with images' sd = 0.5 it rises from 1 (sigma -> 0) to 1 / sd^2 = 4.
"""
from __future__ import annotations

import math

import torch

__all__ = ["NOISES", "WEIGHTINGS", "schedule_sigmas", "sample_timesteps", "loss_weight", "lognormal_share_below"]

NOISES = ("uniform", "lognormal")
WEIGHTINGS = ("v", "edm")


def schedule_sigmas(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """sigma_t = sqrt((1 - ab_t) / ab_t) of every step (increasing with t)."""
    ab = alphas_cumprod.to(torch.float64)
    return ((1 - ab) / ab).sqrt()


def sample_timesteps(count: int, alphas_cumprod: torch.Tensor, generator: torch.Generator, *, noise: str = "uniform",
                     mean: float = -1.2, std: float = 1.2, uniform_share: float = 0.0) -> torch.Tensor:
    """``count`` integer timesteps (long) drawn from ``noise`` (module docstring) with ``generator``.

    ``noise="uniform"`` draws exactly what the plain loop drew (one randint call), so runs without
    the options are unchanged.
    """
    steps = len(alphas_cumprod)
    if noise == "uniform":
        return torch.randint(0, steps, (count,), generator=generator)
    if noise != "lognormal":
        raise ValueError(f"noise {noise!r}: expected one of {', '.join(NOISES)}")
    log_sigma = mean + std * torch.randn(count, generator=generator, dtype=torch.float64)
    log_table = schedule_sigmas(alphas_cumprod).log()
    t = (log_table[None, :] - log_sigma[:, None]).abs().argmin(dim=1)
    uniform = torch.rand(count, generator=generator) < uniform_share
    return torch.where(uniform, torch.randint(0, steps, (count,), generator=generator), t)


def loss_weight(alpha_bar: torch.Tensor, weighting: str = "v", sigma_data: float = 0.5) -> torch.Tensor:
    """The weight of each item's v-MSE (same shape as ``alpha_bar``): 1 for "v", EDM's (module docstring)."""
    if weighting == "v":
        return torch.ones_like(alpha_bar)
    if weighting != "edm":
        raise ValueError(f"weighting {weighting!r}: expected one of {', '.join(WEIGHTINGS)}")
    sigma2 = (1 - alpha_bar) / alpha_bar
    sd2 = sigma_data**2
    return (sigma2 + sd2) / (sd2 * (1 + sigma2))


def lognormal_share_below(sigma: float, mean: float = -1.2, std: float = 1.2) -> float:
    """P(sigma' < sigma) for ln sigma' ~ N(mean, std^2): what the tests and the model card quote."""
    return 0.5 * (1 + math.erf((math.log(sigma) - mean) / (std * math.sqrt(2))))
