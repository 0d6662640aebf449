"""The guidance-term API. A term steers the one reverse loop through two hooks, both identity by
default:

    correct_x0(ctx, x0) -> x0          change the denoised estimate (score terms, projections, prox)
    correct_sample(ctx, x_next) -> x   change the next sample (replacement, DPS-style gradient steps)

A term holds its own data (classifier, labels, operator, measurement, scale); the loop never sees
them. Terms steer, rules step: a term never performs a step; ``ctx.rule`` names the run's step rule
for a term whose correction must agree with it (Projection with sigma_y > 0 reads the eta of the
DDNM+ step that will take its x0, and that rule checks the pairing). ``needs_grad`` asks the loop to
run the denoiser with gradients w.r.t. x_t (then ``ctx.x`` requires grad and ``ctx.pred.x0`` is
attached to the graph). ``sigma_window`` limits the term to steps whose VE noise level
sigma_t = sqrt((1 - alpha_bar)/alpha_bar) lies inside it (model range).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..denoiser import Prediction, timestep_tensor

if TYPE_CHECKING:
    from ..denoiser import Denoiser
    from ..noise import NoiseSource
    from ..rules import StepRule

__all__ = ["StepContext", "GuidanceTerm"]


@dataclass
class StepContext:
    """What a term may look at during one reverse step from t to t_next (t_next = -1 is clean)."""

    index: int
    num_steps: int
    t: float
    t_next: float
    alpha_bar: float
    alpha_bar_next: float
    x: torch.Tensor
    pred: Prediction
    labels: torch.Tensor | None
    rng: NoiseSource
    denoiser: Denoiser
    rule: StepRule | None = None

    @property
    def sigma(self) -> float:
        return math.sqrt((1 - self.alpha_bar) / self.alpha_bar)

    @property
    def sigma_next(self) -> float:
        return math.sqrt((1 - self.alpha_bar_next) / self.alpha_bar_next)

    @property
    def is_last(self) -> bool:
        return self.alpha_bar_next >= 1.0

    def timesteps(self) -> torch.Tensor:
        """t as the (B,) tensor a network or noisy classifier takes."""
        return timestep_tensor(self.t, self.x.shape[0], self.x.device)


class GuidanceTerm:
    """Base class of guidance terms; override one or both hooks."""

    needs_grad: bool = False
    sigma_window: tuple[float, float] = (0.0, math.inf)

    def active(self, ctx: StepContext) -> bool:
        lo, hi = self.sigma_window
        return lo <= ctx.sigma <= hi

    def correct_x0(self, ctx: StepContext, x0: torch.Tensor) -> torch.Tensor:
        return x0

    def correct_sample(self, ctx: StepContext, x_next: torch.Tensor) -> torch.Tensor:
        return x_next


def check_window(window: tuple[float, float] | None) -> tuple[float, float]:
    """Validate a (sigma_min, sigma_max) window; None means always active."""
    if window is None:
        return (0.0, math.inf)
    lo, hi = float(window[0]), float(window[1])
    if not 0 <= lo <= hi:
        raise ValueError(f"sigma window must satisfy 0 <= sigma_min <= sigma_max, got {window}")
    return (lo, hi)
