"""Null-space projection, DDNM and DDNM+ (Wang, Yu & Zhang, ICLR 2023, eq. 13 and eq. 17-19):

    x0 <- x0 + lambda_t A^+ (y - A x0)            (lambda_t = 1: DDNM, noiseless y)

keeps the network's null-space content and takes the range-space content from y.

Noisy y (DDNM+, the PAPER's rule, not the simplified loop of the official code, which mixes up
alpha_bar and its square root). Write the step to the next level as DDIM(eta) (Song et al. 2021):
x_next = c x0 + (terms in x_t) + s z with s = eta sqrt((1 - ab')/(1 - ab)) sqrt(1 - ab/ab') its fresh
noise and c = sqrt(ab') - sqrt(1 - ab' - s^2) sqrt(ab/(1 - ab)) the weight of x0; eta = 1 is the
DDPM posterior the paper uses (c = sqrt(ab') beta / (1 - ab), s^2 = beta_tilde). The correction
carries lambda_t c A^+ n into x_next; DDNM+ makes that noise part of the fresh noise:
    s >= c sigma_y:  lambda_t = 1,                gamma_t = sqrt(s^2 - (c sigma_y)^2)
    s <  c sigma_y:  lambda_t = s / (c sigma_y),  gamma_t = 0
and the step adds gamma_t z instead of s z. sigma_y is on the model's [-1, 1] range (DDNM's code
doubles its [0, 1] input too). This is the paper's scalar rule, which treats A^+ n as white noise of
standard deviation sigma_y: exact for inpainting and denoising, an approximation for operators
whose pseudo-inverse colours the noise (the SVD form that scales each singular value is not here).
With scale s_c, lambda_t -> s_c lambda_t and gamma_t follows from it.

Because the fresh noise belongs to the step, with sigma_y > 0 this term performs the DDIM(eta)
step itself in ``correct_sample`` (the sampler's rule output is replaced); pass ``eta`` here
(1: the paper). With sigma_y = 0 it only corrects x0 and works with every rule. On the last step
s = 0, so DDNM+ leaves the final x0 unprojected, as the paper's formula does.
"""
from __future__ import annotations

import math

import torch

from ..errors import InputError
from ..rules import DDIM
from .base import StepContext
from .measurement import MeasurementTerm

__all__ = ["Projection"]


class _ScaledNoise:
    """A NoiseSource stand-in whose draws are ``factor`` times the item streams' draws."""

    def __init__(self, rng, factor: float) -> None:
        self.rng, self.factor = rng, factor

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * self.rng.randn_like(x)


class Projection(MeasurementTerm):
    """operator A, y (model range), sigma_y ([0, 1] scale), scale >= 0, eta >= 0 (DDNM+ only)."""

    def __init__(self, operator, y, sigma_y=0.0, scale=1.0, eta: float = 1.0, sigma_window=None) -> None:
        super().__init__(operator, y, sigma_y, scale, sigma_window)
        if not (eta >= 0 and math.isfinite(eta)):
            raise InputError(f"Projection eta must be a finite number >= 0, got {eta}")
        self.eta = float(eta)
        self._pending: tuple[StepContext, torch.Tensor, float, float] | None = None

    def noise_split(self, ctx: StepContext) -> tuple[float, float, float]:
        """(lambda_t, gamma_t, s): the correction's weight, the fresh noise DDNM+ adds, DDIM's s."""
        a, a_next = ctx.alpha_bar, ctx.alpha_bar_next
        s = self.eta * math.sqrt((1 - a_next) / (1 - a) * (1 - a / a_next))
        if self.sigma == 0:
            return self.scale, s, s
        c = math.sqrt(a_next) - math.sqrt(max(1 - a_next - s * s, 0.0)) * math.sqrt(a / (1 - a))
        carried = abs(c) * self.sigma
        lam = 1.0 if s >= carried else s / carried
        lam *= self.scale
        return lam, math.sqrt(max(s * s - (lam * carried) ** 2, 0.0)), s

    def correct_x0(self, ctx: StepContext, x0: torch.Tensor) -> torch.Tensor:
        lam, gamma, s = self.noise_split(ctx)
        x0 = x0 + lam * self.operator.pinv(self.residual(x0))
        if self.sigma > 0:
            self._pending = (ctx, x0, gamma, s)
        return x0

    def correct_sample(self, ctx: StepContext, x_next: torch.Tensor) -> torch.Tensor:
        if self.sigma == 0:
            return x_next
        if self._pending is None or self._pending[0] is not ctx:
            raise RuntimeError("Projection.correct_sample called without correct_x0 on the same step")
        _, x0, gamma, s = self._pending
        self._pending = None
        noise = _ScaledNoise(ctx.rng, gamma / s if s > 0 else 0.0)
        return DDIM(self.eta).step(ctx.x.detach(), ctx.pred.with_x0(x0), ctx.alpha_bar, ctx.alpha_bar_next, noise, {})
